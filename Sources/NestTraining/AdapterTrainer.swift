import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import NestPersonalization

/// A training example already decoded: the target image, its caption, and
/// reference photos of the same subject.
public struct AdapterExample {
    public var target: RGBImage
    public var caption: String
    public var references: [RGBImage]
    /// Where the subject is in `target` (white), for `subject_loss_weight`.
    public var mask: RGBImage?
    public init(target: RGBImage, caption: String, references: [RGBImage], mask: RGBImage? = nil) {
        self.target = target; self.caption = caption; self.references = references; self.mask = mask
    }
}

/// Trains a nested adapter (resampler + per-layer nested projections) on a
/// frozen base model: ε- or v-prediction MSE at random timesteps, guidance
/// dropout, AdamW with warmup, clipping, accumulation, optional EMA.
public final class AdapterTrainer {
    public let pipeline: PersonalizedPipeline
    public let adapter: PersonalizationAdapter
    public let options: AdapterTrainingOptions
    public let optimizer: AdamW
    public let schedule: LearningRateSchedule
    public let noise: NoiseSchedule
    public let predictsVelocity: Bool
    public var state = TrainingState()
    /// The moving average of the adapter's weights, when `options.ema` asks for one.
    public let ema: ExponentialMovingAverage?

    public init(pipeline: PersonalizedPipeline, adapter: PersonalizationAdapter, options: AdapterTrainingOptions) throws {
        self.pipeline = pipeline
        self.adapter = adapter
        self.options = options
        try options.validate()
        // The timestep range is checked before the adapter is bound to the pipeline.
        noise = try makeScheduler(kind: .ddim, config: pipeline.base.schedulerConfig, stepCount: 1).noiseSchedule
        if let r = options.timestepRange, r[1] > noise.trainStepCount {
            throw ModelConfigError("training.timestep_range \(r) goes past the scheduler's \(noise.trainStepCount) training steps")
        }
        let multiple = pipeline.base.vaeScaleFactor * pipeline.base.unet.downscaleFactor
        guard options.resolution % multiple == 0 else {
            throw ModelConfigError("training.resolution must be a multiple of \(multiple) for this model (the VAE's and the UNet's downsampling), got \(options.resolution)")
        }
        try pipeline.add(adapter)
        // Everything is frozen but the adapter (and the UNet when `unet_learning_rate` asks for it).
        let unet = pipeline.base.unet
        unet.freeze(); pipeline.base.vae.freeze(); pipeline.imageEncoder.freeze()
        for encoder in pipeline.base.prompts.encoders { encoder.freeze() }
        adapter.unfreeze()
        var trainable = adapter.trainableParameters, scales = [Float](repeating: 1, count: trainable.count)
        if let unetRate = options.unetLearningRate {
            unet.unfreeze()
            let weights = unet.trainableParameters.map { (path: Self.unetPrefix + $0.path, tensor: $0.tensor) }
            trainable += weights
            scales += [Float](repeating: unetRate / options.learningRate, count: weights.count)
        }
        optimizer = AdamW(parameters: trainable, config: .init(learningRate: options.learningRate, weightDecay: options.weightDecay),
                          rateScales: scales)
        schedule = LearningRateSchedule(base: options.learningRate, warmupSteps: options.warmupSteps,
                                        totalSteps: options.totalSteps, decay: options.schedule)
        predictsVelocity = (pipeline.base.schedulerConfig.predictionType ?? "epsilon") == "v_prediction"
        state.seed = options.seed
        let trained = optimizer.parameters
        ema = options.ema.map { ExponentialMovingAverage(trained, decay: $0) }
    }

    /// Checkpoint names of the UNet's weights when it trains with the adapter.
    public static let unetPrefix = "unet."
    public var trainsUNet: Bool { options.unetLearningRate != nil }

    /// What a checkpoint holds: the trained weights and, with `ema`, their average ("ema." + name).
    public var checkpointTensors: [(path: String, tensor: Tensor)] { optimizer.parameters + (ema?.shadows ?? []) }

    /// Normalized CLIP input for an augmented reference photo.
    func referencePixels(_ image: RGBImage, seed: UInt64) -> Tensor {
        let x = Augmentation().apply(image, size: pipeline.imageProcessor.config.cropSize.height, seed: seed, range: 0...1)
        pipeline.imageProcessor.normalize(x)
        return x
    }

    /// One optimization step on `examples` (a batch); returns the loss.
    /// `fixedNoise` reuses the same noise and timestep per example (tests).
    @discardableResult
    public func step(_ examples: [AdapterExample], fixedNoise: Bool = false) throws -> Float {
        try optimize(prepare(examples, fixedNoise: fixedNoise))
    }

