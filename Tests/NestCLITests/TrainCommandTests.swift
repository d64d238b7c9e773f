import Foundation
import NestEngine
import NestIO
import NestModels
import Testing

/// `nest train adapter` end to end on the tiny SD1-like pipeline: logs, checkpoints, resume.
@Suite struct TrainCommandTests {
    @Test func trainsResumesAndRefusesToClobber() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = SeededRandom(seed: 3)
        func picture(_ name: String) throws {
            let image = try RGBImage(width: 40, height: 40, pixels: (0..<(40 * 40 * 3)).map { _ in UInt8(rng.nextInt(below: 256)) })
            try ImageFile.writePNG(image, to: dir.appendingPathComponent(name).path)
        }
        for i in 0..<4 { try picture("img\(i).png") }
        let manifest = [
            #"{"image": "img0.png", "caption": "a <critter> on the beach", "references": ["img1.png"]}"#,
            #"{"image": "img1.png", "caption": "a <critter> at night", "references": ["img0.png", "img2.png"]}"#,
            #"{"image": "img2.png", "caption": "a small <critter>", "references": ["img3.png"]}"#,
            #"{"image": "img3.png", "caption": "a cat", "references": ["img2.png"]}"#,
        ].joined(separator: "\n")
        try manifest.write(to: dir.appendingPathComponent("train.jsonl"), atomically: true, encoding: .utf8)
        func config(steps: Int) throws -> String {
            let text = """
            {"model": "\(SubjectCommandTests.setup.folder.path)", "data": "train.jsonl", "output": "run",
             "adapter": {"placeholder_token": "<critter>", "class_word": "cat",
                         "resampler": {"width": 16, "depth": 1, "heads": 2, "head_dim": 8, "queries": 4}},
             "training": {"steps": \(steps), "batch_size": 2, "resolution": 32, "learning_rate": 0.001},
             "checkpoint_every": 1, "log_every": 1, "validation_batches": 1}
            """
            let path = dir.appendingPathComponent("config.json").path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let first = try CLI.run(["train", "adapter", "--config", try config(steps: 2)])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stderr.contains("line 4: caption \"a cat\" does not contain the placeholder"), "bad records are reported: \(first.stderr)")
        let run = dir.appendingPathComponent("run")
        for file in ["adapter.json", "adapter.safetensors", "checkpoint.safetensors", "log.jsonl"] {
            #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent(file).path), "\(file) missing")
        }
        let again = try CLI.run(["train", "adapter", "--config", try config(steps: 2)])
        #expect(again.status != 0 && again.stderr.contains("pass --resume"), "\(again.stderr)")
        let resumed = try CLI.run(["train", "adapter", "--config", try config(steps: 4), "--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let log = try String(contentsOf: run.appendingPathComponent("log.jsonl"), encoding: .utf8)
        let entries = log.split(separator: "\n").compactMap { line -> [String: Any]? in
            guard let data = line.data(using: .utf8) else { return nil }
            return try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        }
        let steps = entries.filter { $0["loss"] != nil }.compactMap { $0["step"] as? Int }
        #expect(steps == [1, 2, 3, 4], "log steps \(steps)")
        // A fixed validation set at every checkpoint: the base model's loss on it never
        // changes (same batches, noise and timesteps; frozen base), the adapter's does.
        let validation = entries.filter { $0["validation_loss"] != nil }
        #expect(validation.compactMap { $0["step"] as? Int } == [1, 2, 3, 4])
        let baseLosses = Set(validation.compactMap { $0["validation_base_loss"] as? Double })
        let adapterLosses = Set(validation.compactMap { $0["validation_loss"] as? Double })
        #expect(baseLosses.count == 1 && baseLosses.first!.isFinite && baseLosses.first! > 0, "\(baseLosses)")
        #expect(adapterLosses.count > 1, "\(adapterLosses)")
        // The trained adapter generates.
        let out = dir.appendingPathComponent("out.png").path
        let generate = try CLI.run(["generate", "--model", SubjectCommandTests.setup.folder.path, "--prompt", "a <critter>",
                                    "--adapter", run.appendingPathComponent("adapter.json").path,
                                    "--subject", "<critter>=\(dir.appendingPathComponent("img0.png").path)",
                                    "--steps", "2", "--output", out])
        #expect(generate.status == 0, "\(generate.stderr)")
    }
}

/// `nest train vae` and `nest train unet` on the tiny SD1-like pipeline folder.
@Suite struct TrainComponentCommandTests {
    @Test(arguments: ["vae", "unet"])
    func trainsAComponentAndWritesItBack(component: String) throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = SeededRandom(seed: 5)
        var lines: [String] = []
        for i in 0..<3 {
            let image = try RGBImage(width: 32, height: 32, pixels: (0..<(32 * 32 * 3)).map { _ in UInt8(rng.nextInt(below: 256)) })
            try ImageFile.writePNG(image, to: dir.appendingPathComponent("img\(i).png").path)
            lines.append(#"{"image": "img\#(i).png", "caption": "a photo of a cat"}"#)
        }
        try lines.joined(separator: "\n").write(to: dir.appendingPathComponent("data.jsonl"), atomically: true, encoding: .utf8)
        let config = """
        {"model": "\(CLI.fixtures.appendingPathComponent("sd1").path)", "data": "data.jsonl", "output": "run",
         "resolution": 32, "batch_size": 2, "steps": 2, "learning_rate": 0.001, "log_every": 1, "checkpoint_every": 1}
        """
        let path = dir.appendingPathComponent("config.json").path
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        let r = try CLI.run(["train", component, "--config", path])
        #expect(r.status == 0, "\(r.stderr)")
        let out = dir.appendingPathComponent("run/\(component)")
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("config.json").path))
        let weights = try SafeTensorsFile(path: out.appendingPathComponent("diffusion_pytorch_model.safetensors").path)
        let original = try SafeTensorsFile(path: CLI.fixtures.appendingPathComponent("sd1/\(component)/diffusion_pytorch_model.safetensors").path)
        #expect(Set(weights.names) == Set(original.names), "the trained component keeps the checkpoint's names")
        let log = try String(contentsOf: dir.appendingPathComponent("run/log.jsonl"), encoding: .utf8)
        #expect(log.split(separator: "\n").count == 2)
    }
}

