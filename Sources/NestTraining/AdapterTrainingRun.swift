import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import NestPersonalization

/// A whole adapter training run: data, trainer, logging, checkpoints, samples.
public final class AdapterTrainingRun: TrainingRunSteps {
    public let config: AdapterRunConfig
    public let trainer: AdapterTrainer
    public let manifest: TrainingManifest
    public let output: URL
    /// The base model folder the run loaded.
    let modelFolder: URL
    var images: [URL: RGBImage] = [:]

    public var checkpointURL: URL { output.appendingPathComponent("checkpoint.safetensors") }
    public var logURL: URL { output.appendingPathComponent("log.jsonl") }

    /// `measuring`: only `measureEffect` will be called — an existing run is
    /// read, never refused or written.
    public init(configFile: URL, resume: Bool, measuring: Bool = false) throws {
        let base = configFile.deletingLastPathComponent()
        func resolve(_ p: String) -> URL { p.hasPrefix("/") ? URL(fileURLWithPath: p) : base.appendingPathComponent(p) }
        config = try AdapterRunConfig.load(from: configFile)
        output = resolve(config.output)
        modelFolder = resolve(config.model)
        // Everything that needs no model is checked before anything is loaded or created.
        if !measuring || resume { try RunFolder.check(output, resume: resume) }
        manifest = try TrainingManifest(url: resolve(config.data), placeholder: config.adapter.placeholderToken,
                                        requireReferences: true, checkImages: true, policy: config.badRecords ?? .skip)
        if config.training.subjectLossWeight != 1, let bare = manifest.samples.first(where: { $0.mask == nil }) {
            throw ModelConfigError("training.subject_loss_weight is \(config.training.subjectLossWeight) but \(Escaped.text(config.data)) line \(bare.line) has no \"mask\"")
        }
        let pipeline = try PersonalizedPipeline(base: try StableDiffusionPipeline.load(folder: modelFolder))
        let spec = config.adapter
        let layers = pipeline.imageEncoder.config.encoder.layers
        if let layer = spec.featureLayer, !(-(layers + 1)...layers).contains(layer) {
            throw ModelConfigError("adapter.feature_layer must be between \(-(layers + 1)) and \(layers) for this image encoder, got \(layer)")
        }
        let crossWidth = pipeline.base.unet.config.levels[0].crossAttentionDim
        let adapterConfig = AdapterConfig(
            kind: spec.kind ?? .nested, placeholderToken: spec.placeholderToken, classWord: spec.classWord,
            imageEncoder: .init(hiddenSize: pipeline.imageEncoder.config.encoder.hiddenSize,
                                imageSize: pipeline.imageEncoder.config.imageSize, featureLayer: spec.featureLayer ?? -2,
                                tuned: spec.trainImageEncoder ?? false),
            resampler: .init(embeddingDim: pipeline.imageEncoder.config.encoder.hiddenSize, width: spec.resampler.width,
                             outputDim: spec.resampler.outputDim ?? crossWidth, depth: spec.resampler.depth,
                             heads: spec.resampler.heads, headDim: spec.resampler.headDim ?? 64,
                             queries: spec.resampler.queries, ffMult: spec.resampler.ffMult ?? 4),
            layers: PersonalizationAdapter.layers(for: pipeline.base.unet.crossAttentionLayers),
            contextWidth: spec.kind == .singleToken ? crossWidth : nil, nestedValue: spec.nestedValue)
        let adapter = PersonalizationAdapter(config: adapterConfig, seed: config.training.seed)
        if adapterConfig.addsNestedValue {
            // v* starts at zero, so the first step is the base model's and the token keeps its class value.
            for projection in adapter.layers.items { projection.to_v.weight.assign(Tensor(zeros: projection.to_v.weight.shape)) }
        }
        if adapterConfig.imageEncoder.tuned {
            // Starts from the model's encoder; only the adapter's copy trains.
            adapter.attachImageEncoder(copying: pipeline.imageEncoder)
        }
        trainer = try AdapterTrainer(pipeline: pipeline, adapter: adapter, options: config.training)
        if resume {
            trainer.state = try TrainingCheckpoint.load(into: trainer.checkpointTensors, optimizer: trainer.optimizer,
                                                        from: checkpointURL.path)
        }
    }

