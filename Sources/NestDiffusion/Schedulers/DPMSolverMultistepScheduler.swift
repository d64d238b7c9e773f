import Foundation
import NestEngine
import NestModels

/// diffusers' `DPMSolverMultistepScheduler` with algorithm "dpmsolver++"
/// (Lu et al. 2022): the denoiser output is turned into a data prediction x̂₀
/// and the exponential integrator is stepped in λ = log(α/σ), with first order
/// on the first step and second order (midpoint or Heun) after it.
public struct DPMSolverMultistepScheduler: Scheduler {
    public enum SolverType: String, Sendable { case midpoint, heun }

    public let kind = SchedulerKind.dpmSolverMultistep
    public let noiseSchedule: NoiseSchedule
    public let predictionType: PredictionType
    public let spacing: TimestepSpacing
    public let sigmaSpacing: SigmaSpacing
    public let solverOrder: Int
    public let solverType: SolverType
    let lowerOrderFinal: Bool, eulerAtFinal: Bool, endsAtSigmaMin: Bool
    let stepsOffset: Int
    let sigmaMin: Double?, sigmaMax: Double?
    let lambdaMinClipped: Double
    /// diffusers rounds Karras timesteps except for the cosine schedule.
    let roundsRespacedTimesteps: Bool

    public private(set) var timesteps: [Float] = []
    /// One per step plus the final sigma.
    public private(set) var sigmas: [Float] = []
    public var latentLayout = LatentLayout.nchw
    public var initNoiseSigma: Float { 1 }

    /// The data predictions of the previous and the current step.
    private var previousPrediction: Tensor?
    private var lowerOrderCount = 0
    private var lastStep: Int?

    public init(config: SchedulerConfig) throws {
        noiseSchedule = try NoiseSchedule(config: config, kind: kind, clampsTerminal: true)
        predictionType = try NestDiffusion.predictionType(config, kind: kind)
        spacing = try choice(config.timestepSpacing, default: .linspace, key: "timestep_spacing", kind: kind)
        sigmaSpacing = try SigmaSpacing(config, kind: kind)
        if let algorithm = config.algorithmType, algorithm != "dpmsolver++", algorithm != "deis" {
            throw unsupported("algorithm_type", algorithm, by: kind)  // diffusers maps "deis" to dpmsolver++
        }
        solverOrder = config.solverOrder ?? 2
        guard solverOrder == 1 || solverOrder == 2 else { throw unsupported("solver_order", solverOrder, by: kind) }
        switch config.solverType ?? "midpoint" {
        case "midpoint", "logrho", "bh1", "bh2": solverType = .midpoint  // diffusers maps the last three too
        case "heun": solverType = .heun
        case let other: throw unsupported("solver_type", other, by: kind)
        }
        try refuseTrue(config.thresholding, key: "thresholding", kind: kind)
        try refuseTrue(config.useLuLambdas, key: "use_lu_lambdas", kind: kind)
        try refuseTrue(config.useFlowSigmas, key: "use_flow_sigmas", kind: kind)
        try refuseTrue(config.useDynamicShifting, key: "use_dynamic_shifting", kind: kind)
        if let variance = config.varianceType { throw unsupported("variance_type", variance, by: kind) }
        lowerOrderFinal = config.lowerOrderFinal ?? true
        eulerAtFinal = config.eulerAtFinal ?? false
        switch config.finalSigmasType ?? "zero" {
        case "zero": endsAtSigmaMin = false
        case "sigma_min": endsAtSigmaMin = true
        case let other: throw unsupported("final_sigmas_type", other, by: kind)
        }
        stepsOffset = config.stepsOffset ?? 0
        sigmaMin = config.sigmaMin
        sigmaMax = config.sigmaMax
        lambdaMinClipped = config.lambdaMinClipped ?? -.infinity
        roundsRespacedTimesteps = config.betaSchedule != "squaredcos_cap_v2"
    }

