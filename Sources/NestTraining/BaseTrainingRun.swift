import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels

/// `nest train vae|unet|clip --config FILE.json`: trains one component of a
/// diffusers folder and writes it back in the same layout, so the result is a
/// model folder `nest generate` reads. `clip` trains the text encoder and the
/// image encoder together (contrastively) and writes both.
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
/// weights; with weights present, training continues from them (clip always
/// starts from random weights). Output: `<output>/<component>/config.json` +
/// weights (`vae/`, `unet/`, or `text_encoder/` + `image_encoder/` +
/// `clip.safetensors` with both towers and the temperature),
/// `checkpoint.safetensors`, `log.jsonl`. A trained VAE's `scaling_factor` is
/// set to 1 / (standard deviation of its latents over up to 256 training
/// images), as Stable Diffusion's 0.18215 was chosen.
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
    /// VAE only, when starting (not resuming): add this to the encoder's
    /// posterior log-variance first (see `AutoencoderKL.shiftPosteriorLogVariance`).
    public var logvarShift: Float?
    public var captionDropout: Float?
    public var checkpointEvery: Int?
    public var logEvery: Int?
    /// Mirror images at random (default true). Turn off when captions name left and right.
    public var flip: Bool?
    /// Write `samples/step-N.png` every N steps: VAE reconstructions under their
    /// originals, or UNet generations of the first captions (clip: none).
    public var sampleEvery: Int?
    /// UNet only: supervise the subject noun's cross-attention with the
    /// records' `"mask"` images, `{"weight": 0.02, "words": ["critter", "bot"]}`.
    public var attentionLocalization: AttentionLocalization?

    enum CodingKeys: String, CodingKey {
        case model, data, output, resolution, batchSize = "batch_size", steps, learningRate = "learning_rate"
        case weightDecay = "weight_decay", warmupSteps = "warmup_steps", schedule, gradientClip = "gradient_clip", seed
        case klWeight = "kl_weight", logvarShift = "logvar_shift", captionDropout = "caption_dropout", checkpointEvery = "checkpoint_every", logEvery = "log_every", flip, sampleEvery = "sample_every"
        case attentionLocalization = "attention_localization"
    }

    var optimization: OptimizationOptions {
        OptimizationOptions(learningRate: learningRate ?? 1e-4, weightDecay: weightDecay ?? 1e-2, warmupSteps: warmupSteps ?? 0,
                            totalSteps: steps ?? 1000, schedule: schedule ?? .constant, gradientClip: gradientClip ?? 1,
                            seed: seed ?? 0)
    }
}

public final class BaseTrainingRun {
    public enum Component: String, Sendable { case vae, unet, clip }

    public let component: Component
    public let config: BaseRunConfig
    public let manifest: TrainingManifest
    public let output: URL
    let source: URL
    private(set) var vaeTrainer: VAETrainer?
    private(set) var unetTrainer: UNetTrainer?
    private(set) var clipTrainer: CLIPTrainer?
    private(set) var imageProcessor: CLIPImageProcessor?
    var images: [URL: RGBImage] = [:]

