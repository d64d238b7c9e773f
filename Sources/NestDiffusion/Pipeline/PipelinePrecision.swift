import NestEngine

/// How far loading a pipeline has got: one component at a time, in checkpoint bytes.
public struct PipelineLoadProgress: Sendable {
    /// The component folder being loaded ("text_encoder", "unet", "vae", ...).
    public let component: String
    public let loadedBytes: Int
    public let totalBytes: Int
}

extension StableDiffusionPipeline {
    /// The modules whose weights a generation reads: UNet, VAE and text encoders.
    var weightModules: [Module] { [unet, vae] + prompts.encoders as [Module] }

    /// Holds every weight as float16, widened per call: half the memory.
    public func storeWeightsAsHalf() { for module in weightModules { module.storeWeightsAsHalf() } }

    /// Holds every weight as bfloat16, multiplied in bfloat16 where the CPU can.
    public func storeWeightsAsBFloat16() { for module in weightModules { module.storeWeightsAsBFloat16() } }
}