    public mutating func setTimesteps(_ count: Int) throws {
        let trainSigmas = noiseSchedule.sigmas, trainSteps = trainSigmas.count
        try checkStepCount(count, trainSteps: trainSteps, kind: kind)
        // lambda_min_clipped drops the noisiest timesteps whose λ lies below it.
        let lambdas = noiseSchedule.alphasCumprod.map { Foundation.log($0.squareRoot()) - Foundation.log((1 - $0).squareRoot()) }
        let clipped = lambdas.reversed().prefix { Double($0) < lambdaMinClipped }.count
        var steps = Spacing.dpmSolver(spacing, trainSteps: trainSteps, lastTimestep: trainSteps - clipped,
                                      count: count, offset: stepsOffset)
        var levels: [Double]
        // Respaced sigmas span the whole training range (or the configured bounds).
        if let respaced = sigmaSpacing.respaced(min: sigmaMin ?? Double(trainSigmas[0]),
                                                max: sigmaMax ?? Double(trainSigmas[trainSteps - 1]), count: count) {
            let logSigmas = trainSigmas.map { Foundation.log($0) }
            levels = respaced
            steps = respaced.map { sigma in
                let t = NumPy.sigmaToT(sigma, logSigmas: logSigmas)
                // Karras timesteps are rounded; otherwise the int64 cast truncates.
                return Int(sigmaSpacing == .karras && roundsRespacedTimesteps ? NumPy.round(t) : t)
            }
        } else {
            levels = steps.map { NumPy.interp(Double($0), trainSigmas) }
        }
        let acp0 = noiseSchedule.alphasCumprod[0]
        let last: Float = endsAtSigmaMin ? ((1 - acp0) / acp0).squareRoot() : 0
        sigmas = levels.map { Float($0) } + [last]
        timesteps = steps.map { Float($0) }
        previousPrediction = nil
        lowerOrderCount = 0
        lastStep = nil
    }

    public func scaleModelInput(_ sample: Tensor, step: Int) -> Tensor { sample }

    /// α_t = 1/sqrt(σ² + 1) and σ_t = σ·α_t of the variance-preserving process, and λ = log(α_t/σ_t).
    private func alphaSigmaLambda(_ step: Int) -> (alpha: Float, sigma: Float, lambda: Float) {
        let sigma = sigmas[step]
        let alpha = 1 / (sigma * sigma + 1).squareRoot()
        let scaled = sigma * alpha
        return (alpha, scaled, Foundation.log(alpha) - Foundation.log(scaled))
    }

    public mutating func step(modelOutput: Tensor, step: Int, sample: Tensor, generator: TorchGenerator?) -> Tensor {
        checkStep(step, timesteps)
        // A step that does not follow the previous one starts a new run.
        if let lastStep, step != lastStep + 1 { previousPrediction = nil; lowerOrderCount = 0 }
        lastStep = step

        let count = timesteps.count, isLast = step == count - 1
        let finalFirstOrder = isLast && (eulerAtFinal || (lowerOrderFinal && count < 15) || !endsAtSigmaMin)
        let (alphaS, sigmaS, lambdaS) = alphaSigmaLambda(step)
        let prediction: Tensor
        switch predictionType {
        case .epsilon: prediction = elementwise(sample, modelOutput) { x, m in (x - sigmaS * m) / alphaS }
        case .vPrediction: prediction = elementwise(sample, modelOutput) { x, m in alphaS * x - sigmaS * m }
        case .sample: prediction = modelOutput
        }
        let (alphaT, sigmaT, lambdaT) = alphaSigmaLambda(step + 1)
        let h = lambdaT - lambdaS
        let sampleScale = sigmaT / sigmaS
        let predictionScale = alphaT * (Foundation.exp(-h) - 1)

        let next: Tensor
        if solverOrder == 1 || lowerOrderCount < 1 || finalFirstOrder {
            next = elementwise(sample, prediction) { x, d0 in sampleScale * x - predictionScale * d0 }
        } else {
            // D1 = (m0 - m1) / r0 with r0 = h_prev / h: the slope in λ.
            let lambdaPrevious = alphaSigmaLambda(step - 1).lambda
            let inverseRatio = 1 / ((lambdaS - lambdaPrevious) / h)
            let slopeScale = solverType == .midpoint
                ? 0.5 * predictionScale
                : -(alphaT * ((Foundation.exp(-h) - 1) / h + 1))
            next = elementwise(sample, prediction, previousPrediction!) { x, m0, m1 in
                sampleScale * x - predictionScale * m0 - slopeScale * (inverseRatio * (m0 - m1))
            }
        }
        previousPrediction = prediction
        lowerOrderCount = min(lowerOrderCount + 1, solverOrder)
        return next
    }

    /// img2img: the variance-preserving forward process at this step's sigma.
    public func addNoise(original: Tensor, noise: Tensor, step: Int) -> Tensor {
        checkStep(step, timesteps)
        let (alpha, sigma, _) = alphaSigmaLambda(step)
        return elementwise(original, noise) { x, n in alpha * x + sigma * n }
    }
}
