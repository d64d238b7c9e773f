import Foundation
import NestEngine
import NestModels

/// A diffusion sampler: the timesteps the denoiser sees and the update from
/// one noisy sample to the next. Steps are addressed by index into
/// `timesteps` (0 is the noisiest), never by looking a timestep up.
///
/// Sample tensors may be in any layout: every update is elementwise. The one
/// exception is fresh noise (Euler ancestral, DDIM with eta > 0): diffusers
/// draws it with `randn(shape)` in NCHW order, so a scheduler fed NHWC
/// latents must be told (`latentLayout = .nhwc`) to draw in NCHW order and
/// permute, which keeps a seed's image identical to diffusers'.
public protocol Scheduler {
    var kind: SchedulerKind { get }
    /// The training noise schedule (betas, ᾱ); also the training-time forward process.
    var noiseSchedule: NoiseSchedule { get }
    /// What the denoiser receives at each step (fractional for Karras Euler).
    var timesteps: [Float] { get }
    /// Scale of the initial latent noise: `latents = randn * initNoiseSigma`.
    var initNoiseSigma: Float { get }
    /// Layout of the sample tensors, for drawing noise in diffusers' order.
    var latentLayout: LatentLayout { get set }

    /// Sets the number of inference steps; resets any multistep history.
    mutating func setTimesteps(_ count: Int) throws
    /// The denoiser input for step `step` (Euler divides by sqrt(σ² + 1)).
    func scaleModelInput(_ sample: Tensor, step: Int) -> Tensor
    /// The sample after step `step`, from the denoiser's output at that step.
    /// `generator` supplies fresh noise where the sampler needs it; without
    /// one, a randomly seeded generator is used.
    mutating func step(modelOutput: Tensor, step: Int, sample: Tensor, generator: TorchGenerator?) -> Tensor
    /// Noises clean latents to the level of step `step` (img2img's starting point).
    func addNoise(original: Tensor, noise: Tensor, step: Int) -> Tensor
}

extension Scheduler {
    public var stepCount: Int { timesteps.count }

    /// A step without a seeded generator (deterministic samplers need none).
    public mutating func step(modelOutput: Tensor, step: Int, sample: Tensor) -> Tensor {
        self.step(modelOutput: modelOutput, step: step, sample: sample, generator: nil)
    }

    /// Training: the DDPM forward process at integer training timesteps, one per batch element.
    public func addNoise(original: Tensor, noise: Tensor, timesteps: [Int]) -> Tensor {
        noiseSchedule.addNoise(original: original, noise: noise, timesteps: timesteps)
    }

    /// Training: the v-prediction target at integer training timesteps.
    public func velocity(sample: Tensor, noise: Tensor, timesteps: [Int]) -> Tensor {
        noiseSchedule.velocity(sample: sample, noise: noise, timesteps: timesteps)
    }
}

/// Builds a scheduler of `kind` (by default the one the config's `_class_name`
/// selects) from a config's values, as diffusers' `from_config` does.
/// `karras` overrides `use_karras_sigmas` (Euler and DPM-Solver only).
public func makeScheduler(kind: SchedulerKind? = nil, config: SchedulerConfig, karras: Bool? = nil,
                          stepCount: Int? = nil) throws -> any Scheduler {
    let kind = try kind ?? config.defaultKind()
    var config = config
    if let karras {
        guard kind == .euler || kind == .dpmSolverMultistep || !karras else {
            throw ModelConfigError("\(kind.rawValue) does not support Karras sigmas")
        }
        config.useKarrasSigmas = karras
    }
    var scheduler: any Scheduler
    switch kind {
    case .euler: scheduler = try EulerDiscreteScheduler(config: config)
    case .eulerAncestral: scheduler = try EulerAncestralDiscreteScheduler(config: config)
    case .ddim: scheduler = try DDIMScheduler(config: config)
    case .dpmSolverMultistep: scheduler = try DPMSolverMultistepScheduler(config: config)
    case .lcm: scheduler = try LCMScheduler(config: config)
    }
    if let stepCount { try scheduler.setTimesteps(stepCount) }
    return scheduler
}

public enum LatentLayout: Sendable {
    /// [N, C, H, W] (PyTorch's layout; and any non-image tensor).
    case nchw
    /// [N, H, W, C] (the engine's image layout).
    case nhwc
}

/// Standard normal noise shaped like `like`, drawn in diffusers' NCHW order.
func ancestralNoise(like sample: Tensor, layout: LatentLayout, generator: TorchGenerator?) -> Tensor {
    let generator = generator ?? TorchGenerator(seed: UInt64.random(in: 0...UInt64(UInt32.max)))
    switch layout {
    case .nchw:
        return generator.randn(sample.shape)
    case .nhwc:
        precondition(sample.rank == 4, "NHWC noise needs a rank-4 sample, got \(sample.shape)")
        let s = sample.shape
        return generator.randn([s[0], s[3], s[1], s[2]]).permuted([0, 2, 3, 1])
    }
}

func checkStep(_ step: Int, _ timesteps: [Float]) {
    precondition(timesteps.indices.contains(step),
                 "step \(step) outside 0..<\(timesteps.count); call setTimesteps first")
}

func checkStepCount(_ count: Int, trainSteps: Int, kind: SchedulerKind) throws {
    guard (1...trainSteps).contains(count) else {
        throw ModelConfigError("\(kind.rawValue): \(count) inference steps, expected 1...\(trainSteps)")
    }
}

// Elementwise maps over same-shaped tensors. Each closure spells out the
// float32 operations in diffusers' order so results round identically.
func elementwise(_ a: Tensor, _ f: (Float) -> Float) -> Tensor {
    let out = Tensor(uninitialized: a.shape)
    for i in 0..<a.count { out.data[i] = f(a.data[i]) }
    return out
}

func elementwise(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
    precondition(a.shape == b.shape, "shapes \(a.shape) and \(b.shape) differ")
    let out = Tensor(uninitialized: a.shape)
    for i in 0..<a.count { out.data[i] = f(a.data[i], b.data[i]) }
    return out
}

func elementwise(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ f: (Float, Float, Float) -> Float) -> Tensor {
    precondition(a.shape == b.shape && a.shape == c.shape, "shapes \(a.shape), \(b.shape), \(c.shape) differ")
    let out = Tensor(uninitialized: a.shape)
    for i in 0..<a.count { out.data[i] = f(a.data[i], b.data[i], c.data[i]) }
    return out
}
