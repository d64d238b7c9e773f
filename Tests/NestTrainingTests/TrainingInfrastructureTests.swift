import Foundation
import NestEngine
import NestIO
import NestTraining
import Testing

@Suite struct TrainingInfrastructureTests {
    func temporaryFolder() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nest-train-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A small regression problem trained by AdamW in steps of 4 samples.
    struct Run {
        let layer1 = Linear(3, 8, seed: 1), layer2 = Linear(8, 2, seed: 2)
        let optimizer: AdamW
        let inputs = Tensor.randn([20, 3], seed: 5), targets = Tensor.randn([20, 2], seed: 6)
        var state = TrainingState(seed: 11)
        var parameters: [(path: String, tensor: Tensor)] {
            layer1.parameterTensors(prefix: "l1.") + layer2.parameterTensors(prefix: "l2.")
        }

        init() {
            layer1.unfreeze(); layer2.unfreeze()
            optimizer = AdamW(parameters: layer1.parameterTensors(prefix: "l1.") + layer2.parameterTensors(prefix: "l2."),
                              config: .init(learningRate: 0.01, weightDecay: 0.01))
        }

        mutating func train(_ steps: Int) {
            let order = SampleOrder(count: 20, seed: state.seed)
            for _ in 0..<steps {
                let batch = order.next(4, state: &state)
                let x = F.concat(batch.map { inputs.slice(axis: 0, $0..<($0 + 1)) }, axis: 0)
                let y = F.concat(batch.map { targets.slice(axis: 0, $0..<($0 + 1)) }, axis: 0)
                optimizer.zeroGrad()
                let loss = F.mseLoss(layer2(F.silu(layer1(x))), y)
                loss.backward()
                clipGradNorm(optimizer.parameters.map(\.tensor), maxNorm: 1)
                optimizer.update()
                state.step += 1
            }
        }

        /// A run trained `steps` steps and its checkpoint, saved in `folder`.
        static func checkpointed(after steps: Int, in folder: URL) throws -> (run: Run, path: String) {
            let path = folder.appendingPathComponent("ckpt.safetensors").path
            var run = Run()
            run.train(steps)
            try TrainingCheckpoint.save(parameters: run.parameters, optimizer: run.optimizer, state: run.state, to: path)
            return (run, path)
        }
    }

    @Test func resumeContinuesExactly() throws {
        var straight = Run()
        straight.train(14)   // crosses epoch boundaries (5 batches per epoch)

        let dir = temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (first, path) = try Run.checkpointed(after: 7, in: dir)
        var resumed = Run()    // fresh weights, fresh optimizer
        resumed.state = try TrainingCheckpoint.load(into: resumed.parameters, optimizer: resumed.optimizer, from: path)
        #expect(resumed.state == first.state)
        resumed.train(7)
        for ((name, a), (_, b)) in zip(straight.parameters, resumed.parameters) {
            #expect(a.array == b.array, "\(name) differs after resume")
        }
        #expect(resumed.optimizer.step == 14)
    }

    /// A checkpoint without optimizer moments (a compact copy) restores the weights and the
    /// run state and leaves AdamW fresh; one with only some of its moments is refused by name.
    @Test func aCheckpointWithoutMomentsRestartsTheOptimizer() throws {
        let dir = temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (first, path) = try Run.checkpointed(after: 7, in: dir)
        let file = try SafeTensorsFile(path: path)
        func copy(keeping keep: (String) -> Bool, to name: String) throws -> String {
            let out = dir.appendingPathComponent(name).path
            try saveSafeTensors(try file.names.filter(keep).map { ($0, try file.tensor($0)) }, to: out, metadata: file.metadata)
            return out
        }
        let compact = try copy(keeping: { !$0.hasPrefix("optimizer.") }, to: "compact.safetensors")
        var resumed = Run()
        resumed.state = try TrainingCheckpoint.load(into: resumed.parameters, optimizer: resumed.optimizer, from: compact)
        #expect(resumed.state == first.state && resumed.optimizer.step == 0)
        for ((name, a), (_, b)) in zip(first.parameters, resumed.parameters) { #expect(a.array == b.array, "\(name)") }
        #expect(resumed.optimizer.firstMoments.allSatisfy { $0.array.allSatisfy { $0 == 0 } })
        resumed.train(2)
        #expect(resumed.optimizer.step == 2)

        let partial = try copy(keeping: { $0 != "optimizer.v.l2.bias" }, to: "partial.safetensors")
        let error = #expect(throws: ManifestError.self) {
            try TrainingCheckpoint.load(into: Run().parameters, optimizer: Run().optimizer, from: partial)
        }
        #expect(error?.description == "\(partial): checkpoint has no tensor optimizer.v.l2.bias")
    }

