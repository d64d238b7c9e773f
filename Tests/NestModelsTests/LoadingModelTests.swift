import Foundation
import NestEngine
import NestIO
import NestModels
import Testing

/// Whole models loaded narrow straight from their files compute exactly what
/// the float32 model narrowed afterwards computes; a damaged file fails in
/// one line naming the tensor, before any model exists.
@Suite struct LoadingModelTests {
    /// Narrows the tiny fixtures' layers too (the default leaves weights under 4096 values float32).
    static let minimum = 64

    static func output(_ unet: UNet2DConditionModel, _ flavour: String) throws -> [Float] {
        let x = try UNetTests.inputs(try ModelFixtures.references(flavour, "unet"))
        return unet(sample: x.sample, timestep: [500], encoderHiddenStates: x.context, added: x.added).array
    }

    /// A copy of a fixture's unet folder with its weights rewritten as `dtype`.
    static func unetFolder(_ flavour: String, as dtype: SafeTensorsDType) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("loading-unet-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let source = ModelFixtures.component(flavour, "unet")
        try FileManager.default.copyItem(at: source.appendingPathComponent("config.json"), to: folder.appendingPathComponent("config.json"))
        let model = try UNet2DConditionModel.load(folder: source)
        try model.save(to: folder.appendingPathComponent("diffusion_pytorch_model.safetensors").path, dtype: dtype)
        return folder
    }

    @Test(arguments: ["sd1", "sdxl"])
    func halfPrecisionLoadEqualsNarrowingAfterwards(flavour: String) throws {
        let folder = try Self.unetFolder(flavour, as: .f16)
        defer { try? FileManager.default.removeItem(at: folder) }
        let narrow = try UNet2DConditionModel.load(
            folder: folder, options: WeightLoadOptions(precision: .float16, minimumNarrowedCount: Self.minimum))
        let wide = try UNet2DConditionModel.load(folder: folder)
        #expect(wide.storeWeightsAsHalf(minimumCount: Self.minimum) > 0)
        #expect(try Self.output(narrow, flavour) == Self.output(wide, flavour))
        // float16 matrices and convolution kernels are the file's own bytes; nothing was
        // widened to a float32 model first, and no kernel was reordered.
        let linears = narrow.allLayers(Linear.self).filter { $0.weight.count >= Self.minimum }
        #expect(!linears.isEmpty && linears.allSatisfy { $0.weight.released && $0.halfWeight!.usesFileInPlace })
        let convs = narrow.allLayers(Conv2d.self).filter { $0.weight.count >= Self.minimum }
        #expect(!convs.isEmpty && convs.allSatisfy { $0.weight.released && $0.halfWeight!.usesFileInPlace })
    }

    @Test func bfloat16LoadEqualsNarrowingAfterwards() throws {
        let folder = ModelFixtures.component("sd1", "unet")
        let narrow = try UNet2DConditionModel.load(
            folder: folder, options: WeightLoadOptions(precision: .bfloat16, minimumNarrowedCount: Self.minimum))
        let wide = try UNet2DConditionModel.load(folder: folder)
        #expect(wide.storeWeightsAsBFloat16(minimumCount: Self.minimum) > 0)
        #expect(try Self.output(narrow, "sd1") == Self.output(wide, "sd1"))
    }

    @Test func truncatedWeightsFailInOneLineNamingTheTensor() throws {
        let folder = try Self.unetFolder("sd1", as: .f32)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("diffusion_pytorch_model.safetensors")
        let handle = try FileHandle(forUpdating: file)
        try handle.truncate(atOffset: try handle.seekToEnd() - 1000)
        try handle.close()
        do {
            _ = try UNet2DConditionModel.load(folder: folder)
            Issue.record("a truncated file loaded")
        } catch let error as SafeTensorsError {
            #expect(error.kind == .truncated)
            let tensor = try #require(error.tensor)
            #expect(error.description.contains(tensor) && !error.description.contains("\n"), "\(error)")
        }
    }

    @Test func loadingCostMatchesWhatLoadingHolds() throws {
        let folder = try Self.unetFolder("sd1", as: .f16)
        defer { try? FileManager.default.removeItem(at: folder) }
        let config = try UNet2DConditionConfig.load(from: folder.appendingPathComponent("config.json"))
        let costs = try WeightFiles.loadingCost(from: folder) { UNet2DConditionModel(config: config) }
        let (model, allocated) = try MemoryStats.measurePeak { try UNet2DConditionModel.load(folder: folder) }
        // From float16 files every float32 value is a fresh copy, and the only fresh memory:
        // no weight, convolutions included, passes through a second buffer.
        #expect(costs[.float32] == LoadingCost(inPlaceBytes: 0, allocatedBytes: model.parameterCount * 4))
        #expect(allocated == model.parameterCount * 4, "\(allocated) bytes allocated for \(model.parameterCount) values")
    }
}

extension Module {
    /// Every module of type `T` in this tree.
    func allLayers<T: Module>(_: T.Type) -> [T] {
        [self as? T].compactMap { $0 } + children.flatMap { $0.module.allLayers(T.self) }
    }
}
