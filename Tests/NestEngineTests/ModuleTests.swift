import NestEngine
import Testing

/// A two-level model whose parameter paths follow diffusers' naming.
final class TinyBlock: Module {
    let conv1: Conv2d
    let norm1: GroupNorm
    let resnets: ModuleList<Linear>
    override init() {
        conv1 = Conv2d(4, 8, kernelSize: 3, padding: 1, seed: 1)
        norm1 = GroupNorm(groups: 2, channels: 8)
        resnets = ModuleList([Linear(8, 8, seed: 2), Linear(8, 4, bias: false, seed: 3)])
        super.init()
        child("conv1", conv1)
        child("norm1", norm1)
        child("resnets", resnets)
    }
}

final class TinyModel: Module {
    let down_blocks: ModuleList<TinyBlock>
    override init() {
        down_blocks = ModuleList([TinyBlock(), TinyBlock()])
        super.init()
        child("down_blocks", down_blocks)
    }
}

@Suite struct ModuleTests {
    @Test func pathsAreCheckpointNames() {
        let paths = TinyModel().namedParameters().map(\.path)
        #expect(paths.contains("down_blocks.0.conv1.weight"))
        #expect(paths.contains("down_blocks.1.resnets.0.bias"))
        #expect(paths.contains("down_blocks.1.resnets.1.weight"))
        #expect(!paths.contains("down_blocks.1.resnets.1.bias"))
        #expect(paths.count == 2 * (2 + 2 + 2 + 1))
    }

    @Test func parameterCount() {
        // conv 8·4·9 + 8, norm 8 + 8, linear 64 + 8, linear 32
        #expect(TinyModel().parameterCount == 2 * (288 + 8 + 16 + 72 + 32))
    }

    @Test func freezeAndUnfreezeByPrefix() {
        let m = TinyModel()
        #expect(m.trainableParameters.isEmpty, "parameters start frozen")
        m.unfreeze(prefix: "down_blocks.1.resnets")
        #expect(m.trainableParameters.map(\.path) == ["down_blocks.1.resnets.0.weight", "down_blocks.1.resnets.0.bias", "down_blocks.1.resnets.1.weight"])
        m.unfreeze()
        m.freeze(prefix: "down_blocks.0")
        #expect(m.trainableParameters.count == 7)
        // A prefix matches whole components: "down_blocks.1" does not match "down_blocks.10".
        m.freeze()
        m.unfreeze(prefix: "down_blocks.1.conv")
        #expect(m.trainableParameters.isEmpty)
    }

    @Test func loadRoundTripsThroughCheckpointLayout() throws {
        let source = TinyModel()
        for (_, t) in source.parameterTensors() { t.assign(Tensor.randn(t.shape, seed: UInt64(t.count))) }
        let saved = Dictionary(uniqueKeysWithValues: source.checkpointTensors().map { ($0.name, $0.tensor) })
        #expect(saved["down_blocks.0.conv1.weight"]!.shape == [8, 4, 3, 3], "conv weights are saved OIHW")
        let target = TinyModel()
        let report = try target.load(from: TensorDictionary(saved))
        #expect(report.loaded.count == saved.count)
        for ((p1, a), (_, b)) in zip(source.parameterTensors(), target.parameterTensors()) {
            #expect(a.array == b.array, "\(p1) differs after load")
        }
        // The loaded conv computes the same thing as the original.
        let x = Tensor.randn([1, 5, 5, 4], seed: 9)
        #expect(source.down_blocks[0].conv1(x).array == target.down_blocks[0].conv1(x).array)
    }

    @Test func loadReportsMissingUnexpectedAndMismatchedByName() {
        var tensors = Dictionary(uniqueKeysWithValues: TinyModel().checkpointTensors().map { ($0.name, $0.tensor) })
        tensors["down_blocks.0.norm1.bias"] = nil
        tensors["down_blocks.0.extra.weight"] = Tensor(zeros: [2])
        tensors["down_blocks.1.resnets.0.weight"] = Tensor(zeros: [8, 7])
        do {
            try TinyModel().load(from: TensorDictionary(tensors))
            Issue.record("load should fail")
        } catch {
            let message = String(describing: error)
            #expect(message.contains("down_blocks.0.norm1.bias: missing"))
            #expect(message.contains("down_blocks.0.extra.weight: not a parameter"))
            #expect(message.contains("down_blocks.1.resnets.0.weight: checkpoint shape [8, 7], model expects [8, 8]"))
        }
        // Non-strict loading reports instead of failing on missing/unexpected names.
        tensors["down_blocks.1.resnets.0.weight"] = Tensor(zeros: [8, 8])
        let report = try? TinyModel().load(from: TensorDictionary(tensors), strict: false)
        #expect(report?.missing == ["down_blocks.0.norm1.bias"])
        #expect(report?.unexpected == ["down_blocks.0.extra.weight"])
    }

    @Test func moduleLookupByPath() {
        let m = TinyModel()
        #expect(m.module(at: "down_blocks.1.resnets.0") === m.down_blocks[1].resnets[0])
        #expect(m.module(at: "down_blocks.7") == nil)
        #expect(m.parameter(at: "down_blocks.0.norm1.weight")?.tensor === m.down_blocks[0].norm1.weight)
    }
}

@Suite struct ParameterSeedTests {
    @Test func defaultSeedsDifferAndScopedSeedsRepeat() {
        let a = Linear(4, 4), b = Linear(4, 4)
        #expect(a.weight.array != b.weight.array, "two layers built without a seed must not start identical")
        let c = ParameterSeeds.scoped(7) { (Linear(4, 4), Linear(4, 4)) }
        let d = ParameterSeeds.scoped(7) { (Linear(4, 4), Linear(4, 4)) }
        #expect(c.0.weight.array == d.0.weight.array && c.1.weight.array == d.1.weight.array)
        #expect(c.0.weight.array != c.1.weight.array)
    }
}
