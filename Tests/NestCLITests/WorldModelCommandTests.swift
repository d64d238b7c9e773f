import Foundation
import NestDiffusion
import NestIO
import NestModels
import Testing

/// The world's training path at its real sizes, a couple of steps each:
/// `world model` → `world dataset` → `train clip` / `train image-encoder` / `train vae` → `world pack`.
@Suite struct WorldModelCommandTests {
    @Test func skeletonTrainsAndPacks() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let base = dir.appendingPathComponent("base")
        #expect(try CLI.run(["world", "model", "--output", base.path]).status == 0)
        let again = try CLI.run(["world", "model", "--output", base.path])
        #expect(again.status != 0 && again.stderr.contains("already exists"))
        let sd = dir.appendingPathComponent("base-sd")
        #expect(try CLI.run(["world", "model", "--output", sd.path, "--noise-schedule", "sd"]).status == 0)
        let sdScheduler = try String(contentsOf: sd.appendingPathComponent("scheduler/scheduler_config.json"), encoding: .utf8)
        #expect(sdScheduler.contains("\"epsilon\"") && !sdScheduler.contains("rescale_betas_zero_snr"))
        let defaultScheduler = try String(contentsOf: base.appendingPathComponent("scheduler/scheduler_config.json"), encoding: .utf8)
        #expect(defaultScheduler.contains("\"v_prediction\"") && defaultScheduler.contains("\"rescale_betas_zero_snr\" : true"))
        let bogus = try CLI.run(["world", "model", "--output", dir.appendingPathComponent("base-x").path, "--noise-schedule", "cosine"])
        #expect(bogus.status != 0 && bogus.stderr.contains("--noise-schedule: unknown schedule 'cosine' (sd, zero-snr)"))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("base-x").path))
        #expect(try CLI.run(["world", "dataset", "--output", dir.appendingPathComponent("data").path,
                             "--identities", "2", "--contexts", "2", "--domain", "bot"]).status == 0)
        let manifest = try String(contentsOf: dir.appendingPathComponent("data/manifest.jsonl"), encoding: .utf8)
        #expect(manifest.split(separator: "\n").count == 4 && !manifest.contains("critter_"), "--domain bot writes bots only")

        func train(_ component: String) throws -> CLI.Result {
            let config = """
            {"model": "base", "data": "data/manifest.jsonl", "output": "\(component)", "batch_size": 4, "steps": 2,
             "learning_rate": 0.001, "flip": false, "log_every": 1}
            """
            let path = dir.appendingPathComponent("\(component).json").path
            try config.write(toFile: path, atomically: true, encoding: .utf8)
            return try CLI.run(["train", component, "--config", path])
        }
        let clip = try train("clip")
        #expect(clip.status == 0, "\(clip.stderr)")
        // The towers load as the classes model_index.json names, strictly by name.
        let text = try CLIPTextModel.load(folder: dir.appendingPathComponent("clip/text_encoder"))
        #expect(text.text_projection == nil)
        let vision = try CLIPVisionModel.load(folder: dir.appendingPathComponent("clip/image_encoder"))
        #expect(vision.visual_projection != nil)
        let dual = try SafeTensorsFile(path: dir.appendingPathComponent("clip/clip.safetensors").path)
        #expect(dual.names.contains("logit_scale") && dual.names.contains("text_projection.weight"))

        // The image encoder alone, trained to tell the dataset's individuals apart (each scene against its references).
        let identity = try train("image-encoder")
        #expect(identity.status == 0, "\(identity.stderr)")
        #expect(identity.stdout.contains("image-encoder/image_encoder"))
        let tuned = try CLIPVisionModel.load(folder: dir.appendingPathComponent("image-encoder/image_encoder"))
        #expect(tuned.visual_projection != nil && tuned.config.imageSize == vision.config.imageSize)
        let identityLog = try String(contentsOf: dir.appendingPathComponent("image-encoder/log.jsonl"), encoding: .utf8)
        #expect(identityLog.split(separator: "\n").count == 2 && identityLog.contains("\"step\": 2"))
        // Records without references give it nothing to pair: refused, naming the line.
        try #"{"image": "images/bot_000/00.png", "caption": "a bot"}"#.write(
            to: dir.appendingPathComponent("data/lone.jsonl"), atomically: true, encoding: .utf8)
        let lonePath = dir.appendingPathComponent("lone.json").path
        try #"{"model": "base", "data": "data/lone.jsonl", "output": "lone", "steps": 1}"#.write(toFile: lonePath, atomically: true, encoding: .utf8)
        let lone = try CLI.run(["train", "image-encoder", "--config", lonePath])
        #expect(lone.status != 0 && lone.stderr.contains("line 1: no \"references\""), "\(lone.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("lone").path))
        let singlePath = dir.appendingPathComponent("single.json").path
        try #"{"model": "base", "data": "data/manifest.jsonl", "output": "single", "batch_size": 1}"#.write(toFile: singlePath, atomically: true, encoding: .utf8)
        let single = try CLI.run(["train", "image-encoder", "--config", singlePath])
        #expect(single.status != 0 && single.stderr.contains("batch_size must be at least 2 for image-encoder"), "\(single.stderr)")

        let vae = try train("vae")
        #expect(vae.status == 0, "\(vae.stderr)")
        let vaeConfig = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("vae/vae/config.json"))) as! [String: Any]
        let scale = vaeConfig["scaling_factor"] as! Double
        #expect(scale > 0 && scale != 1, "the trained VAE's scaling factor is measured, got \(scale)")

        let packed = dir.appendingPathComponent("packed")
        let pack = try CLI.run(["world", "pack", "--model", dir.appendingPathComponent("clip").path, "--output", packed.path])
        #expect(pack.status == 0, "\(pack.stderr)")
        let half = try SafeTensorsFile(path: packed.appendingPathComponent("text_encoder/model.safetensors").path)
        let full = try SafeTensorsFile(path: dir.appendingPathComponent("clip/text_encoder/model.safetensors").path)
        #expect(half.names == full.names && half.tensors.values.allSatisfy { $0.dtype == .f16 })
        let a = try full.tensor(full.names[0]).array, b = try half.tensor(half.names[0]).array
        #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 1e-3 * max(1, abs($0)) }, "float16 keeps the values to its precision")
    }
}
