import Foundation
import NestIO
import Testing
@testable import NestEngine

/// Loading from safetensors files: what a model built for loading allocates,
/// which weights are used in place from the mapping, narrow precisions read
/// straight from the file, and that the values are the file's, bit for bit.
@Suite struct LoadingTests {
    /// A model with every kind of parameter a diffusion model has: matrices,
    /// vectors, and a convolution (OIHW in the file and in the engine).
    final class Sample: Module {
        let conv: Conv2d, norm: GroupNorm, proj: Linear, small: Linear
        override init() {
            conv = Conv2d(8, 16, kernelSize: 3, padding: 1, seed: 11)
            norm = GroupNorm(groups: 4, channels: 16)
            proj = Linear(16, 32, seed: 12)
            small = Linear(4, 4, bias: false, seed: 13)
            super.init()
            child("conv", conv); child("norm", norm); child("proj", proj); child("small", small)
        }
    }

    /// The sample's checkpoint in `dtype`, written to a fresh temporary file.
    static func checkpoint(_ dtype: SafeTensorsDType, dropping dropped: String? = nil) throws -> (Sample, SafeTensorsFile) {
        let model = Sample()
        // Non-trivial norm values, so a loader that kept the defaults would be caught.
        for i in 0..<16 { model.norm.weight!.data[i] = Float(i) * 0.25 - 1; model.norm.bias!.data[i] = Float(i) * 0.125 }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("loading-\(UUID().uuidString).safetensors").path
        try saveSafeTensors(model.checkpointTensors().filter { $0.name != dropped }, to: path, dtype: dtype)
        let file = try SafeTensorsFile(path: path)
        try FileManager.default.removeItem(atPath: path)  // the mapping keeps the data
        return (model, file)
    }

