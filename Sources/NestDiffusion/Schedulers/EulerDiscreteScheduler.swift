import Foundation
import NestEngine
import NestModels

/// How sigmas are placed between the largest and smallest noise level.
public enum SigmaSpacing: Sendable {
    /// The training sigmas at the spaced timesteps.
    case interpolated
    /// Karras et al. (2022), rho = 7; timesteps are mapped back from the sigmas.
    case karras
    /// Evenly spaced in log sigma.
    case exponential

    init(_ config: SchedulerConfig, kind: SchedulerKind) throws {
        try refuseTrue(config.useBetaSigmas, key: "use_beta_sigmas", kind: kind)
        let karras = config.useKarrasSigmas ?? false, exponential = config.useExponentialSigmas ?? false
        if karras && exponential {
            throw ModelConfigError("scheduler_config.json: use_karras_sigmas and use_exponential_sigmas are both true")
        }
        self = karras ? .karras : exponential ? .exponential : .interpolated
    }

    /// Respaces `count` sigmas running from `sigmaMax` down to `sigmaMin`.
    func respaced(min sigmaMin: Double, max sigmaMax: Double, count: Int) -> [Double]? {
        switch self {
        case .interpolated: nil
        case .karras: NumPy.karrasSigmas(min: sigmaMin, max: sigmaMax, count: count)
        case .exponential: NumPy.exponentialSigmas(min: sigmaMin, max: sigmaMax, count: count)
        }
    }
}

/// diffusers' `EulerDiscreteScheduler` (Karras et al. 2022, Algorithm 2
/// without churn): x ← x + (x - x̂₀)/σᵢ · (σᵢ₊₁ - σᵢ).
public struct EulerDiscreteScheduler: Scheduler {
    public let kind = SchedulerKind.euler
    public let noiseSchedule: NoiseSchedule
    public let predictionType: PredictionType
    public let spacing: TimestepSpacing
    public let sigmaSpacing: SigmaSpacing
    let stepsOffset: Int
    let sigmaMin: Double?, sigmaMax: Double?
    /// `final_sigmas_type` "sigma_min" ends at the smallest training sigma instead of 0.
    let endsAtSigmaMin: Bool
    /// `timestep_type` "continuous" (with v-prediction): the denoiser gets 0.25·log σ.
    let continuousTimesteps: Bool

    public private(set) var timesteps: [Float] = []
    /// One per step plus the final sigma.
    public private(set) var sigmas: [Float] = []
    public var latentLayout = LatentLayout.nchw

    public init(config: SchedulerConfig) throws {
        noiseSchedule = try NoiseSchedule(config: config, kind: kind, clampsTerminal: true)
        predictionType = try NestDiffusion.predictionType(config, kind: kind)
        spacing = try choice(config.timestepSpacing, default: .linspace, key: "timestep_spacing", kind: kind)
        sigmaSpacing = try SigmaSpacing(config, kind: kind)
        stepsOffset = config.stepsOffset ?? 0
        sigmaMin = config.sigmaMin
        sigmaMax = config.sigmaMax
        if let interpolation = config.interpolationType, interpolation != "linear" {
            throw unsupported("interpolation_type", interpolation, by: kind)
        }
        switch config.finalSigmasType ?? "zero" {
        case "zero": endsAtSigmaMin = false
        case "sigma_min": endsAtSigmaMin = true
        case let other: throw unsupported("final_sigmas_type", other, by: kind)
        }
        switch config.timestepType ?? "discrete" {
        case "discrete": continuousTimesteps = false
        case "continuous": continuousTimesteps = predictionType == .vPrediction
        case let other: throw unsupported("timestep_type", other, by: kind)
        }
    }

    /// diffusers: σ_max when spacing is linspace or trailing, else sqrt(σ_max² + 1).
    public var initNoiseSigma: Float {
        let largest = sigmas.max() ?? noiseSchedule.sigmas.max() ?? 1
        return spacing == .leading ? (largest * largest + 1).squareRoot() : largest
    }

    public mutating func setTimesteps(_ count: Int) throws {
        let trainSigmas = noiseSchedule.sigmas
        try checkStepCount(count, trainSteps: trainSigmas.count, kind: kind)
        var steps = Spacing.euler(spacing, trainSteps: trainSigmas.count, count: count, offset: stepsOffset)
        var levels = steps.map { NumPy.interp($0, trainSigmas) }
        // Respaced sigmas span the spaced timesteps' range (or the configured bounds).
        if let respaced = sigmaSpacing.respaced(min: sigmaMin ?? levels[levels.count - 1],
                                                max: sigmaMax ?? levels[0], count: count) {
            let logSigmas = trainSigmas.map { Foundation.log($0) }
            levels = respaced
            steps = respaced.map { NumPy.sigmaToT($0, logSigmas: logSigmas) }
        }
        let acp0 = noiseSchedule.alphasCumprod[0]
        let last: Float = endsAtSigmaMin ? ((1 - acp0) / acp0).squareRoot() : 0
        sigmas = levels.map { Float($0) } + [last]
        timesteps = continuousTimesteps
            ? sigmas.dropLast().map { 0.25 * Foundation.log($0) }
            : steps.map { Float($0) }
    }

    public func scaleModelInput(_ sample: Tensor, step: Int) -> Tensor {
        checkStep(step, timesteps)
        let sigma = sigmas[step]
        let scale = (sigma * sigma + 1).squareRoot()
        return elementwise(sample) { $0 / scale }
    }

    public mutating func step(modelOutput: Tensor, step: Int, sample: Tensor, generator: TorchGenerator?) -> Tensor {
        checkStep(step, timesteps)
        let sigma = sigmas[step], dt = sigmas[step + 1] - sigma
        switch predictionType {
        case .epsilon:
            return elementwise(sample, modelOutput) { x, m in
                let x0 = x - sigma * m
                return x + (x - x0) / sigma * dt
            }
        case .vPrediction:
            let variance = sigma * sigma + 1
            let outputScale = -sigma / variance.squareRoot()
            return elementwise(sample, modelOutput) { x, m in
                let x0 = m * outputScale + x / variance
                return x + (x - x0) / sigma * dt
            }
        case .sample:
            return elementwise(sample, modelOutput) { x, x0 in x + (x - x0) / sigma * dt }
        }
    }

    public func addNoise(original: Tensor, noise: Tensor, step: Int) -> Tensor {
        checkStep(step, timesteps)
        let sigma = sigmas[step]
        return elementwise(original, noise) { x, n in x + n * sigma }
    }
}
