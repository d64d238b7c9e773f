import Foundation
import NestDiffusion
import NestEngine
import NestModels

/// Trains a text-to-image UNet on a frozen VAE and frozen text encoder(s):
/// images are encoded to scaled latents, noised at random timesteps, and the
/// UNet learns to predict the noise (or v) under MSE. A fraction of captions
/// is replaced by the empty caption so the model also learns the
/// unconditional prediction that classifier-free guidance needs.
public final class UNetTrainer {
    public let unet: UNet2DConditionModel
    public let vae: AutoencoderKL
    public let prompts: PromptEncoder
    public let options: OptimizationOptions
    /// Probability of training a sample on the empty caption.
    public let captionDropout: Float
    /// Encode with the posterior mean instead of a sample.
    public let useLatentMean: Bool
    public let noise: NoiseSchedule
    public let predictsVelocity: Bool
    public let optimizer: AdamW
    public let schedule: LearningRateSchedule
    public var state = TrainingState()
    /// Posterior parameters (mean ‖ log-variance) of images already encoded,
    /// by the caller's key: the VAE is frozen, so each image is encoded once.
    var posteriors: [String: Tensor] = [:]
    /// The captions the last step trained on, dropped ones empty (for logging and tests).
    public private(set) var lastCaptions: [String] = []
    /// Mask supervision of the subject noun's cross-attention (see `AttentionLocalization`).
    public let localization: AttentionLocalization?
    let localizedTokenIds: Set<Int>
    /// The last step's localization term (before weighting), when it had one.
    public private(set) var lastLocalizationLoss: Float?
    /// How each sample's error counts (plain MSE or min-SNR-γ).
    public let lossWeighting: LossWeighting
    /// The moving average of the UNet's weights that sampling uses, when the run keeps one.
    public let ema: ExponentialMovingAverage?

    /// Every trained tensor by checkpoint name (for `TrainingCheckpoint`).
    public var parameters: [(path: String, tensor: Tensor)] { optimizer.parameters }

    public init(unet: UNet2DConditionModel, vae: AutoencoderKL, prompts: PromptEncoder, schedulerConfig: SchedulerConfig,
                options: OptimizationOptions = .init(), captionDropout: Float = 0.1, useLatentMean: Bool = false,
                localization: AttentionLocalization? = nil, lossWeighting: LossWeighting = .uniform,
                emaDecay: Float? = nil, emaWarmup: Bool = false) throws {
        guard unet.config.inChannels == vae.config.latentChannels else {
            throw ModelConfigError("the UNet takes \(unet.config.inChannels) channels but the VAE's latents have \(vae.config.latentChannels)")
        }
        let prediction = schedulerConfig.predictionType ?? "epsilon"
        guard prediction == "epsilon" || prediction == "v_prediction" else {
            throw ModelConfigError("UNet training: prediction_type '\(prediction)' is not supported (epsilon or v_prediction)")
        }
        self.unet = unet
        self.vae = vae
        self.prompts = prompts
        self.options = options
        self.captionDropout = captionDropout
        self.useLatentMean = useLatentMean
        self.localization = localization
        self.lossWeighting = lossWeighting
        var ids = Set<Int>()
        for word in localization?.words ?? [] {
            let tokens = prompts.tokenizers[0].encodeWithoutSpecialTokens(word)
            guard tokens.count == 1 else {
                throw ModelConfigError("attention_localization: '\(word)' is \(tokens.count) tokens for this tokenizer; each word must be one")
            }
            ids.insert(tokens[0])
        }
        localizedTokenIds = ids
        vae.freeze()
        for encoder in prompts.encoders { encoder.freeze() }
        unet.unfreeze()
        noise = try makeScheduler(kind: .ddim, config: schedulerConfig, stepCount: 1).noiseSchedule
        predictsVelocity = prediction == "v_prediction"
        optimizer = options.makeOptimizer(unet.trainableParameters)
        let trained = optimizer.parameters
        ema = emaDecay.map { ExponentialMovingAverage(trained, decay: $0, warmup: emaWarmup) }
        schedule = options.makeSchedule()
        state.seed = options.seed
    }