    static func values(_ module: Module) -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: module.checkpointTensors().map { ($0.name, $0.tensor.array) })
    }

    @Test func buildingForLoadingAllocatesNoParameter() throws {
        let (_, file) = try Self.checkpoint(.f32)
        let (model, bytes) = try MemoryStats.measurePeak { try Module.build(checkedAgainst: file) { Sample() } }
        #expect(bytes == 0, "no parameter memory before loading, \(bytes) bytes allocated")
        #expect(model.unloadedParameters.count == model.namedParameters().count)
        try model.load(from: file)
        #expect(model.unloadedParameters.isEmpty)
    }

    @Test func loadedValuesEqualTheFileAndTheCopyingPath() throws {
        let (original, file) = try Self.checkpoint(.f32)
        let model = try Module.build(checkedAgainst: file) { Sample() }
        let (_, allocated) = try MemoryStats.measurePeak { try model.load(from: file) }
        // The in-memory source offers no bytes in place: the old copying path.
        let copied = Sample()
        try copied.load(from: TensorDictionary(Dictionary(uniqueKeysWithValues: original.checkpointTensors().map { ($0.name, $0.tensor) })))
        let (mapped, reference, viaCopy) = (Self.values(model), Self.values(original), Self.values(copied))
        #expect(mapped == reference, "loaded in place differs from the saved model")
        #expect(viaCopy == reference, "loaded by copying differs from the saved model")
        // Every float32 tensor, the convolution's included, is the mapping's bytes: loading allocates nothing.
        for (path, p) in model.namedParameters() {
            #expect(p.tensor.storage.owner === file, "\(path) was copied")
        }
        #expect(allocated == 0, "\(allocated) bytes allocated while loading")
    }

    @Test func aParameterTheFileLacksIsAnErrorByName() throws {
        let (_, file) = try Self.checkpoint(.f32, dropping: "norm.bias")
        let model = try ParameterShapes.forLoading { Sample() }
        #expect(throws: WeightLoadingError.self) { try model.load(from: file) }
        do {
            try model.load(from: file, strict: false)
            Issue.record("a parameter left unfilled was accepted")
        } catch let error as WeightLoadingError {
            #expect(error.description.contains("norm.bias: missing from checkpoint"), "\(error)")
            #expect(!error.description.contains("\n"))
        }
    }

    @Test func writingAWeightUsedInPlaceNeverReachesTheFile() throws {
        let original = Sample()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("loading-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try original.save(to: path)
        let file = try SafeTensorsFile(path: path)
        let model = try Module.build(checkedAgainst: file) { Sample() }
        try model.load(from: file)
        let before = original.proj.weight.data[0]
        model.proj.weight.data[0] = before + 1  // training and in-place edits write like this
        #expect(model.proj.weight.data[0] == before + 1)
        #expect(try SafeTensorsFile(path: path).floats("proj.weight")[0] == before, "the write reached the file")
    }

    @Test func float16FileLoadedAsHalfKeepsItsBytes() throws {
        let (_, file) = try Self.checkpoint(.f16)
        let options = WeightLoadOptions(precision: .float16, minimumNarrowedCount: 100)
        let narrow = try Module.build(checkedAgainst: file) { Sample() }
        try narrow.load(from: file, options: options)
        // The old way: a float32 model first, narrowed afterwards.
        let wide = try Module.build(checkedAgainst: file) { Sample() }
        try wide.load(from: file)
        wide.storeWeightsAsHalf(minimumCount: 100)
        #expect(narrow.proj.weight.released && narrow.proj.halfWeight!.usesFileInPlace)
        #expect(narrow.proj.halfWeight!.widened().array == wide.proj.halfWeight!.widened().array)
        #expect(narrow.conv.weight.released && narrow.conv.halfWeight!.usesFileInPlace)
        #expect(narrow.conv.halfWeight!.widened().array == wide.conv.halfWeight!.widened().array)
        #expect(narrow.small.halfWeight == nil && narrow.small.weight.array == wide.small.weight.array)
        #expect(narrow.unloadedParameters.isEmpty)
    }

    @Test(arguments: [SafeTensorsDType.f32, .f16])
    func bfloat16LoadEqualsNarrowingAfterwards(dtype: SafeTensorsDType) throws {
        let (_, file) = try Self.checkpoint(dtype)
        let narrow = try Module.build(checkedAgainst: file) { Sample() }
        try narrow.load(from: file, options: WeightLoadOptions(precision: .bfloat16, minimumNarrowedCount: 100))
        let wide = try Module.build(checkedAgainst: file) { Sample() }
        try wide.load(from: file)
        wide.storeWeightsAsBFloat16(minimumCount: 100)
        #expect(narrow.proj.bfloat16Weight!.widened().array == wide.proj.bfloat16Weight!.widened().array)
        #expect(narrow.conv.bfloat16Weight!.widened().array == wide.conv.bfloat16Weight!.widened().array)
        #expect(narrow.proj.weight.released && narrow.conv.weight.released)
    }

    @Test func loadingCostFollowsTheSameRules() throws {
        let (_, f32) = try Self.checkpoint(.f32)
        let plan = ParameterShapes.plan { Sample() }
        let all = plan.parameterCount, conv = plan.conv.weight.count, proj = plan.proj.weight.count
        #expect(plan.loadingCost(from: f32, precision: .float32) == LoadingCost(inPlaceBytes: all * 4, allocatedBytes: 0))
        let (_, f16) = try Self.checkpoint(.f16)
        #expect(plan.loadingCost(from: f16, precision: .float16, minimumNarrowedCount: 100)
                == LoadingCost(inPlaceBytes: (proj + conv) * 2, allocatedBytes: (all - conv - proj) * 4))
    }

    @Test func progressCountsEveryByte() throws {
        let (_, file) = try Self.checkpoint(.f32)
        final class Seen: @unchecked Sendable { var reports: [WeightLoadProgress] = [] }
        let seen = Seen()
        let model = try Module.build(checkedAgainst: file) { Sample() }
        try model.load(from: file, options: WeightLoadOptions(progress: { seen.reports.append($0) }))
        #expect(seen.reports.count == model.namedParameters().count)
        #expect(seen.reports.last.map { $0.loadedBytes == $0.totalBytes && $0.totalBytes == model.parameterCount * 4 } == true)
    }
}
