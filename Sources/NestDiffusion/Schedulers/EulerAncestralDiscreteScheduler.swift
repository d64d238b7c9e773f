import Foundation
import NestEngine
import NestModels

/// diffusers' `EulerAncestralDiscreteScheduler`: an Euler step down to
/// σ_down, then fresh noise of scale σ_up, so that σ_down² + σ_up² = σᵢ₊₁².
public struct EulerAncestralDiscreteScheduler: Scheduler {
    public let kind = SchedulerKind.eulerAncestral
    public let noiseSchedule: NoiseSchedule
    public let predictionType: PredictionType
    public let spacing: TimestepSpacing
    let stepsOffset: Int

    public private(set) var timesteps: [Float] = []
    /// One per step plus the final 0.
    public private(set) var sigmas: [Float] = []
    public var latentLayout = LatentLayout.nchw

    public init(config: SchedulerConfig) throws {
        noiseSchedule = try NoiseSchedule(config: config, kind: kind, clampsTerminal: true)
        predictionType = try NestDiffusion.predictionType(config, kind: kind)
        if predictionType == .sample { throw unsupported("prediction_type", "sample", by: kind) }
        spacing = try choice(config.timestepSpacing, default: .linspace, key: "timestep_spacing", kind: kind)
        stepsOffset = config.stepsOffset ?? 0
    }

    public var initNoiseSigma: Float {
        let largest = sigmas.max() ?? noiseSchedule.sigmas.max() ?? 1
        return spacing == .leading ? (largest * largest + 1).squareRoot() : largest
    }

    public mutating func setTimesteps(_ count: Int) throws {
        let trainSigmas = noiseSchedule.sigmas
        try checkStepCount(count, trainSteps: trainSigmas.count, kind: kind)
        let steps = Spacing.euler(spacing, trainSteps: trainSigmas.count, count: count, offset: stepsOffset)
        sigmas = steps.map { Float(NumPy.interp($0, trainSigmas)) } + [0]
        timesteps = steps.map { Float($0) }
    }

    public func scaleModelInput(_ sample: Tensor, step: Int) -> Tensor {
        checkStep(step, timesteps)
        let sigma = sigmas[step]
        let scale = (sigma * sigma + 1).squareRoot()
        return elementwise(sample) { $0 / scale }
    }

    public mutating func step(modelOutput: Tensor, step: Int, sample: Tensor, generator: TorchGenerator?) -> Tensor {
        checkStep(step, timesteps)
        let from = sigmas[step], to = sigmas[step + 1]
        let up = (to * to * (from * from - to * to) / (from * from)).squareRoot()
        // diffusers takes the root unclamped and gets NaN when σᵢ ≫ σᵢ₊₁ rounds
        // the difference below zero (cosine schedule, few steps); clamp instead.
        let down = max(to * to - up * up, 0).squareRoot()
        let dt = down - from
        let variance = from * from + 1
        let outputScale = -from / variance.squareRoot()
        let prediction = predictionType
        let drift = elementwise(sample, modelOutput) { x, m in
            let x0 = prediction == .epsilon ? x - from * m : m * outputScale + x / variance
            return x + (x - x0) / from * dt
        }
        let noise = ancestralNoise(like: modelOutput, layout: latentLayout, generator: generator)
        return elementwise(drift, noise) { x, n in x + n * up }
    }

    public func addNoise(original: Tensor, noise: Tensor, step: Int) -> Tensor {
        checkStep(step, timesteps)
        let sigma = sigmas[step]
        return elementwise(original, noise) { x, n in x + n * sigma }
    }
}
