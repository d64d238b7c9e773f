import Foundation
import NestEngine
import NestModels

/// diffusers' `DDIMScheduler` (Song et al. 2020). Deterministic with eta 0;
/// eta > 0 adds fresh noise like the ancestral sampler.
public struct DDIMScheduler: Scheduler {
    public let kind = SchedulerKind.ddim
    public let noiseSchedule: NoiseSchedule
    public let predictionType: PredictionType
    public let spacing: TimestepSpacing
    let stepsOffset: Int
    /// ᾱ after the last step: 1 (`set_alpha_to_one`) or ᾱ₀.
    let finalAlphaCumprod: Float
    /// `clip_sample`: the predicted x̂₀ is clamped to ±range.
    let clipRange: Float?
    /// Stochasticity (the `eta` argument of diffusers' `step`).
    public var eta: Float = 0

    public private(set) var timesteps: [Float] = []
    public var latentLayout = LatentLayout.nchw
    public var initNoiseSigma: Float { 1 }
    private var integerTimesteps: [Int] = []

    public init(config: SchedulerConfig) throws {
        // Unlike the other classes, DDIM keeps ᾱ_T = 0 with zero-terminal-SNR betas.
        noiseSchedule = try NoiseSchedule(config: config, kind: kind, clampsTerminal: false)
        predictionType = try NestDiffusion.predictionType(config, kind: kind)
        spacing = try choice(config.timestepSpacing, default: .leading, key: "timestep_spacing", kind: kind)
        stepsOffset = config.stepsOffset ?? 0
        try refuseTrue(config.thresholding, key: "thresholding", kind: kind)
        finalAlphaCumprod = config.setAlphaToOne ?? true ? 1 : noiseSchedule.alphasCumprod[0]
        clipRange = config.clipSample ?? true ? Float(config.clipSampleRange ?? 1) : nil
    }

    public mutating func setTimesteps(_ count: Int) throws {
        let trainSteps = noiseSchedule.trainStepCount
        try checkStepCount(count, trainSteps: trainSteps, kind: kind)
        integerTimesteps = Spacing.ddim(spacing, trainSteps: trainSteps, count: count, offset: stepsOffset)
        timesteps = integerTimesteps.map { Float($0) }
    }

    public func scaleModelInput(_ sample: Tensor, step: Int) -> Tensor { sample }

    public mutating func step(modelOutput: Tensor, step: Int, sample: Tensor, generator: TorchGenerator?) -> Tensor {
        checkStep(step, timesteps)
        // diffusers steps back by T / n whatever the spacing, so with trailing
        // or linspace the "previous" timestep is not always the next in the list.
        let t = integerTimesteps[step]
        let previous = t - noiseSchedule.trainStepCount / timesteps.count
        let alphaProduct = noiseSchedule.alphasCumprod[t]
        let alphaProductPrevious = previous >= 0 ? noiseSchedule.alphasCumprod[previous] : finalAlphaCumprod
        let betaProduct = 1 - alphaProduct
        let sqrtAlpha = alphaProduct.squareRoot(), sqrtBeta = betaProduct.squareRoot()

        let variance = (1 - alphaProductPrevious) / betaProduct * (1 - alphaProduct / alphaProductPrevious)
        let standardDeviation = eta * variance.squareRoot()
        let directionScale = (1 - alphaProductPrevious - standardDeviation * standardDeviation).squareRoot()
        let previousScale = alphaProductPrevious.squareRoot()
        let clip = clipRange, prediction = predictionType

        var next = elementwise(sample, modelOutput) { x, m in
            var x0: Float, epsilon: Float
            switch prediction {
            case .epsilon: x0 = (x - sqrtBeta * m) / sqrtAlpha; epsilon = m
            case .sample: x0 = m; epsilon = (x - sqrtAlpha * m) / sqrtBeta
            case .vPrediction: x0 = sqrtAlpha * x - sqrtBeta * m; epsilon = sqrtAlpha * m + sqrtBeta * x
            }
            if let clip { x0 = min(max(x0, -clip), clip) }
            return previousScale * x0 + directionScale * epsilon
        }
        if eta > 0 {
            let noise = ancestralNoise(like: modelOutput, layout: latentLayout, generator: generator)
            next = elementwise(next, noise) { x, n in x + standardDeviation * n }
        }
        return next
    }

    /// img2img: the DDPM forward process at this step's timestep.
    public func addNoise(original: Tensor, noise: Tensor, step: Int) -> Tensor {
        checkStep(step, timesteps)
        let t = integerTimesteps[step]
        return noiseSchedule.addNoise(original: original, noise: noise,
                                      timesteps: Array(repeating: t, count: original.shape.first ?? 1))
    }
}
