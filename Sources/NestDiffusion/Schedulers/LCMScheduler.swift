import Foundation
import NestEngine
import NestModels

/// diffusers' `LCMScheduler` (Luo et al. 2023, latent consistency models): each
/// step predicts the clean latents through the consistency boundary condition
/// (c_skip · x + c_out · x̂₀) and, except after the last step, noises them again
/// with fresh noise to the next timestep's level. The timesteps are a subset of
/// the `original_inference_steps` schedule the model was distilled on, so the
/// config's `timestep_spacing` and `steps_offset` do not apply (as in diffusers).
public struct LCMScheduler: Scheduler {
    public let kind = SchedulerKind.lcm
    public let noiseSchedule: NoiseSchedule
    public let predictionType: PredictionType
    /// The distillation schedule's length (`original_inference_steps`, 50 by default).
    public let originalSteps: Int
    /// `timestep_scaling`: the boundary condition sees t · scaling.
    let timestepScaling: Float
    /// `clip_sample`: the predicted x̂₀ is clamped to ±range.
    let clipRange: Float?

    public private(set) var timesteps: [Float] = []
    public var latentLayout = LatentLayout.nchw
    public var initNoiseSigma: Float { 1 }
    private var integerTimesteps: [Int] = []

    public init(config: SchedulerConfig) throws {
        // Like DDIM, LCM keeps ᾱ_T = 0 under zero-terminal-SNR betas.
        noiseSchedule = try NoiseSchedule(config: config, kind: kind, clampsTerminal: false)
        predictionType = try NestDiffusion.predictionType(config, kind: kind)
        try refuseTrue(config.thresholding, key: "thresholding", kind: kind)
        originalSteps = config.originalInferenceSteps ?? 50
        guard (1...noiseSchedule.trainStepCount).contains(originalSteps) else {
            throw unsupported("original_inference_steps", originalSteps, by: kind)
        }
        let scaling = config.timestepScaling ?? 10
        guard scaling.isFinite && scaling >= 0 else { throw unsupported("timestep_scaling", scaling, by: kind) }
        timestepScaling = Float(scaling)
        clipRange = config.clipSample ?? false ? Float(config.clipSampleRange ?? 1) : nil
    }

    /// `count` timesteps taken evenly by index from the distillation schedule
    /// [T/n·k − 1 for k = n…1] (n = original_inference_steps), first index 0.
    public mutating func setTimesteps(_ count: Int) throws {
        guard (1...originalSteps).contains(count) else {
            throw ModelConfigError("lcm: \(count) inference steps, expected 1...\(originalSteps) (the model's original_inference_steps)")
        }
        let k = noiseSchedule.trainStepCount / originalSteps
        let origin = (1...originalSteps).reversed().map { $0 * k - 1 }
        // np.floor(np.linspace(0, n, count, endpoint=False)): i · (n / count) in float64.
        let spacing = Double(origin.count) / Double(count)
        integerTimesteps = (0..<count).map { origin[Int((Double($0) * spacing).rounded(.down))] }
        timesteps = integerTimesteps.map { Float($0) }
    }

    public func scaleModelInput(_ sample: Tensor, step: Int) -> Tensor { sample }

    /// c_skip = σ_d² / (s² + σ_d²) and c_out = s / √(s² + σ_d²), s = t · scaling, σ_d = 0.5 (float32, as torch).
    func boundaryScalings(_ t: Int) -> (skip: Float, out: Float) {
        let scaled = Float(t) * timestepScaling
        let denominator = scaled * scaled + 0.25
        return (0.25 / denominator, scaled / denominator.squareRoot())
    }

    public mutating func step(modelOutput: Tensor, step: Int, sample: Tensor, generator: TorchGenerator?) -> Tensor {
        checkStep(step, timesteps)
        let t = integerTimesteps[step]
        let isLast = step == integerTimesteps.count - 1
        let previous = isLast ? t : integerTimesteps[step + 1]
        let alphaProduct = noiseSchedule.alphasCumprod[t], alphaProductPrevious = noiseSchedule.alphasCumprod[previous]
        let sqrtAlpha = alphaProduct.squareRoot(), sqrtBeta = (1 - alphaProduct).squareRoot()
        let (skip, out) = boundaryScalings(t)
        let clip = clipRange, prediction = predictionType
        let denoised = elementwise(sample, modelOutput) { x, m in
            var x0: Float
            switch prediction {
            case .epsilon: x0 = (x - sqrtBeta * m) / sqrtAlpha
            case .sample: x0 = m
            case .vPrediction: x0 = sqrtAlpha * x - sqrtBeta * m
            }
            if let clip { x0 = min(max(x0, -clip), clip) }
            return out * x0 + skip * x
        }
        if isLast { return denoised }
        let signal = alphaProductPrevious.squareRoot(), noiseScale = (1 - alphaProductPrevious).squareRoot()
        let noise = ancestralNoise(like: modelOutput, layout: latentLayout, generator: generator)
        return elementwise(denoised, noise) { x, n in signal * x + noiseScale * n }
    }

    /// img2img: the DDPM forward process at this step's timestep.
    public func addNoise(original: Tensor, noise: Tensor, step: Int) -> Tensor {
        checkStep(step, timesteps)
        let t = integerTimesteps[step]
        return noiseSchedule.addNoise(original: original, noise: noise,
                                      timesteps: Array(repeating: t, count: original.shape.first ?? 1))
    }
}