    /// Everything of a step that does not depend on the adapter's weights:
    /// noisy latents, timesteps, text conditioning, image features, the target.
    public struct PreparedBatch {
        public var noisy: Tensor
        public var timesteps: [Int]
        public var context: Tensor
        public var added: (textEmbeds: Tensor, timeIds: Tensor)?
        /// Per item: the subject token's position, nil where the image is dropped.
        public var tokenIndex: [Int?]
        /// CLIP features of the references (zero rows where the image is dropped, for the ip-adapter kind);
        /// for an adapter with its own (trained) image encoder, computed again in `predict`.
        public var features: Tensor
        /// The references as CLIP input, and 1/0 per item (0: image dropped).
        public var pixels: Tensor
        public var imageKept: Tensor
        /// What the UNet should predict (ε or v); replaceable, e.g. by a teacher's prediction.
        public var target: Tensor
        /// Per latent element: how much it counts in the loss (nil: all alike).
        public var lossWeights: Tensor? = nil
    }

    /// Draws noise, timesteps and dropout for `examples` and encodes them with the frozen models.
    public func prepare(_ examples: [AdapterExample], fixedNoise: Bool = false) throws -> PreparedBatch {
        let base = pipeline.base
        let token = adapter.config.placeholderToken
        var rng = SeededRandom(seed: options.seed &+ UInt64(state.step) &* 7919)
        var captions: [String] = [], indexMask: [Bool] = []
        var latents: [Tensor] = [], pixels: [Tensor] = [], weights: [Tensor] = []
        for (i, example) in examples.enumerated() {
            let r = rng.nextFloat()
            let dropImage = r < options.dropImage || (r >= options.dropImage + options.dropText && r < options.dropImage + options.dropText + options.dropBoth)
            let dropText = r >= options.dropImage && r < options.dropImage + options.dropText + options.dropBoth
            let both = dropImage && dropText
            captions.append(both ? "" : (dropText ? token : example.caption))
            indexMask.append(!dropImage)
            let sampleSeed = fixedNoise ? UInt64(i) : options.seed &+ UInt64(state.step * 1000 + i)
            let target = (options.flipTargets ? Augmentation.flipOnly : .none).apply(example.target, size: options.resolution, seed: sampleSeed)
            let z = Autograd.noGrad {
                let posterior = base.vae.encode(target)
                return posterior.sample(noise: Tensor.randn(posterior.mean.shape, seed: sampleSeed &+ 1))
                    .scaled(Float(base.vae.config.scalingFactor))
            }
            latents.append(z)
            if options.subjectLossWeight != 1 {
                guard let mask = example.mask else {
                    throw ModelConfigError("training: subject_loss_weight \(options.subjectLossWeight) needs a \"mask\" for every record")
                }
                // The mask through the same flip, averaged over each latent cell.
                let m = (options.flipTargets ? Augmentation.flipOnly : .none).apply(mask, size: options.resolution, seed: sampleSeed, range: 0...1)
                weights.append(latentWeights(m, latent: z.shape))
            }
            let reference = example.references[rng.nextInt(below: example.references.count)]
            pixels.append(referencePixels(reference, seed: sampleSeed &+ 2))
        }
        let z0 = F.concat(latents, axis: 0)
        let b = examples.count
        let eps = fixedNoise ? Tensor.randn(z0.shape, seed: 77) : Tensor.randn(z0.shape, seed: options.seed &+ UInt64(state.step) &+ 5)
        let (lower, upper) = try timestepBounds()
        let timesteps = (0..<b).map { i in
            lower + (fixedNoise ? (137 + 311 * i) % (upper - lower) : rng.nextInt(below: upper - lower))
        }
        let noisy = noise.addNoise(original: z0, noise: eps, timesteps: timesteps)
        let target = predictsVelocity ? noise.velocity(sample: z0, noise: eps, timesteps: timesteps) : eps

        let prompts = base.prompts.encode(captions)
        let positions = captions.map { base.prompts.position(of: token, in: $0) }
        let tokenIndex = zip(positions, indexMask).map { $1 ? $0 : nil }
        let referencePixels = F.concat(pixels, axis: 0)
        let keep = Tensor(indexMask.map { $0 ? 1 : 0 }, shape: [b, 1, 1])
        let features = Autograd.noGrad { maskDropped(adapter.imageFeatures(pixels: referencePixels, shared: pipeline.imageEncoder), keep) }
        var added: (textEmbeds: Tensor, timeIds: Tensor)? = nil
        if let pooled = prompts.pooled {
            let r = Float(options.resolution)
            added = (pooled, Tensor((0..<b).flatMap { _ in [r, r, 0, 0, r, r] }, shape: [b, 6]))
        }
        return PreparedBatch(noisy: noisy, timesteps: timesteps, context: prompts.hidden, added: added,
                             tokenIndex: tokenIndex, features: features, pixels: referencePixels, imageKept: keep, target: target,
                             lossWeights: weights.isEmpty ? nil : F.concat(weights, axis: 0))
    }

