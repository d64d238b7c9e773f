import Foundation
import NestIO
import NestModels
import NestPersonalization
import NestTraining
import Testing

/// Runs that stop (killed, or failing) and start again: the log holds each
/// step once, killed writes leave no temporaries, a failed setup no folder.
@Suite(.serialized) struct RunRecoveryTests {
    let dir: URL

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("nest-recovery-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var lines: [String] = []
        for i in 0..<3 {
            try ImageFile.writePNG(AdapterTrainerTests.image(UInt64(i)), to: dir.appendingPathComponent("img\(i).png").path)
            lines.append(#"{"image": "img\#(i).png", "caption": "a <critter> at night", "references": ["img\#((i + 1) % 3).png"]}"#)
        }
        try lines.joined(separator: "\n").write(to: dir.appendingPathComponent("train.jsonl"), atomically: true, encoding: .utf8)
    }

    func cleanUp() { try? FileManager.default.removeItem(at: dir) }

    var output: URL { dir.appendingPathComponent("run") }

    @discardableResult
    func adapterConfig(steps: Int, model: String = AdapterTrainerTests.folder.path, checkpointEvery: Int = 2,
                       training extra: String = "", adapter adapterExtra: String = "") throws -> URL {
        let text = """
            {"model": "\(model)", "data": "train.jsonl", "output": "run",
             "adapter": {"placeholder_token": "<critter>", "class_word": "cat",
                         "resampler": {"width": 16, "depth": 1, "heads": 2, "head_dim": 8, "queries": 4}\(adapterExtra)},
             "training": {"steps": \(steps), "batch_size": 2, "resolution": 16\(extra)},
             "checkpoint_every": \(checkpointEvery), "log_every": 1}
            """
        let url = dir.appendingPathComponent("config.json")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func loggedSteps() throws -> [Int] {
        let log = try String(contentsOf: output.appendingPathComponent("log.jsonl"), encoding: .utf8)
        return log.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["step"] as? Int
        }
    }

    /// The state a kill leaves between writing step 3's log line and its
    /// checkpoint: the log has step 3, the checkpoint is step 2's.
    @Test func resumeAfterAKillLogsEachStepOnceAndRemovesStaleTemporaries() throws {
        defer { cleanUp() }
        try AdapterTrainingRun(configFile: try adapterConfig(steps: 2), resume: false).run()
        let checkpoint = output.appendingPathComponent("checkpoint.safetensors")
        let saved = dir.appendingPathComponent("step2.safetensors")
        try FileManager.default.copyItem(at: checkpoint, to: saved)
        try AdapterTrainingRun(configFile: try adapterConfig(steps: 3), resume: true).run()
        #expect(try loggedSteps() == [1, 2, 3])
        try FileManager.default.removeItem(at: checkpoint)
        try FileManager.default.copyItem(at: saved, to: checkpoint)
        // A checkpoint write killed before its rename, and files that are not the writer's.
        let stale = output.appendingPathComponent(".checkpoint.safetensors.tmp-\(Int32.max)-1f2e")
        let staleSample = output.appendingPathComponent("samples/.step-2.png.tmp-\(Int32.max)-9a")
        try FileManager.default.createDirectory(at: output.appendingPathComponent("samples"), withIntermediateDirectories: true)
        let kept = ["notes.txt", ".checkpoint.safetensors.tmp-old", ".hidden.tmp-12-XYZ", "samples/.keep"]
        for url in [stale, staleSample] + kept.map(output.appendingPathComponent) { try Data("x".utf8).write(to: url) }

        let resumed = try AdapterTrainingRun(configFile: try adapterConfig(steps: 4), resume: true)
        #expect(resumed.trainer.state.step == 2)
        try resumed.run()
        #expect(try loggedSteps() == [1, 2, 3, 4], "each step once after a resume")
        #expect(!FileManager.default.fileExists(atPath: stale.path) && !FileManager.default.fileExists(atPath: staleSample.path))
        for name in kept { #expect(FileManager.default.fileExists(atPath: output.appendingPathComponent(name).path), "\(name) removed") }
    }

    /// `"nested_value": "add"`: the value projections start at zero, so before any step the
    /// adapter predicts exactly what the base model does (a replacing adapter does not);
    /// training moves them, and the written adapter says how its value enters.
    @Test func anAddingAdapterStartsAtTheBaseModel() throws {
        defer { cleanUp() }
        let adding = try AdapterTrainingRun(configFile: try adapterConfig(steps: 2, training: #", "learning_rate": 0.01"#, adapter: #", "nested_value": "add""#),
                                            resume: false)
        #expect(adding.trainer.adapter.layers.items.allSatisfy { $0.to_v.weight.array.allSatisfy { $0 == 0 } })
        let start = try adding.measureEffect(batches: 1)
        // Equal up to rounding: the nested layer computes the same attention through other kernels.
        #expect(start.shift < 1e-5 * start.baseError && abs(start.loss - start.baseLoss) < 1e-5 * start.baseLoss, "\(start)")
        let replacing = try AdapterTrainingRun(configFile: try adapterConfig(steps: 2), resume: false, measuring: true)
        let replaced = try replacing.measureEffect(batches: 1)
        #expect(replaced.shift > 1e-3 * replaced.baseError, "\(replaced)")
        try adding.run()
        let written = try PersonalizationAdapter.load(path: output.appendingPathComponent("adapter.json").path,
                                                      imageEncoder: adding.trainer.pipeline.imageEncoder.config)
        #expect(written.config.nestedValue == .add)
        #expect(written.layers.items.contains { $0.to_v.weight.array.contains { $0 != 0 } }, "training moved the values")
        let afterwards = try AdapterTrainingRun(configFile: try adapterConfig(steps: 2, training: #", "learning_rate": 0.01"#, adapter: #", "nested_value": "add""#),
                                                resume: true, measuring: true)
        let trained = try afterwards.measureEffect(batches: 1)
        #expect(trained.shift > 1e-4 * trained.baseError && trained.shift > 100 * start.shift, "\(trained) after \(start)")
    }

    /// With `ema` an adapter run checkpoints the average beside the weights and writes the average.
    @Test func adapterRunWritesItsMovingAverage() throws {
        defer { cleanUp() }
        try AdapterTrainingRun(configFile: try adapterConfig(steps: 2, training: #", "ema": 0.5, "learning_rate": 0.01"#), resume: false).run()
        let written = try SafeTensorsFile(path: output.appendingPathComponent("adapter.safetensors").path)
        let saved = try SafeTensorsFile(path: output.appendingPathComponent("checkpoint.safetensors").path)
        let averaged = written.tensors.keys.filter { saved.tensors["ema." + $0] != nil }
        #expect(!averaged.isEmpty, "the checkpoint holds the average of the written tensors")
        var differs = false
        for name in averaged {
            let value = try written.tensor(name).array
            #expect(value == (try saved.tensor("ema." + name).array), "\(name) is not the average")
            let raw = try saved.tensor(name).array
            if value != raw { differs = true }
        }
        #expect(differs, "the average differs from the last step's weights")
        let resumed = try AdapterTrainingRun(configFile: try adapterConfig(steps: 3, training: #", "ema": 0.5"#), resume: true)
        #expect(resumed.trainer.ema?.shadows.first?.tensor.array == (try saved.tensor(resumed.trainer.ema!.shadows[0].path).array))
    }

    /// `--measure`'s "another subject's reference" loss swaps only the references:
    /// equal to the adapter's loss when every record shows the same reference,
    /// different when they differ.
    @Test func measureSwapsOnlyTheReferences() throws {
        defer { cleanUp() }
        try AdapterTrainingRun(configFile: try adapterConfig(steps: 2, training: #", "learning_rate": 0.01"#), resume: false).run()
        let batch = (0..<3).map { i in
            AdapterExample(target: AdapterTrainerTests.image(UInt64(i)), caption: "c\(i)", references: [AdapterTrainerTests.image(UInt64(10 + i))])
        }
        let rotated = AdapterTrainingRun.rotatingReferences(batch)
        #expect(rotated.map { $0.caption } == ["c0", "c1", "c2"])
        #expect(zip(rotated, [1, 2, 0]).allSatisfy { $0.references[0].pixels == batch[$1].references[0].pixels })

        let differing = try AdapterTrainingRun(configFile: try adapterConfig(steps: 2), resume: true, measuring: true).measureEffect(batches: 2)
        #expect(differing.loss != differing.otherLoss, "other references left the loss unchanged")
        var lines: [String] = []
        for i in 0..<3 { lines.append(#"{"image": "img\#(i).png", "caption": "a <critter> at night", "references": ["img0.png"]}"#) }
        try lines.joined(separator: "\n").write(to: dir.appendingPathComponent("train.jsonl"), atomically: true, encoding: .utf8)
        let same = try AdapterTrainingRun(configFile: try adapterConfig(steps: 2), resume: true, measuring: true).measureEffect(batches: 2)
        #expect(same.loss == same.otherLoss, "with one reference for all, the swap must change nothing")
        #expect(same.loss != same.baseLoss)
    }

    /// The log keeps lines up to the checkpoint's step and drops an unfinished last line.
    @Test func logLinesPastTheCheckpointAreDropped() throws {
        let text = "{\"step\": 1, \"loss\": 1}\n{\"step\": 2, \"loss\": 1}\n{\"step\": 2, \"validation_loss\": 1}\n{\"step\": 3, \"loss\": 1}\n{\"step\": 4"
        let data = Data(text.utf8)
        let throughTwo = TrainingLog.keptLength(data, through: 2)
        #expect(String(decoding: data.prefix(throughTwo), as: UTF8.self).hasSuffix("\"validation_loss\": 1}\n"))
        #expect(TrainingLog.keptLength(data, through: 0) == 0)
        #expect(TrainingLog.keptLength(data, through: 9) == text.utf8.count - "{\"step\": 4".utf8.count)
    }

    /// Nothing is created before the model has loaded: a missing model leaves no folder.
    @Test func aFailedSetupLeavesNoOutputFolder() throws {
        defer { cleanUp() }
        #expect(throws: (any Error).self) {
            try AdapterTrainingRun(configFile: try adapterConfig(steps: 2, model: dir.appendingPathComponent("nowhere").path), resume: false)
        }
        #expect(!FileManager.default.fileExists(atPath: output.path))
        let bad = try adapterConfig(steps: 2)
        try Data(String(contentsOf: bad, encoding: .utf8).replacingOccurrences(of: "\"log_every\": 1", with: "\"log_every\": 0").utf8).write(to: bad)
        #expect(throws: ModelConfigError.self) { try AdapterTrainingRun(configFile: bad, resume: false) }
        #expect(!FileManager.default.fileExists(atPath: output.path))
    }

    /// A run failing before its first checkpoint removes the folder it created,
    /// and never a folder (or a file in it) that was there before.
    @Test func aRunFailingBeforeItsFirstCheckpointCleansUpOnlyItsOwnFolder() throws {
        defer { cleanUp() }
        func failingRun() throws {
            let run = try AdapterTrainingRun(configFile: try adapterConfig(steps: 2), resume: false)
            let images = (0..<3).map { dir.appendingPathComponent("img\($0).png") }
            let moved = images.map { $0.appendingPathExtension("away") }
            for (a, b) in zip(images, moved) { try FileManager.default.moveItem(at: a, to: b) }
            defer { for (a, b) in zip(images, moved) { try? FileManager.default.moveItem(at: b, to: a) } }
            #expect(throws: (any Error).self) { try run.run() }
        }
        try failingRun()
        #expect(!FileManager.default.fileExists(atPath: output.path), "the folder this run created is gone")
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: output.appendingPathComponent("notes.txt"))
        try failingRun()
        #expect(try String(contentsOf: output.appendingPathComponent("notes.txt"), encoding: .utf8) == "mine")
    }

    /// `nest train vae`'s run: the same log guarantee.
    @Test func baseRunResumeLogsEachStepOnce() throws {
        defer { cleanUp() }
        let model = AdapterTrainerTests.tests.appendingPathComponent("NestDiffusionTests/Fixtures/pipelines/sd1").path
        func config(steps: Int) throws -> URL {
            let url = dir.appendingPathComponent("vae.json")
            try #"{"model": "\#(model)", "data": "train.jsonl", "output": "run", "resolution": 16, "batch_size": 2, "steps": \#(steps), "checkpoint_every": 2, "log_every": 1, "flip": false}"#
                .write(to: url, atomically: true, encoding: .utf8)
            return url
        }
        try BaseTrainingRun(component: .vae, configFile: try config(steps: 2), resume: false).run()
        // Killed after logging step 3, before its checkpoint.
        let log = try FileHandle(forWritingTo: output.appendingPathComponent("log.jsonl"))
        try log.seekToEnd()
        try log.write(contentsOf: Data("{\"step\": 3, \"loss\": 0.5}\n".utf8))
        try log.close()
        try BaseTrainingRun(component: .vae, configFile: try config(steps: 4), resume: true).run()
        #expect(try loggedSteps() == [1, 2, 3, 4])
    }
}