/// Bad training configs end in one line naming the key and the value, before
/// anything is created; a zero interval once crashed the process (`step % 0`).
@Suite struct TrainConfigCommandTests {
    static func adapterConfig(_ extra: String, training: String = "") -> String {
        """
        {"model": "\(SubjectCommandTests.setup.folder.path)", "data": "train.jsonl", "output": "run",
         "adapter": {"placeholder_token": "<critter>", "class_word": "cat",
                     "resampler": {"width": 16, "depth": 1, "heads": 2, "head_dim": 8, "queries": 4}},
         "training": {"steps": 2, "batch_size": 2, "resolution": 32\(training)}\(extra)}
        """
    }

    /// Runs `nest train KIND` on `config` in a fresh folder with a two-record manifest.
    static func train(_ kind: String, _ config: String, prepare: (URL) throws -> Void = { _ in }) throws -> (CLI.Result, URL) {
        let dir = CLI.temporaryFolder()
        var rng = SeededRandom(seed: 9)
        for i in 0..<2 {
            let image = try RGBImage(width: 32, height: 32, pixels: (0..<(32 * 32 * 3)).map { _ in UInt8(rng.nextInt(below: 256)) })
            try ImageFile.writePNG(image, to: dir.appendingPathComponent("img\(i).png").path)
        }
        try (#"{"image": "img0.png", "caption": "a <critter> cat", "references": ["img1.png"]}"# + "\n"
             + #"{"image": "img1.png", "caption": "a <critter> cat", "references": ["img0.png"]}"#)
            .write(to: dir.appendingPathComponent("train.jsonl"), atomically: true, encoding: .utf8)
        try config.write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        try prepare(dir)
        return (try CLI.run(["train", kind, "--config", dir.appendingPathComponent("config.json").path]), dir)
    }

    static func expectOneLineError(_ r: CLI.Result, containing text: String) {
        #expect(r.status == 1, "exit status \(r.status): \(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && r.stderr.contains(text), "\(r.stderr)")
    }

    @Test(arguments: ["checkpoint_every", "log_every", "sample_every"])
    func aZeroIntervalIsRefusedByName(key: String) throws {
        let (adapter, dir) = try Self.train("adapter", Self.adapterConfig(#", "\#(key)": 0"#))
        defer { try? FileManager.default.removeItem(at: dir) }
        Self.expectOneLineError(adapter, containing: "\(key) must be at least 1, got 0")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("run").path))
        for kind in ["vae", "unet", "clip"] {
            let config = #"{"model": "\#(CLI.fixtures.appendingPathComponent("sd1").path)", "data": "train.jsonl", "output": "run", "\#(key)": 0}"#
            let (r, other) = try Self.train(kind, config)
            defer { try? FileManager.default.removeItem(at: other) }
            Self.expectOneLineError(r, containing: "\(key) must be at least 1, got 0")
            #expect(!FileManager.default.fileExists(atPath: other.appendingPathComponent("run").path))
        }
    }

    @Test func aNegativeLearningRateAndAMisspelledKeyAreRefused() throws {
        let (negative, dir) = try Self.train("adapter", Self.adapterConfig("", training: #", "learning_rate": -0.001"#))
        defer { try? FileManager.default.removeItem(at: dir) }
        Self.expectOneLineError(negative, containing: "training.learning_rate must be a finite number > 0, got -0.001")
        let (typo, other) = try Self.train("adapter", Self.adapterConfig("", training: #", "lerning_rate": 0.001"#))
        defer { try? FileManager.default.removeItem(at: other) }
        Self.expectOneLineError(typo, containing: #"training: unknown key "lerning_rate" (did you mean "learning_rate"?)"#)
    }

    /// `unet_learning_rate`: the run writes the UNet it trained with the adapter
    /// (the model's config, changed weights) beside the adapter; the model's own
    /// UNet is left as it was. A rate that is not positive is refused by name.
    @Test func aUNetRateWritesTheTrainedUNetBesideTheAdapter() throws {
        let model = SubjectCommandTests.setup.folder.appendingPathComponent("unet")
        let weights = model.appendingPathComponent("diffusion_pytorch_model.safetensors")
        let before = try Data(contentsOf: weights)
        let (r, dir) = try Self.train("adapter", Self.adapterConfig("", training: #", "unet_learning_rate": 0.001"#))
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(r.status == 0, "\(r.stderr)")
        let unet = dir.appendingPathComponent("run/unet")
        #expect(try Data(contentsOf: unet.appendingPathComponent("config.json")) == Data(contentsOf: model.appendingPathComponent("config.json")))
        let trained = try SafeTensorsFile(path: unet.appendingPathComponent("diffusion_pytorch_model.safetensors").path)
        let original = try SafeTensorsFile(path: weights.path)
        #expect(Set(trained.names) == Set(original.names))
        let changed = try original.names.filter { try trained.floats($0) != original.floats($0) }.count
        #expect(changed > original.names.count / 2, "\(changed) of \(original.names.count) tensors changed")
        #expect(try Data(contentsOf: weights) == before, "the model's UNet is not touched")
        // The adapter names the UNet it belongs to: the written one, not the model's.
        let adapter = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("run/adapter.json"))) as? [String: Any]
        let recorded = adapter?["trained_with_unet"] as? String
        #expect(recorded == (try UNet2DConditionModel.load(folder: unet).weightDigest()))
        #expect(recorded != (try UNet2DConditionModel.load(folder: model).weightDigest()))
        let (negative, other) = try Self.train("adapter", Self.adapterConfig("", training: #", "unet_learning_rate": 0"#))
        defer { try? FileManager.default.removeItem(at: other) }
        Self.expectOneLineError(negative, containing: "training.unet_learning_rate must be a finite number > 0, got 0")
    }

    /// A problem found only with the model loaded (a timestep range past the
    /// scheduler's) leaves no output folder, and an existing one as it was.
    @Test func aSetupErrorLeavesNoOutputBehind() throws {
        let config = Self.adapterConfig("", training: #", "timestep_range": [0, 5000]"#)
        let (r, dir) = try Self.train("adapter", config)
        defer { try? FileManager.default.removeItem(at: dir) }
        Self.expectOneLineError(r, containing: "timestep_range [0, 5000] goes past the scheduler's")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("run").path))
        let (again, other) = try Self.train("adapter", config) { dir in
            try FileManager.default.createDirectory(at: dir.appendingPathComponent("run"), withIntermediateDirectories: true)
            try "mine".write(to: dir.appendingPathComponent("run/notes.txt"), atomically: true, encoding: .utf8)
        }
        defer { try? FileManager.default.removeItem(at: other) }
        #expect(again.status == 1)
        let kept = try FileManager.default.contentsOfDirectory(atPath: other.appendingPathComponent("run").path)
        #expect(kept == ["notes.txt"], "\(kept)")
    }
}
