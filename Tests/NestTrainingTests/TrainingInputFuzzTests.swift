import Foundation
import NestIO
import NestTraining
import XCTest
import NestTestSupport

/// Seeded, time-bounded fuzzing of what a user hands `nest train`: configs
/// (random types, out-of-range and non-finite numbers, unknown, misspelled
/// and missing keys, deep nesting, cut text) and manifests (random bytes,
/// control characters, huge lines, bad records). Property: a valid result or
/// an error whose description is one non-empty line; never a crash or hang,
/// and nothing created in the folder the run would write to.
///
/// `NEST_FUZZ_SCALE` multiplies the case count and the time budget (default 1:
/// ~800 cases, a few seconds); `NEST_FUZZ_SEED` replays a run.
final class TrainingInputFuzzTests: XCTestCase {
    static let scale = max(1, Int(ProcessInfo.processInfo.environment["NEST_FUZZ_SCALE"] ?? "") ?? 1)
    static let seed = UInt64(ProcessInfo.processInfo.environment["NEST_FUZZ_SEED"] ?? "") ?? 0x5EED_2026

    static let adapterTemplate: [String: Any] = [
        "model": "no-model", "data": "train.jsonl", "output": "run",
        "adapter": ["placeholder_token": "<critter>", "class_word": "cat", "kind": "nested", "feature_layer": -2,
                    "resampler": ["width": 16, "depth": 1, "heads": 2, "head_dim": 8, "queries": 4, "output_dim": 16, "ff_mult": 2]],
        "training": ["steps": 4, "batch_size": 2, "resolution": 32, "learning_rate": 1e-3, "weight_decay": 0.01,
                     "warmup_steps": 1, "schedule": "cosine", "gradient_clip": 1, "gradient_accumulation": 1, "ema": 0.9,
                     "drop_image": 0.05, "drop_text": 0.05, "drop_both": 0.05, "seed": 1, "flip_targets": true,
                     "subject_loss_weight": 2, "timestep_range": [100, 900]],
        "checkpoint_every": 2, "log_every": 1, "sample_every": 4, "bad_records": "skip", "validation_batches": 1,
    ]
    static let baseTemplate: [String: Any] = [
        "model": "no-model", "data": "train.jsonl", "output": "run", "resolution": 32, "batch_size": 2, "steps": 4,
        "learning_rate": 1e-3, "weight_decay": 0.01, "warmup_steps": 1, "schedule": "constant", "gradient_clip": 1,
        "seed": 1, "kl_weight": 1e-6, "logvar_shift": -1, "caption_dropout": 0.1, "checkpoint_every": 2, "log_every": 1,
        "flip": false, "sample_every": 2, "attention_localization": ["weight": 0.05, "words": ["cat"]],
    ]