    /// The adapter's reach (see `AdapterTrainer.effect`), averaged over the
    /// first `batches` batches of the data in the run's order; trains nothing.
    /// `otherLoss` is the loss with each record given the next record's
    /// references instead (same noise, timesteps and captions): what the
    /// adapter gains from *who* the subject is, not from its presence.
    public func measureEffect(batches: Int) throws -> (loss: Float, otherLoss: Float, baseLoss: Float, shift: Float, baseError: Float) {
        let options = config.training
        let order = SampleOrder(count: manifest.samples.count, seed: options.seed &+ 1)
        var state = TrainingState()
        var sum: (Float, Float, Float, Float, Float) = (0, 0, 0, 0, 0)
        for _ in 0..<batches {
            let batch = try examples(order.next(options.batchSize, state: &state))
            let e = try trainer.effect(try trainer.prepare(batch))
            let other = try trainer.adapterLoss(try trainer.prepare(Self.rotatingReferences(batch)))
            sum = (sum.0 + e.loss, sum.1 + other, sum.2 + e.baseLoss, sum.3 + e.shift * e.shift,
                   sum.4 + e.baseError * e.baseError)
            trainer.state.step += 1  // fresh noise and timesteps for the next batch
        }
        let n = Float(batches)
        return (sum.0 / n, sum.1 / n, sum.2 / n, (sum.3 / n).squareRoot(), (sum.4 / n).squareRoot())
    }

    /// Each example with the next one's references (the last with the first's).
    public static func rotatingReferences(_ batch: [AdapterExample]) -> [AdapterExample] {
        batch.indices.map { i in
            var example = batch[i]
            example.references = batch[(i + 1) % batch.count].references
            return example
        }
    }

    func image(_ url: URL) throws -> RGBImage {
        if let hit = images[url] { return hit }
        let decoded = try ImageFile.decode(path: url.path)
        images[url] = decoded
        return decoded
    }

    /// Trains until `training.steps`; `progress(step, loss, samplesPerSecond)` after each step.
    /// The output folder is created here, not before: a run that fails before
    /// its first checkpoint removes the folder again if it created it.
    public func run(progress: (Int, Float, Double) -> Void = { _, _, _ in }) throws {
        let folder = try RunFolder.open(output)
        do { try train(progress: progress) } catch {
            folder.discardIfUnused()
            throw error
        }
    }

    func train(progress: (Int, Float, Double) -> Void) throws {
        try TrainingLoop.run(self, log: logURL, count: manifest.samples.count, progress: progress)
    }

    var trainingState: TrainingState {
        get { trainer.state }
        set { trainer.state = newValue }
    }

    var schedule: TrainingLoop.Schedule {
        let options = config.training
        return TrainingLoop.Schedule(totalSteps: options.totalSteps, batchSize: options.batchSize, orderSeed: options.seed,
                                     logEvery: config.logEvery ?? 10, checkpointEvery: config.checkpointEvery ?? 200,
                                     sampleEvery: config.sampleEvery, precision: options.precision)
    }

    /// Why float32 runs although the config asks for bf16 (nil when it does not).
    public var precisionNote: String? { config.training.precision.fallbackNote }

    /// The records at `indices` as the trainer takes them.
    func examples(_ indices: some Sequence<Int>) throws -> [AdapterExample] {
        try indices.map { i in
            let s = manifest.samples[i]
            return AdapterExample(target: try image(s.image), caption: s.caption, references: try s.references.map(image),
                                  mask: try s.mask.map(image))
        }
    }

    func trainStep(_ indices: [Int]) throws -> Float { try trainer.step(try examples(indices)) }

