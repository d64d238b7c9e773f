import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels

/// `nest train vae|unet --config FILE.json`: trains one component of a
/// diffusers folder and writes it back in the same layout, so the result is a
/// model folder `nest generate` reads.
///
/// ```json
/// { "model": "models/world",       // diffusers folder: vae/ (and for unet: unet/, text_encoder/, tokenizer/, scheduler/)
///   "data": "data/images.jsonl",    // {"image": …, "caption": …} per line
///   "output": "runs/vae",
///   "resolution": 64, "batch_size": 8, "steps": 5000,
///   "learning_rate": 1e-4, "weight_decay": 0.01, "warmup_steps": 100, "schedule": "cosine",
///   "gradient_clip": 1.0, "seed": 0, "kl_weight": 1e-6, "caption_dropout": 0.1,
///   "checkpoint_every": 500, "log_every": 20 }
/// ```
/// A component whose folder holds only `config.json` starts from random
/// weights; with weights present, training continues from them. Output:
/// `<output>/<component>/config.json` + `diffusion_pytorch_model.safetensors`,
/// `checkpoint.safetensors`, `log.jsonl`.
public struct BaseRunConfig: Codable {
    public var model: String
    public var data: String
    public var output: String
    public var resolution: Int?
    public var batchSize: Int?
    public var steps: Int?
    public var learningRate: Float?
    public var weightDecay: Float?
    public var warmupSteps: Int?
    public var schedule: LearningRateSchedule.Decay?
    public var gradientClip: Float?
    public var seed: UInt64?
    public var klWeight: Float?
    public var captionDropout: Float?
    public var checkpointEvery: Int?
    public var logEvery: Int?

    enum CodingKeys: String, CodingKey {
        case model, data, output, resolution, batchSize = "batch_size", steps, learningRate = "learning_rate"
        case weightDecay = "weight_decay", warmupSteps = "warmup_steps", schedule, gradientClip = "gradient_clip", seed
        case klWeight = "kl_weight", captionDropout = "caption_dropout", checkpointEvery = "checkpoint_every", logEvery = "log_every"
    }

    var optimization: OptimizationOptions {
        OptimizationOptions(learningRate: learningRate ?? 1e-4, weightDecay: weightDecay ?? 1e-2, warmupSteps: warmupSteps ?? 0,
                            totalSteps: steps ?? 1000, schedule: schedule ?? .constant, gradientClip: gradientClip ?? 1,
                            seed: seed ?? 0)
    }
}

public final class BaseTrainingRun {
    public enum Component: String, Sendable { case vae, unet }

    public let component: Component
    public let config: BaseRunConfig
    public let manifest: TrainingManifest
    public let output: URL
    let source: URL
    let vaeTrainer: VAETrainer?
    let unetTrainer: UNetTrainer?
    var images: [URL: RGBImage] = [:]

    public var state: TrainingState { vaeTrainer?.state ?? unetTrainer!.state }
    var optimizer: AdamW { vaeTrainer?.optimizer ?? unetTrainer!.optimizer }
    var trained: Module { vaeTrainer.map { $0.vae as Module } ?? unetTrainer!.unet }