    /// The half-open range training timesteps are drawn from.
    func timestepBounds() throws -> (Int, Int) {
        guard let r = options.timestepRange else { return (0, noise.trainStepCount) }
        guard r[1] <= noise.trainStepCount else {
            throw ModelConfigError("training: timestep_range \(r) goes past the scheduler's \(noise.trainStepCount) training steps")
        }
        return (r[0], r[1])
    }

    /// 1 + (subject_loss_weight − 1)·coverage per latent element, where
    /// coverage is the mask's mean over the latent cell's pixels.
    func latentWeights(_ mask: Tensor, latent shape: [Int]) -> Tensor {
        let (h, w, c) = (shape[1], shape[2], shape[3])
        let side = mask.shape[1], f = side / h
        let out = Tensor(uninitialized: [1, h, w, c])
        for y in 0..<h {
            for x in 0..<w {
                var sum: Float = 0
                for dy in 0..<f { for dx in 0..<f { sum += mask.data[((y * f + dy) * side + x * f + dx) * 3] } }
                let weight = 1 + (options.subjectLossWeight - 1) * sum / Float(f * f)
                for ch in 0..<c { out.data[(y * w + x) * c + ch] = weight }
            }
        }
        return out
    }

    /// The decoupled branch has no token to skip: a dropped image is "no image", zero features.
    func maskDropped(_ features: Tensor, _ keep: Tensor) -> Tensor {
        adapter.config.kind == .ipAdapter && keep.array.contains(0) ? features * keep : features
    }

    /// The UNet's prediction for a prepared batch with the adapter bound (recorded for gradients).
    public func predict(_ batch: PreparedBatch) throws -> Tensor {
        let features = adapter.image_encoder == nil ? batch.features
            : maskDropped(adapter.imageFeatures(pixels: batch.pixels, shared: pipeline.imageEncoder), batch.imageKept)
        let tokens = adapter.encode(features: features)
        let unet = pipeline.base.unet
        func run(_ context: Tensor) -> Tensor {
            unet(sample: batch.noisy, timestep: batch.timesteps.map(Float.init), encoderHiddenStates: context, added: batch.added)
        }
        let subject = [NestedBindingSubject(adapter: adapter, tokens: tokens, tokenIndex: batch.tokenIndex, scale: 1)]
        let method = adapter.config.kind.method
        let processors = try method.processors(on: unet, subjects: subject, over: unet.attentionProcessors)
        return try unet.withAttentionProcessors(processors) { run(method.context(batch.context, subjects: subject)) }
    }

    /// How much the adapter moves the UNet on a prepared batch: the loss with
    /// it and with the base model alone (the prompt's placeholder read as the
    /// class word, no adapter bound), and the RMS of the prediction's shift
    /// against the RMS of the base model's error. An adapter whose shift is a
    /// small fraction of that error cannot lower the loss, whatever it learns.
    public func effect(_ batch: PreparedBatch) throws -> (loss: Float, baseLoss: Float, shift: Float, baseError: Float) {
        try Autograd.noGrad {
            let with = try predict(batch)
            let base = pipeline.base.unet(sample: batch.noisy, timestep: batch.timesteps.map(Float.init),
                                          encoderHiddenStates: batch.context, added: batch.added)
            return (loss(with, batch).item, loss(base, batch).item, F.mseLoss(with, base).item.squareRoot(),
                    F.mseLoss(base, batch.target).item.squareRoot())
        }
    }

    /// The loss with the adapter on a prepared batch, without gradients (`effect`'s first number alone).
    public func adapterLoss(_ batch: PreparedBatch) throws -> Float {
        try Autograd.noGrad { loss(try predict(batch), batch).item }
    }

    /// The training loss of `prediction` on `batch`: weighted by the subject mask when the batch has one.
    func loss(_ prediction: Tensor, _ batch: PreparedBatch) -> Tensor {
        batch.lossWeights.map { F.weightedMSELoss(prediction, batch.target, weights: $0) } ?? F.mseLoss(prediction, batch.target)
    }

    /// Forward, backward and (every `gradient_accumulation` calls) an optimizer update; returns the loss.
    @discardableResult
    public func optimize(_ batch: PreparedBatch) throws -> Float {
        let value = loss(try predict(batch), batch)
        value.scaled(1 / Float(options.gradientAccumulation)).backward()

        if (state.step + 1) % options.gradientAccumulation == 0 {
            let parameters = optimizer.parameters.map(\.tensor)
            if let clip = options.gradientClip { clipGradNorm(parameters, maxNorm: clip) }
            optimizer.update(learningRate: schedule.rate(at: state.step / options.gradientAccumulation))
            optimizer.zeroGrad()
            ema?.update(toward: parameters, update: optimizer.step)
        }
        state.step += 1
        return value.item
    }
}