    public var state: TrainingState {
        get { vaeTrainer?.state ?? unetTrainer?.state ?? clipTrainer!.state }
        set { vaeTrainer?.state = newValue; unetTrainer?.state = newValue; clipTrainer?.state = newValue }
    }
    var optimizer: AdamW { vaeTrainer?.optimizer ?? unetTrainer?.optimizer ?? clipTrainer!.optimizer }

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
        (vaeTrainer, unetTrainer, clipTrainer, imageProcessor) = (nil, nil, nil, nil)
        switch component {
        case .vae:
            let model = try vae()
            if let shift = config.logvarShift, !resume { model.shiftPosteriorLogVariance(by: shift) }
            vaeTrainer = VAETrainer(vae: model, options: options, klWeight: config.klWeight ?? 1e-6)
        case .clip:
            let textConfig = try decodeConfig(CLIPTextConfig.self, from: folder.appendingPathComponent("text_encoder/config.json"))
            let visionConfig = try decodeConfig(CLIPVisionConfig.self, from: folder.appendingPathComponent("image_encoder/config.json"))
            let model = try CLIPDualEncoder(text: textConfig, vision: visionConfig)
            model.randomizeWeights(seed: options.seed &+ 3)
            clipTrainer = try CLIPTrainer(model: model, tokenizer: try CLIPTokenizer.load(folder: folder.appendingPathComponent("tokenizer")),
                                          options: options)
            imageProcessor = try CLIPImageProcessor.load(folder: folder.appendingPathComponent("feature_extractor"))
        case .unet:
            let model = try ModelFolder(url: folder)
            let unetURL = try model.component("unet")
            let unet = (try? WeightFiles.locate(in: unetURL)) != nil ? try UNet2DConditionModel.load(folder: unetURL)
                : UNet2DConditionModel(config: try UNet2DConditionConfig.load(from: unetURL.appendingPathComponent("config.json")),
                                       seed: options.seed &+ 2)
            let schedulerConfig = try SchedulerConfig.load(from: try model.component("scheduler").appendingPathComponent("scheduler_config.json"))
            if config.attentionLocalization != nil && config.flip ?? true {
                throw ModelConfigError("attention_localization needs \"flip\": false (the masks are not mirrored with the images)")
            }
            unetTrainer = try UNetTrainer(unet: unet, vae: try vae(), prompts: try PromptEncoder.load(folder: model),
                                          schedulerConfig: schedulerConfig, options: options,
                                          captionDropout: config.captionDropout ?? 0.1,
                                          localization: config.attentionLocalization)
        }
        if resume {
            state = try TrainingCheckpoint.load(into: optimizer.parameters, optimizer: optimizer, from: checkpoint.path)
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
            let augmentation = config.flip ?? true ? Augmentation.flipOnly : .none
            let loss: Float
            if let trainer = clipTrainer, let processor = imageProcessor {
                let c = processor.config
                let pixels = F.concat(try samples.enumerated().map { i, sample in
                    let x = augmentation.apply(try image(sample.image), size: c.cropSize.height, seed: UInt64(s.step * 1000 + i), range: 0...1)
                    for j in 0..<x.count { x.data[j] = (x.data[j] - Float(c.imageMean[j % 3])) / Float(c.imageStd[j % 3]) }
                    return x
                }, axis: 0)
                loss = trainer.step(pixels: pixels, captions: samples.map(\.caption))
            } else {
                let pixels = F.concat(try samples.enumerated().map { i, sample in
                    augmentation.apply(try image(sample.image), size: resolution, seed: UInt64(s.step * 1000 + i))
                }, axis: 0)
                if let trainer = vaeTrainer {
                    loss = trainer.step(images: pixels)
                } else {
                    var masks: Tensor? = nil
                    if config.attentionLocalization != nil {
                        masks = F.concat(try samples.map { sample -> Tensor in
                            guard let url = sample.mask else {
                                throw ManifestError(description: "attention_localization needs a \"mask\" in every record; line \(sample.line) has none")
                            }
                            let mask = try image(url)
                            guard mask.width == resolution, mask.height == resolution else {
                                throw ManifestError(description: "line \(sample.line): mask is \(mask.width)×\(mask.height), the images are trained at \(resolution)×\(resolution)")
                            }
                            return Tensor(stride(from: 0, to: mask.pixels.count, by: 3).map { Float(mask.pixels[$0]) / 255 },
                                          shape: [1, resolution, resolution, 1])
                        }, axis: 0)
                    }
                    loss = unetTrainer!.step(images: pixels, captions: samples.map(\.caption),
                                             cacheKeys: config.flip ?? true ? nil : samples.map(\.image.path), masks: masks)
                }
            }
            state.epoch = s.epoch; state.position = s.position
            let step = state.step
            let rate = Double((step - first) * batchSize) / max(Date().timeIntervalSince(start), 1e-9)
            progress(step, loss, rate)
            if step % (config.logEvery ?? 20) == 0 || step == total {
                let localization = unetTrainer?.lastLocalizationLoss.map { String(format: #", "localization": %.5f"#, $0) } ?? ""
                log.write(Data((String(format: #"{"step": %d, "loss": %.6f, "samples_per_s": %.3f, "epoch": %d"#, step, loss, rate, state.epoch)
                                + localization + "}").utf8 + [10]))
            }
            if let every = config.sampleEvery, every > 0, step % every == 0 { try writeSample(step: step) }
            if step % (config.checkpointEvery ?? 500) == 0 || step == total {
                try TrainingCheckpoint.save(parameters: optimizer.parameters, optimizer: optimizer, state: state,
                                            to: output.appendingPathComponent("checkpoint.safetensors").path)
            }
        }
        try writeTrained()
    }

    /// The trained component(s) in diffusers' layout.
    func writeTrained() throws {
        let fm = FileManager.default
        func copyConfig(_ name: String) throws -> URL {
            let folder = output.appendingPathComponent(name)
            try fm.createDirectory(at: folder, withIntermediateDirectories: true)
            let data = try Data(contentsOf: source.deletingLastPathComponent().appendingPathComponent(name + "/config.json"))
            try data.write(to: folder.appendingPathComponent("config.json"), options: .atomic)
            return folder
        }
        switch component {
        case .unet:
            let folder = try copyConfig("unet")
            try unetTrainer!.unet.save(to: folder.appendingPathComponent("diffusion_pytorch_model.safetensors").path, overwrite: true)
        case .vae:
            let folder = try copyConfig("vae")
            let vae = vaeTrainer!.vae
            try vae.save(to: folder.appendingPathComponent("diffusion_pytorch_model.safetensors").path, overwrite: true)
            let scale = try latentScale(vae)
            let url = folder.appendingPathComponent("config.json")
            var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
            object["scaling_factor"] = Double(scale)
            try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]).write(to: url, options: .atomic)
        case .clip:
            let tensors = clipTrainer!.model.checkpointTensors()
            try saveSafeTensors(tensors, to: output.appendingPathComponent("clip.safetensors").path, overwrite: true)
            let text = try copyConfig("text_encoder"), vision = try copyConfig("image_encoder")
            try saveSafeTensors(tensors.filter { $0.name.hasPrefix("text_model.") },
                                to: text.appendingPathComponent("model.safetensors").path, overwrite: true)
            try saveSafeTensors(tensors.filter { $0.name.hasPrefix("vision_model.") || $0.name.hasPrefix("visual_projection.") },
                                to: vision.appendingPathComponent("model.safetensors").path, overwrite: true)
        }
    }