    /// A folder per test with images, a mask, a FIFO and a subfolder the manifests name.
    static func workspace() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nest-fuzz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("folder"), withIntermediateDirectories: true)
        let image = try RGBImage(width: 8, height: 8, pixels: [UInt8](repeating: 90, count: 192))
        for name in ["a.png", "b.png", "m.png"] { try ImageFile.writePNG(image, to: dir.appendingPathComponent(name).path) }
        guard mkfifo(dir.appendingPathComponent("fifo").path, 0o600) == 0 else { throw CocoaError(.fileWriteUnknown) }
        let manifest = #"{"image": "a.png", "caption": "a <critter> cat", "references": ["b.png"], "mask": "m.png"}"#
        try Data(manifest.utf8).write(to: dir.appendingPathComponent("train.jsonl"))
        return dir
    }

    static func listing(_ dir: URL) -> [String] {
        ((FileManager.default.enumerator(atPath: dir.path)?.allObjects as? [String]) ?? []).sorted()
    }

    /// Non-empty, and no control characters: no line breaks, and nothing a
    /// terminal would act on (an escape sequence from a hostile file).
    static func isOneLine(_ message: String) -> Bool {
        !message.isEmpty && !message.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
    }

    /// Checks the property for one error, recording the seed and the case when it fails.
    static func expectOneLine(_ error: any Error, _ what: String, _ input: Data) {
        let message = String(describing: error)
        if !isOneLine(message) {
            XCTFail("seed \(seed): \(what) gave a message that is not one line: \(message.debugDescription); input: \(String(decoding: input.prefix(2000), as: UTF8.self).debugDescription)")
        }
    }

    func testConfigsGiveAValidResultOrAOneLineError() throws {
        let dir = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: dir) }
        let before = Self.listing(dir)
        var r = FuzzRandom(seed: Self.seed)
        let cases = 600 * Self.scale, deadline = Date().addingTimeInterval(20 * Double(Self.scale))
        var ran = 0, accepted = 0
        let url = dir.appendingPathComponent("config.json")
        for index in 0..<cases where Date() < deadline {
            let adapter = r.chance(0.5)
            let input = FuzzInputs.config(adapter ? Self.adapterTemplate : Self.baseTemplate, &r)
            try input.write(to: url)
            let resume = r.chance(0.3)
            var loaded = false
            do {
                // A config that passes is set up as a run too: past the checks it must
                // still fail (there is no model here) without creating anything.
                if adapter {
                    _ = try AdapterRunConfig.load(from: url)
                    loaded = true
                    _ = try AdapterTrainingRun(configFile: url, resume: resume)
                } else {
                    _ = try BaseRunConfig.load(from: url)
                    loaded = true
                    _ = try BaseTrainingRun(component: [.vae, .unet, .clip][index % 3], configFile: url, resume: resume)
                }
                XCTFail("seed \(Self.seed) case \(index): a run was set up without a model")
            } catch {
                Self.expectOneLine(error, "config case \(index)", input)
            }
            if loaded { accepted += 1 }
            try? FileManager.default.removeItem(at: url)
            let after = Self.listing(dir)
            if after != before {
                XCTFail("seed \(Self.seed) case \(index): left \(Set(after).subtracting(before).sorted()) behind; input: \(String(decoding: input, as: UTF8.self))")
                return
            }
            ran += 1
        }
        print("config fuzz: seed \(Self.seed), \(ran) cases (\(accepted) valid) at scale \(Self.scale)")
        XCTAssertGreaterThanOrEqual(ran, min(cases, 200), "only \(ran) cases ran in the time budget")
    }

    func testManifestsGiveSamplesProblemsOrAOneLineError() throws {
        let dir = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: dir) }
        var r = FuzzRandom(seed: Self.seed &+ 1)
        let cases = 300 * Self.scale, deadline = Date().addingTimeInterval(20 * Double(Self.scale))
        var ran = 0, usable = 0, problems = 0
        let url = dir.appendingPathComponent("fuzz.jsonl")
        for index in 0..<cases where Date() < deadline {
            let input = FuzzInputs.manifest(&r)
            try input.write(to: url)
            do {
                let manifest = try TrainingManifest(url: url, placeholder: r.chance(0.5) ? "<critter>" : nil,
                                                    requireReferences: r.chance(0.5), checkImages: r.chance(0.7),
                                                    policy: r.chance(0.8) ? .skip : .fail)
                usable += manifest.samples.count
                problems += manifest.problems.count
                for problem in manifest.problems {
                    let message = problem.description
                    if !Self.isOneLine(message) {
                        XCTFail("seed \(Self.seed) manifest case \(index): problem \(message.debugDescription)")
                    }
                }
                for sample in manifest.samples where !FileManager.default.fileExists(atPath: sample.image.path) {
                    XCTFail("seed \(Self.seed) manifest case \(index): a sample's image \(sample.image.path) does not exist")
                }
            } catch {
                Self.expectOneLine(error, "manifest case \(index)", input)
            }
            ran += 1
        }
        print("manifest fuzz: seed \(Self.seed), \(ran) cases, \(usable) usable records, \(problems) reported problems at scale \(Self.scale)")
        XCTAssertGreaterThanOrEqual(ran, min(cases, 100), "only \(ran) cases ran in the time budget")
    }
}