    @Test func sampleOrderIsDeterministicAndCoversEveryEpoch() {
        let order = SampleOrder(count: 7, seed: 3)
        #expect(order.permutation(epoch: 0).sorted() == Array(0..<7))
        #expect(order.permutation(epoch: 0) == SampleOrder(count: 7, seed: 3).permutation(epoch: 0))
        #expect(order.permutation(epoch: 0) != order.permutation(epoch: 1))
    }

    @Test func badManifestRecordsAreReportedWithLineNumbers() throws {
        let dir = temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let image = try RGBImage(width: 4, height: 4, pixels: [UInt8](repeating: 128, count: 48))
        try ImageFile.writePNG(image, to: dir.appendingPathComponent("a.png").path)
        try ImageFile.writePNG(image, to: dir.appendingPathComponent("b.png").path)
        try Data("not an image".utf8).write(to: dir.appendingPathComponent("broken.png"))
        let lines = [
            #"{"image": "a.png", "caption": "a <critter> on the beach", "references": ["b.png"]}"#,
            #"{"image": "missing.png", "caption": "a <critter>", "references": ["b.png"]}"#,
            #"{"image": "a.png", "caption": "a cat", "references": ["b.png"]}"#,
            #"{"image": "broken.png", "caption": "a <critter>", "references": ["a.png"]}"#,
            "{not json",
            #"{"image": "a.png", "caption": "a <critter>", "references": ["a.png"]}"#,
            #"{"image": "b.png", "caption": "a <critter> at night", "references": []}"#,
        ]
        let url = dir.appendingPathComponent("train.jsonl")
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        let manifest = try TrainingManifest(url: url, placeholder: "<critter>", requireReferences: true)
        #expect(manifest.samples.map(\.line) == [1])
        #expect(manifest.problems.map(\.line) == [2, 3, 4, 5, 6, 7])
        #expect(manifest.problems[0].message.contains("missing file"))
        #expect(manifest.problems[1].message.contains("does not contain the placeholder"))
        #expect(manifest.problems[2].message.contains("unreadable image"))
        #expect(manifest.problems[3].message.contains("not a JSON object"))
        #expect(manifest.problems[4].message.contains("is the target image itself"))
        #expect(manifest.problems[5].message.contains("no \"references\""))
        #expect(throws: ManifestError.self) {
            try TrainingManifest(url: url, placeholder: "<critter>", requireReferences: true, policy: .fail)
        }
    }

    @Test func augmentationIsDeterministicPerSeed() throws {
        var pixels: [UInt8] = []
        for y in 0..<20 { for x in 0..<30 { pixels += [UInt8(x * 8), UInt8(y * 12), 100] } }
        let image = try RGBImage(width: 30, height: 20, pixels: pixels)
        let aug = Augmentation()
        let a = aug.apply(image, size: 16, seed: 1), b = aug.apply(image, size: 16, seed: 1), c = aug.apply(image, size: 16, seed: 2)
        #expect(a.shape == [1, 16, 16, 3])
        #expect(a.array == b.array)
        #expect(a.array != c.array)
        #expect(a.array.allSatisfy { $0 >= -1 && $0 <= 1 })
        // Without augmentation, a resize of a constant image stays constant.
        let flat = try RGBImage(width: 10, height: 10, pixels: [UInt8](repeating: 255, count: 300))
        #expect(Augmentation.none.apply(flat, size: 8, seed: 0).array.allSatisfy { abs($0 - 1) < 1e-6 })
    }
}