    func logLine(step: Int, loss: Float, samplesPerSecond rate: Double) -> String {
        String(format: #"{"step": %d, "loss": %.6f, "lr": %.3e, "samples_per_s": %.3f, "epoch": %d}"#,
               step, loss, trainer.schedule.rate(at: step - 1), rate, trainer.state.epoch)
    }

    func saveCheckpoint(step: Int, log: FileHandle) throws {
        try TrainingCheckpoint.save(parameters: trainer.checkpointTensors, optimizer: trainer.optimizer,
                                    state: trainer.state, to: checkpointURL.path)
        if let batches = config.validationBatches {
            let v = try validate(batches: batches)
            let line = String(format: #"{"step": %d, "validation_loss": %.6f, "validation_base_loss": %.6f}"#,
                              step, v.loss, v.baseLoss) + "\n"
            log.write(Data(line.utf8))
        }
    }

    func writeTrained() throws {
        let save = {
            // A co-trained adapter records which UNet it belongs to (the one written beside it).
            let digest = self.trainer.trainsUNet ? self.trainer.pipeline.base.unet.weightDigest() : nil
            try self.trainer.adapter.save(path: self.output.appendingPathComponent("adapter.json").path, overwrite: true,
                                          trainedWithUNet: digest)
            if self.trainer.trainsUNet { try self.writeUNet() }
        }
        // With `ema` the average is what the run writes (and what sampling should use).
        guard let ema = trainer.ema else { return try save() }
        try ema.withAveragedWeights(in: trainer.optimizer.parameters.map(\.tensor), save)
    }

    /// The UNet trained with the adapter, as a diffusers `unet/` folder in the
    /// output (its config copied from the model's): the adapter works with
    /// this UNet, not with the one it started from.
    func writeUNet() throws {
        let folder = try RunFolder.componentFolder("unet", model: modelFolder, output: output)
        try trainer.pipeline.base.unet.save(to: folder.appendingPathComponent("diffusion_pytorch_model.safetensors").path,
                                            overwrite: true)
    }

    /// Mean loss with the adapter and with the base model over `batches` fixed
    /// batches: the first records in order, fixed noise and timesteps, and the
    /// dropout and reference draws of step 0 (the trainer's step is restored).
    public func validate(batches: Int) throws -> (loss: Float, baseLoss: Float) {
        let size = config.training.batchSize
        let step = trainer.state.step
        defer { trainer.state.step = step }
        trainer.state.step = 0
        var sum: (Float, Float) = (0, 0)
        var count = 0
        for b in 0..<batches {
            let indices = (b * size)..<min(manifest.samples.count, (b + 1) * size)
            guard !indices.isEmpty else { break }
            let e = try trainer.effect(try trainer.prepare(try examples(indices), fixedNoise: true))
            sum = (sum.0 + e.loss, sum.1 + e.baseLoss)
            count += 1
        }
        return (sum.0 / Float(max(count, 1)), sum.1 / Float(max(count, 1)))
    }

    /// One image from the first sample's caption and reference, with the current adapter.
    func writeSample(step: Int) throws {
        let sample = manifest.samples[0]
        let pipe = trainer.pipeline
        let config = GenerationConfiguration(prompt: sample.caption, steps: 20, guidanceScale: 5, seed: 0,
                                             width: self.config.training.resolution, height: self.config.training.resolution)
        let subject = Subject(placeholder: trainer.adapter.config.placeholderToken, images: [try image(sample.references[0])])
        let images = try Autograd.noGrad { try pipe.generate(config, subjects: [subject]) }
        let picture = try StableDiffusionPipeline.images(images)[0]
        let samples = output.appendingPathComponent("samples")
        try FileManager.default.createDirectory(at: samples, withIntermediateDirectories: true)
        try ImageFile.writePNG(picture, to: samples.appendingPathComponent("step-\(step).png").path,
                               text: [("parameters", "\(sample.caption)\nStep: \(step)")], overwrite: true)
    }
}