    public init(component: Component, configFile: URL, resume: Bool) throws {
        self.component = component
        let base = configFile.deletingLastPathComponent()
        func resolve(_ p: String) -> URL { p.hasPrefix("/") ? URL(fileURLWithPath: p) : base.appendingPathComponent(p) }
        config = try decodeConfig(BaseRunConfig.self, from: configFile)
        output = resolve(config.output)
        let checkpoint = output.appendingPathComponent("checkpoint.safetensors")
        if FileManager.default.fileExists(atPath: checkpoint.path) && !resume {
            throw ModelConfigError("\(output.path) already holds a run; pass --resume to continue it (or choose another output)")
        }
        if resume && !FileManager.default.fileExists(atPath: checkpoint.path) {
            throw ModelConfigError("--resume: no checkpoint at \(checkpoint.path)")
        }
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        manifest = try TrainingManifest(url: resolve(config.data))
        let folder = resolve(config.model)
        source = folder.appendingPathComponent(component.rawValue)
        let options = config.optimization

        func vae() throws -> AutoencoderKL {
            let url = folder.appendingPathComponent("vae")
            if (try? WeightFiles.locate(in: url)) != nil { return try AutoencoderKL.load(folder: url) }
            let model = try AutoencoderKL(config: try decodeConfig(AutoencoderKLConfig.self, from: url.appendingPathComponent("config.json")))
            model.randomizeWeights(seed: options.seed &+ 1)
            return model
        }
        switch component {
        case .vae:
            vaeTrainer = VAETrainer(vae: try vae(), options: options, klWeight: config.klWeight ?? 1e-6)
            unetTrainer = nil
        case .unet:
            let model = try ModelFolder(url: folder)
            let unetURL = try model.component("unet")
            let unet = (try? WeightFiles.locate(in: unetURL)) != nil ? try UNet2DConditionModel.load(folder: unetURL)
                : UNet2DConditionModel(config: try UNet2DConditionConfig.load(from: unetURL.appendingPathComponent("config.json")),
                                       seed: options.seed &+ 2)
            let schedulerConfig = try SchedulerConfig.load(from: try model.component("scheduler").appendingPathComponent("scheduler_config.json"))
            unetTrainer = try UNetTrainer(unet: unet, vae: try vae(), prompts: try PromptEncoder.load(folder: model),
                                          schedulerConfig: schedulerConfig, options: options,
                                          captionDropout: config.captionDropout ?? 0.1)
            vaeTrainer = nil
        }
        if resume {
            let restored = try TrainingCheckpoint.load(into: optimizer.parameters, optimizer: optimizer, from: checkpoint.path)
            vaeTrainer?.state = restored
            unetTrainer?.state = restored
        }
    }

    func image(_ url: URL) throws -> RGBImage {
        if let hit = images[url] { return hit }
        let decoded = try ImageFile.decode(path: url.path)
        images[url] = decoded
        return decoded
    }

    public func run(progress: (Int, Float, Double) -> Void = { _, _, _ in }) throws {
        let total = config.steps ?? 1000, batchSize = config.batchSize ?? 4, resolution = config.resolution ?? 64
        let order = SampleOrder(count: manifest.samples.count, seed: config.seed ?? 0)
        let logURL = output.appendingPathComponent("log.jsonl")
        if !FileManager.default.fileExists(atPath: logURL.path) { FileManager.default.createFile(atPath: logURL.path, contents: nil) }
        let log = try FileHandle(forWritingTo: logURL)
        log.seekToEndOfFile()
        defer { try? log.close() }
        let start = Date(), first = state.step
        while state.step < total {
            var s = state
            let batch = order.next(batchSize, state: &s)
            let samples = batch.map { manifest.samples[$0] }
            let pixels = F.concat(try samples.enumerated().map { i, sample in
                Augmentation.flipOnly.apply(try image(sample.image), size: resolution, seed: UInt64(s.step * 1000 + i))
            }, axis: 0)
            let loss: Float
            if let trainer = vaeTrainer {
                loss = trainer.step(images: pixels)
                trainer.state.epoch = s.epoch; trainer.state.position = s.position
            } else {
                loss = unetTrainer!.step(images: pixels, captions: samples.map(\.caption))
                unetTrainer!.state.epoch = s.epoch; unetTrainer!.state.position = s.position
            }
            let step = state.step
            let rate = Double((step - first) * batchSize) / max(Date().timeIntervalSince(start), 1e-9)
            progress(step, loss, rate)
            if step % (config.logEvery ?? 20) == 0 || step == total {
                log.write(Data(String(format: #"{"step": %d, "loss": %.6f, "samples_per_s": %.3f, "epoch": %d}"#, step, loss, rate, state.epoch).utf8 + [10]))
            }
            if step % (config.checkpointEvery ?? 500) == 0 || step == total {
                try TrainingCheckpoint.save(parameters: optimizer.parameters, optimizer: optimizer, state: state,
                                            to: output.appendingPathComponent("checkpoint.safetensors").path)
            }
        }
        // The trained component in diffusers' layout.
        let folder = output.appendingPathComponent(component.rawValue)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let configData = try Data(contentsOf: source.appendingPathComponent("config.json"))
        try configData.write(to: folder.appendingPathComponent("config.json"), options: .atomic)
        try trained.save(to: folder.appendingPathComponent("diffusion_pytorch_model.safetensors").path, overwrite: true)
    }
}
