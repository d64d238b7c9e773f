import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels

public final class BaseTrainingRun: TrainingRunSteps {
    public enum Component: String, Sendable {
        case vae, unet, clip
        /// The image encoder alone, trained to tell subjects apart (`IdentityEncoderTrainer`).
        case imageEncoder = "image-encoder"
    }

    public let component: Component
    public let config: BaseRunConfig
    public let manifest: TrainingManifest
    public let output: URL
    let source: URL
    private(set) var vaeTrainer: VAETrainer?
    private(set) var unetTrainer: UNetTrainer?
    private(set) var clipTrainer: CLIPTrainer?
    private(set) var identityTrainer: IdentityEncoderTrainer?
    private(set) var imageProcessor: CLIPImageProcessor?
    /// Held-out records of `validation_data` (UNet runs).
    private(set) var validation: TrainingManifest?
    var images: [URL: RGBImage] = [:]

    public var state: TrainingState {
        get { vaeTrainer?.state ?? unetTrainer?.state ?? clipTrainer?.state ?? identityTrainer!.state }
        set {
            vaeTrainer?.state = newValue; unetTrainer?.state = newValue; clipTrainer?.state = newValue
            identityTrainer?.state = newValue
        }
    }
    var optimizer: AdamW { vaeTrainer?.optimizer ?? unetTrainer?.optimizer ?? clipTrainer?.optimizer ?? identityTrainer!.optimizer }

    public init(component: Component, configFile: URL, resume: Bool) throws {
        self.component = component
        let base = configFile.deletingLastPathComponent()
        func resolve(_ p: String) -> URL { p.hasPrefix("/") ? URL(fileURLWithPath: p) : base.appendingPathComponent(p) }
        config = try BaseRunConfig.load(from: configFile)
        output = resolve(config.output)
        let checkpoint = output.appendingPathComponent("checkpoint.safetensors")
        // Everything that needs no model is checked before anything is loaded or created.
        try RunFolder.check(output, resume: resume)
        // Identity training pairs each image with one of its references.
        manifest = try TrainingManifest(url: resolve(config.data), requireReferences: component == .imageEncoder)
        if config.attentionLocalization != nil {
            if component != .unet { throw ModelConfigError("attention_localization is for unet training only") }
            try Self.checkMasks(manifest, resolution: config.resolution ?? 64)
        }
        if component == .imageEncoder, let size = config.batchSize, size < 2 {
            throw ModelConfigError("batch_size must be at least 2 for image-encoder training (a subject's negatives are the batch's other subjects), got \(size)")
        }
        if component != .unet, let key = config.unetOnlyKey {
            throw ModelConfigError("\(key) is for unet training only")
        }
        validation = try config.validationData.map { try TrainingManifest(url: resolve($0)) }
        let folder = resolve(config.model)
        source = folder.appendingPathComponent(component == .imageEncoder ? "image_encoder" : component.rawValue)
        let options = config.optimization

        func vae() throws -> AutoencoderKL {
            let url = folder.appendingPathComponent("vae")
            if (try? WeightFiles.locate(in: url)) != nil { return try AutoencoderKL.load(folder: url) }
            let model = try AutoencoderKL(config: try decodeConfig(AutoencoderKLConfig.self, from: url.appendingPathComponent("config.json")))
            model.randomizeWeights(seed: options.seed &+ 1)
            return model
        }
        (vaeTrainer, unetTrainer, clipTrainer, identityTrainer, imageProcessor) = (nil, nil, nil, nil, nil)
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
        case .imageEncoder:
            // Continues from the folder's encoder (a CLIP stage's) when it has weights.
            let url = folder.appendingPathComponent("image_encoder")
            let encoder: CLIPVisionModel
            if (try? WeightFiles.locate(in: url)) != nil { encoder = try CLIPVisionModel.load(folder: url, withProjection: true) } else {
                encoder = CLIPVisionModel(config: try decodeConfig(CLIPVisionConfig.self, from: url.appendingPathComponent("config.json")))
                encoder.randomizeWeights(seed: options.seed &+ 4)
            }
            identityTrainer = try IdentityEncoderTrainer(encoder: encoder, options: options)
            imageProcessor = try CLIPImageProcessor.load(folder: folder.appendingPathComponent("feature_extractor"))
        case .unet:
            let model = try ModelFolder(url: folder)
            let unetURL = try model.component("unet")
            let unet = (try? WeightFiles.locate(in: unetURL)) != nil ? try UNet2DConditionModel.load(folder: unetURL)
                : UNet2DConditionModel(config: try UNet2DConditionConfig.load(from: unetURL.appendingPathComponent("config.json")),
                                       seed: options.seed &+ 2)
            let schedulerConfig = try SchedulerConfig.load(from: try model.component("scheduler").appendingPathComponent("scheduler_config.json"))
            unetTrainer = try UNetTrainer(unet: unet, vae: try vae(), prompts: try PromptEncoder.load(folder: model),
                                          schedulerConfig: schedulerConfig, options: options,
                                          captionDropout: config.captionDropout ?? 0.1,
                                          localization: config.attentionLocalization, lossWeighting: config.weighting,
                                          emaDecay: config.ema, emaWarmup: config.emaWarmup ?? false)
        }

