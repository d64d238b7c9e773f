import Foundation
import NestEngine
import NestModels

/// The optimizer settings every base-model trainer shares: AdamW with
/// decoupled weight decay, a warmup/decay schedule and gradient clipping.
public struct OptimizationOptions: Codable, Sendable, Equatable {
    public var learningRate: Float = 1e-4
    public var weightDecay: Float = 1e-2
    public var warmupSteps: Int = 0
    public var totalSteps: Int = 1000
    public var schedule: LearningRateSchedule.Decay = .constant
    /// Largest global gradient norm (nil: no clipping).
    public var gradientClip: Float? = 1
    /// Seeds the noise, timesteps and dropout of every step.
    public var seed: UInt64 = 0

    public init(learningRate: Float = 1e-4, weightDecay: Float = 1e-2, warmupSteps: Int = 0, totalSteps: Int = 1000,
                schedule: LearningRateSchedule.Decay = .constant, gradientClip: Float? = 1, seed: UInt64 = 0) {
        self.learningRate = learningRate; self.weightDecay = weightDecay; self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps; self.schedule = schedule; self.gradientClip = gradientClip; self.seed = seed
    }

    enum CodingKeys: String, CodingKey {
        case learningRate = "learning_rate", weightDecay = "weight_decay", warmupSteps = "warmup_steps"
        case totalSteps = "steps", schedule, gradientClip = "gradient_clip", seed
    }

    func makeOptimizer(_ parameters: [(path: String, tensor: Tensor)]) -> AdamW {
        AdamW(parameters: parameters, config: .init(learningRate: learningRate, weightDecay: weightDecay))
    }

    func makeSchedule() -> LearningRateSchedule {
        LearningRateSchedule(base: learningRate, warmupSteps: warmupSteps, totalSteps: totalSteps, decay: schedule)
    }
}

/// Clips, updates and clears the gradients of `optimizer`'s parameters (the
/// tail of every trainer's step, after `backward`).
func applyUpdate(_ optimizer: AdamW, schedule: LearningRateSchedule, options: OptimizationOptions, step: Int) {
    if let clip = options.gradientClip { clipGradNorm(optimizer.parameters.map(\.tensor), maxNorm: clip) }
    optimizer.update(learningRate: schedule.rate(at: step))
    optimizer.zeroGrad()
}

extension Module {
    /// Gives every weight matrix (rank ≥ 2: linear, conv, embedding tables) its
    /// own seeded uniform ±1/√fan_in values, as PyTorch's default init does.
    /// The engine's layers all start from seed 0, so without this two layers of
    /// the same shape would start identical — harmless for loading, bad for
    /// training from scratch. Norm scales and biases are left as they are.
    public func randomizeWeights(seed: UInt64) {
        for (i, entry) in namedParameters().enumerated() where entry.parameter.tensor.rank >= 2 {
            let t = entry.parameter.tensor
            let bound = 1 / Float(t.count / t.shape[0]).squareRoot()
            t.assign(Tensor.uniform(t.shape, low: -bound, high: bound, seed: seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15))
        }
    }
}

/// Trains an AutoencoderKL from scratch or further: reconstruction MSE of a
/// posterior sample's decoding plus a small KL pull toward N(0, I), as the
/// latent-diffusion autoencoders (without their perceptual and GAN terms).
public final class VAETrainer {
    public let vae: AutoencoderKL
    public let options: OptimizationOptions
    /// Weight of the mean per-image KL divergence (summed over latent elements).
    public let klWeight: Float
    public let optimizer: AdamW
    public let schedule: LearningRateSchedule
    public var state = TrainingState()

    /// Every trained tensor by checkpoint name (for `TrainingCheckpoint`).
    public var parameters: [(path: String, tensor: Tensor)] { optimizer.parameters }

    public init(vae: AutoencoderKL, options: OptimizationOptions = .init(), klWeight: Float = 1e-6) {
        self.vae = vae
        self.options = options
        self.klWeight = klWeight
        vae.unfreeze()
        optimizer = options.makeOptimizer(vae.trainableParameters)
        schedule = options.makeSchedule()
        state.seed = options.seed
    }

    /// One update on `images` [B, H, W, 3] in [-1, 1]; returns the loss.
    /// `fixedNoise` draws the same posterior noise every step (tests).
    @discardableResult
    public func step(images: Tensor, fixedNoise: Bool = false) -> Float {
        precondition(images.rank == 4 && images.shape[3] == vae.config.inChannels,
                     "VAETrainer: images must be [B, H, W, \(vae.config.inChannels)], got \(images.shape)")
        let posterior = vae.encode(images)
        let noiseSeed = fixedNoise ? options.seed : options.seed &+ UInt64(state.step) &* 7919 &+ 1
        let z = posterior.sample(noise: Tensor.randn(posterior.mean.shape, seed: noiseSeed))
        let reconstruction = vae.decode(z)
        let loss = F.mseLoss(reconstruction, images) + posterior.klToStandardNormal().mean().scaled(klWeight)
        loss.backward()
        applyUpdate(optimizer, schedule: schedule, options: options, step: state.step)
        state.step += 1
        return loss.item
    }
}
