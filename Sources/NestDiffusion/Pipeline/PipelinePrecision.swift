import Foundation
import NestEngine
import NestModels

/// How far loading a pipeline has got: one component at a time, in checkpoint bytes.
public struct PipelineLoadProgress: Sendable {
    /// The component folder being loaded ("text_encoder", "unet", "vae", ...).
    public let component: String
    public let loadedBytes: Int
    public let totalBytes: Int
}

extension StableDiffusionPipeline {
    /// What loading each weight component of a diffusers folder holds with
    /// each precision, read from configs and headers without loading.
    public static func loadingCost(folder url: URL, variant: String? = nil)
        throws -> [(component: String, cost: [WeightPrecision: LoadingCost])] {
        let folder = try ModelFolder(url: url)
        var out: [(String, [WeightPrecision: LoadingCost])] = []
        for encoder in ["text_encoder", "text_encoder_2"] where folder.has(encoder) {
            out.append((encoder, try CLIPTextModel.loadingCost(folder: try folder.component(encoder), variant: variant)))
        }
        let unetFolder = try folder.component("unet"), vaeFolder = try folder.component("vae")
        let unetConfig = try UNet2DConditionConfig.load(from: unetFolder.appendingPathComponent("config.json"))
        out.append(("unet", try WeightFiles.loadingCost(from: unetFolder, variant: variant) { UNet2DConditionModel(config: unetConfig) }))
        let vaeConfig = try decodeConfig(AutoencoderKLConfig.self, from: vaeFolder.appendingPathComponent("config.json"))
        out.append(("vae", try WeightFiles.loadingCost(from: vaeFolder, variant: variant) { try AutoencoderKL(config: vaeConfig) }))
        return out
    }

    /// The modules whose weights a generation reads: UNet, VAE and text encoders.
    var weightModules: [Module] { [unet, vae] + prompts.encoders as [Module] }

    /// Holds every weight as float16, widened per call: half the memory.
    public func storeWeightsAsHalf() { for module in weightModules { module.storeWeightsAsHalf() } }

    /// Holds every weight as bfloat16, multiplied in bfloat16 where the CPU can.
    public func storeWeightsAsBFloat16() { for module in weightModules { module.storeWeightsAsBFloat16() } }
}

/// What loading a folder's weights holds with one precision: summed over the
/// components, and each component's total.
public struct PrecisionLoadingCost: Sendable {
    /// "float32", "float16" or "bfloat16".
    public let precision: String
    public let inPlaceBytes: Int
    public let allocatedBytes: Int
    public var totalBytes: Int { inPlaceBytes + allocatedBytes }
    public let components: [(name: String, totalBytes: Int)]
}

extension StableDiffusionPipeline {
    /// `loadingCost(folder:)` summed per precision (float32, float16, bfloat16 in that order).
    public static func loadingCostByPrecision(folder url: URL) throws -> [PrecisionLoadingCost] {
        let costs = try loadingCost(folder: url)
        return WeightPrecision.allCases.map { precision in
            let total = costs.reduce(LoadingCost(inPlaceBytes: 0, allocatedBytes: 0)) { $0 + ($1.cost[precision] ?? $0) }
            return PrecisionLoadingCost(precision: precision.rawValue, inPlaceBytes: total.inPlaceBytes,
                                        allocatedBytes: total.allocatedBytes,
                                        components: costs.map { ($0.component, $0.cost[precision]?.totalBytes ?? 0) })
        }
    }
}