        try checkResolution()
        if resume {
            state = try TrainingCheckpoint.load(into: checkpointTensors, optimizer: optimizer, from: checkpoint.path)
        }
    }

    /// Images must pass the VAE (and the UNet) without a remainder in their downsampling.
    func checkResolution() throws {
        let resolution = config.resolution ?? 64
        let multiple: Int
        if let trainer = unetTrainer { multiple = trainer.vae.downsamplingFactor * trainer.unet.downscaleFactor }
        else if let trainer = vaeTrainer { multiple = trainer.vae.downsamplingFactor } else { return }
        guard resolution % multiple == 0 else {
            throw ModelConfigError("resolution must be a multiple of \(multiple) for this model (its downsampling), got \(resolution)")
        }
    }

    /// attention_localization reads a mask of the training resolution for every record.
    static func checkMasks(_ manifest: TrainingManifest, resolution: Int) throws {
        for sample in manifest.samples {
            guard let url = sample.mask else {
                throw ManifestError(description: "attention_localization needs a \"mask\" in every record; line \(sample.line) has none")
            }
            let mask = try ImageFile.decode(path: url.path)
            guard mask.width == resolution, mask.height == resolution else {
                throw ManifestError(description: "line \(sample.line): mask is \(mask.width)×\(mask.height), the images are trained at \(resolution)×\(resolution)")
            }
        }
    }

    func image(_ url: URL) throws -> RGBImage {
        if let hit = images[url] { return hit }
        let decoded = try ImageFile.decode(path: url.path)
        images[url] = decoded
        return decoded
    }

    /// Trains until `steps` and writes the trained component(s). The output
    /// folder is created here, not before: a run that fails before its first
    /// checkpoint removes the folder again if it created it.
    public func run(progress: (Int, Float, Double) -> Void = { _, _, _ in }) throws {
        let folder = try RunFolder.open(output)
        do { try train(progress: progress) } catch {
            folder.discardIfUnused()
            throw error
        }
    }

    func train(progress: (Int, Float, Double) -> Void) throws {
        try TrainingLoop.run(self, log: output.appendingPathComponent("log.jsonl"), count: manifest.samples.count, progress: progress)
    }

    var trainingState: TrainingState {
        get { state }
        set { state = newValue }
    }

    var schedule: TrainingLoop.Schedule {
        TrainingLoop.Schedule(totalSteps: config.steps ?? 1000, batchSize: config.batchSize ?? 4, orderSeed: config.seed ?? 0,
                              logEvery: config.logEvery ?? 20, checkpointEvery: config.checkpointEvery ?? 500,
                              sampleEvery: config.sampleEvery, precision: config.precision ?? .float32)
    }

    /// Why float32 runs although the config asks for bf16 (nil when it does not).
    public var precisionNote: String? { config.precision?.fallbackNote }

    func trainStep(_ indices: [Int]) throws -> Float {
        let samples = indices.map { manifest.samples[$0] }
        let augmentation = config.flip ?? true ? Augmentation.flipOnly : .none
        let step = state.step, resolution = config.resolution ?? 64
        if let trainer = clipTrainer {
            return trainer.step(pixels: try encoderPixels(samples.map(\.image), seed: UInt64(step * 1000)),
                                captions: samples.map(\.caption))
        }
        if let trainer = identityTrainer {
            // Each record's positive: one of its references, drawn from (seed, step, place in the batch).
            let positives = samples.enumerated().map { i, sample in
                var rng = SeededRandom(seed: (config.seed ?? 0) &+ UInt64(step) &* 1_000_003 &+ UInt64(i))
                return sample.references[Int(rng.next() % UInt64(sample.references.count))]
            }
            let photos = samples.map { Set([$0.image] + $0.references) }
            return trainer.step(anchors: try encoderPixels(samples.map(\.image), seed: UInt64(step * 1000)),
                                positives: try encoderPixels(positives, seed: UInt64(step * 1000 + 500)),
                                sameSubject: { !photos[$0].isDisjoint(with: photos[$1]) })
        }
        let pixels = F.concat(try samples.enumerated().map { i, sample in
            augmentation.apply(try image(sample.image), size: resolution, seed: UInt64(step * 1000 + i))
        }, axis: 0)
        if let trainer = vaeTrainer { return trainer.step(images: pixels) }
        return unetTrainer!.step(images: pixels, captions: samples.map(\.caption),
                                 cacheKeys: config.flip ?? true ? nil : samples.map(\.image.path), masks: try masks(samples))
    }

    /// Images as an image encoder reads them: flipped as the config says,
    /// resized to the processor's crop and normalized, [B, S, S, C].
    func encoderPixels(_ urls: [URL], seed: UInt64) throws -> Tensor {
        let processor = imageProcessor!
        let augmentation = config.flip ?? true ? Augmentation.flipOnly : .none
        return F.concat(try urls.enumerated().map { i, url in
            let x = augmentation.apply(try image(url), size: processor.config.cropSize.height, seed: seed + UInt64(i), range: 0...1)
            processor.normalize(x)
            return x
        }, axis: 0)
    }

    /// The samples' subject masks [B, H, W, 1] when the run localizes attention.
    func masks(_ samples: [TrainingSample]) throws -> Tensor? {
        guard config.attentionLocalization != nil else { return nil }
        let resolution = config.resolution ?? 64
        return F.concat(try samples.map { sample -> Tensor in
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

    func logLine(step: Int, loss: Float, samplesPerSecond rate: Double) -> String {
        let localization = unetTrainer?.lastLocalizationLoss.map { String(format: #", "localization": %.5f"#, $0) } ?? ""
        return String(format: #"{"step": %d, "loss": %.6f, "samples_per_s": %.3f, "epoch": %d"#, step, loss, rate, state.epoch)
            + localization + "}"
    }

    func saveCheckpoint(step: Int, log: FileHandle) throws {
        try TrainingCheckpoint.save(parameters: checkpointTensors, optimizer: optimizer, state: state,
                                    to: output.appendingPathComponent("checkpoint.safetensors").path)
        if let loss = try validationLoss() {
            log.write(Data((String(format: #"{"step": %d, "validation_loss": %.6f}"#, step, loss) + "\n").utf8))
        }
    }

    /// The trained component(s) in diffusers' layout.
    func writeTrained() throws {
        func copyConfig(_ name: String) throws -> URL {
            try RunFolder.componentFolder(name, model: source.deletingLastPathComponent(), output: output)
        }
        switch component {
        case .unet:
            let folder = try copyConfig("unet")
            try withSamplingWeights {
                try unetTrainer!.unet.save(to: folder.appendingPathComponent("diffusion_pytorch_model.safetensors").path, overwrite: true)
            }
        case .vae:
            let folder = try copyConfig("vae")
            let vae = vaeTrainer!.vae
            try vae.save(to: folder.appendingPathComponent("diffusion_pytorch_model.safetensors").path, overwrite: true)
            let scale = try latentScale(vae)
            let url = folder.appendingPathComponent("config.json")
            var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
            object["scaling_factor"] = Double(scale)
            try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]).write(to: url, options: .atomic)
        case .imageEncoder:
            let folder = try copyConfig("image_encoder")
            try identityTrainer!.encoder.save(to: folder.appendingPathComponent("model.safetensors").path, overwrite: true)
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
            for sample in samples { try withSamplingWeights {
                let config = GenerationConfiguration(prompt: sample.caption, steps: 20, guidanceScale: 5, seed: 0,
                                                     width: resolution, height: resolution)
                tiles += try StableDiffusionPipeline.images(try Autograd.noGrad { try pipe.generate(config) })
            } }
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