    /// A picture of progress: reconstructions (VAE) or generations (UNet) of the first samples.
    func writeSample(step: Int) throws {
        let resolution = config.resolution ?? 64
        let samples = Array(manifest.samples.prefix(8))
        var tiles: [RGBImage] = []
        if let vae = vaeTrainer?.vae {
            let pixels = F.concat(try samples.map { Augmentation.none.apply(try image($0.image), size: resolution, seed: 0) }, axis: 0)
            let decoded = Autograd.noGrad { vae.decode(vae.encode(pixels).mean) }
            tiles = try StableDiffusionPipeline.images(pixels, range: -1...1) + StableDiffusionPipeline.images(decoded, range: -1...1)
        } else if let trainer = unetTrainer {
            let folder = try ModelFolder(url: source.deletingLastPathComponent())
            let pipe = StableDiffusionPipeline(folder: folder, prompts: trainer.prompts, unet: trainer.unet, vae: trainer.vae,
                                               schedulerConfig: try SchedulerConfig.load(from: try folder.component("scheduler").appendingPathComponent("scheduler_config.json")),
                                               forceZerosForEmptyPrompt: trainer.prompts.isXL)
            for sample in samples {
                let config = GenerationConfiguration(prompt: sample.caption, steps: 20, guidanceScale: 5, seed: 0,
                                                     width: resolution, height: resolution)
                tiles += try StableDiffusionPipeline.images(try Autograd.noGrad { try pipe.generate(config) })
            }
            tiles += try samples.map { try image($0.image) }
        } else { return }
        let folder = output.appendingPathComponent("samples")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try ImageFile.writePNG(sheet(tiles, columns: samples.count), to: folder.appendingPathComponent("step-\(step).png").path, overwrite: true)
    }

    /// Equal-sized images in a grid.
    func sheet(_ images: [RGBImage], columns: Int) -> RGBImage {
        let w = images[0].width, h = images[0].height, rows = (images.count + columns - 1) / columns
        var pixels = [UInt8](repeating: 255, count: columns * w * rows * h * 3)
        for (k, image) in images.enumerated() where image.width == w && image.height == h {
            let ox = (k % columns) * w, oy = (k / columns) * h
            for y in 0..<h {
                let src = y * w * 3, dst = ((oy + y) * columns * w + ox) * 3
                pixels.replaceSubrange(dst..<(dst + w * 3), with: image.pixels[src..<(src + w * 3)])
            }
        }
        return try! RGBImage(width: columns * w, height: rows * h, pixels: pixels)
    }

    /// 1 / std of the posterior means over up to 256 training images.
    func latentScale(_ vae: AutoencoderKL) throws -> Float {
        let resolution = config.resolution ?? 64
        var sum = 0.0, squares = 0.0, count = 0.0
        for chunk in stride(from: 0, to: min(256, manifest.samples.count), by: 16) {
            let batch = manifest.samples[chunk..<min(chunk + 16, manifest.samples.count, 256)]
            let pixels = F.concat(try batch.map { Augmentation.none.apply(try image($0.image), size: resolution, seed: 0) }, axis: 0)
            let mean = Autograd.noGrad { vae.encode(pixels).mean }
            for v in mean.array { sum += Double(v); squares += Double(v) * Double(v); count += 1 }
        }
        let variance = squares / count - (sum / count) * (sum / count)
        return Float(1 / max(variance, 1e-12).squareRoot())
    }
}