    /// One update on `images` [B, H, W, 3] in [-1, 1] with one caption each;
    /// returns the loss. `fixedNoise` keeps each sample's noise, timestep and
    /// caption dropout the same every step, so the target is stationary (tests).
    @discardableResult
    /// `cacheKeys` (one per image, e.g. its path) lets the trainer reuse the
    /// frozen VAE's encoding of an image it has seen; pass them only when the
    /// same key always means the same pixels (no random augmentation).
    /// `masks` [B, H, W, 1] (1 on the subject) feed the localization term
    /// when the trainer has one.
    public func step(images: Tensor, captions: [String], fixedNoise: Bool = false, cacheKeys: [String]? = nil,
                     masks: Tensor? = nil) -> Float {
        let b = images.shape[0]
        precondition(captions.count == b, "UNetTrainer: \(captions.count) captions for \(b) images")
        let stepSeed = fixedNoise ? options.seed : options.seed &+ UInt64(state.step) &* 7919
        var rng = SeededRandom(seed: stepSeed &+ 3)
        let kept = captions.map { rng.nextFloat() < captionDropout ? "" : $0 }
        lastCaptions = kept
        let timesteps = (0..<b).map { _ in rng.nextInt(below: noise.trainStepCount) }

        let latents = Autograd.noGrad { () -> Tensor in
            let posterior = encode(images, keys: cacheKeys)
            let z = useLatentMean ? posterior.mean : posterior.sample(noise: Tensor.randn(posterior.mean.shape, seed: stepSeed &+ 1))
            return vae.scaleLatents(z)
        }
        let eps = Tensor.randn(latents.shape, seed: stepSeed &+ 2)
        let noisy = noise.addNoise(original: latents, noise: eps, timesteps: timesteps)
        let target = predictsVelocity ? noise.velocity(sample: latents, noise: eps, timesteps: timesteps) : eps

        let encoded = prompts.encode(kept)
        var added: (textEmbeds: Tensor, timeIds: Tensor)? = nil
        if let pooled = encoded.pooled {
            // SDXL's micro-conditioning: original size, crop origin, target size.
            let h = Float(images.shape[1]), w = Float(images.shape[2])
            added = (pooled, Tensor((0..<b).flatMap { _ in [h, w, 0, 0, h, w] }, shape: [b, 6]))
        }
        // With localization: record the subject noun's attention in every cross-attention layer.
        var recorders: [(path: String, recorder: LocalizingAttentionProcessor)] = []
        var tokens: [Int?] = []
        if localization != nil, masks != nil {
            tokens = (0..<b).map { i in kept[i].isEmpty ? nil : encoded.ids[0][i].firstIndex(where: localizedTokenIds.contains) }
            for (path, _) in unet.crossAttentionLayers {
                let recorder = LocalizingAttentionProcessor()
                recorder.tokens = tokens
                recorders.append((path, recorder))
            }
        }
        let processors = Dictionary(recorders.map { ($0.path, $0.recorder) }, uniquingKeysWith: { a, _ in a })
        let prediction = unet.withAttentionProcessors({ path, _ in processors[path] }) {
            unet(sample: noisy, timestep: timesteps.map(Float.init), encoderHiddenStates: encoded.hidden, added: added)
        }
        let loss = lossWeighting.loss(prediction: prediction, target: target, schedule: noise, timesteps: timesteps,
                                      predictsVelocity: predictsVelocity)
        lastLocalizationLoss = nil
        if let localization, let masks,
           let term = AttentionLocalization.loss(maps: recorders.flatMap(\.recorder.maps), tokens: tokens, masks: masks) {
            lastLocalizationLoss = term.item
            (loss + term.scaled(localization.weight)).backward()
        } else {
            loss.backward()
        }
        applyUpdate(optimizer, schedule: schedule, options: options, step: state.step)
        ema?.update(toward: optimizer.parameters.map(\.tensor), update: optimizer.step)
        state.step += 1
        return loss.item
    }

    func encode(_ images: Tensor, keys: [String]?) -> DiagonalGaussian {
        guard let keys else { return vae.encode(images) }
        let missing = keys.indices.filter { posteriors[keys[$0]] == nil }
        if !missing.isEmpty {
            let fresh = vae.encode(F.concat(missing.map { images.slice(axis: 0, $0..<($0 + 1)) }, axis: 0))
            let parameters = F.concat([fresh.mean, fresh.logvar], axis: 3)
            for (j, i) in missing.enumerated() { posteriors[keys[i]] = parameters.slice(axis: 0, j..<(j + 1)).copy() }
        }
        return DiagonalGaussian(parameters: F.concat(keys.map { posteriors[$0]! }, axis: 0))
    }
}
