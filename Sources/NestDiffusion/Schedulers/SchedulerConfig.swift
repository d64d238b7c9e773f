import Foundation
import NestModels

/// The samplers we implement, named as on the command line.
public enum SchedulerKind: String, CaseIterable, Sendable {
    case euler
    case eulerAncestral = "euler-a"
    case ddim
    case dpmSolverMultistep = "dpm++2m"
    case lcm

    /// The diffusers class this kind reproduces.
    public var className: String {
        switch self {
        case .euler: "EulerDiscreteScheduler"
        case .eulerAncestral: "EulerAncestralDiscreteScheduler"
        case .ddim: "DDIMScheduler"
        case .dpmSolverMultistep: "DPMSolverMultistepScheduler"
        case .lcm: "LCMScheduler"
        }
    }

    /// diffusers classes that share the noise-schedule keys but that we do not
    /// implement. A model folder naming one of them (SD1.5 ships PNDMScheduler)
    /// gets Euler, built from the same config values as diffusers'
    /// `EulerDiscreteScheduler.from_config(config)` would be.
    public static let substitutedByEuler: Set<String> = [
        "PNDMScheduler", "LMSDiscreteScheduler", "DDPMScheduler", "HeunDiscreteScheduler",
        "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "DPMSolverSinglestepScheduler",
        "DPMSolverSDEScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler",
    ]

    /// The kind a `scheduler_config.json` `_class_name` selects.
    public init(className: String) throws {
        if let kind = SchedulerKind.allCases.first(where: { $0.className == className }) {
            self = kind
        } else if SchedulerKind.substitutedByEuler.contains(className) {
            self = .euler
        } else {
            throw ModelConfigError("scheduler_config.json: _class_name '\(className)' is not supported")
        }
    }
}

/// `scheduler/scheduler_config.json` with diffusers' key names. Every field is
/// optional because each diffusers class has its own defaults (DDIM spaces
/// timesteps "leading" and clips samples, Euler spaces "linspace"...): a
/// scheduler resolves the keys its diffusers class reads and ignores the rest,
/// as `from_config` does. Values we do not implement are refused by name when
/// the scheduler is built.
public struct SchedulerConfig: Codable, Equatable, Sendable {
    public var className: String?
    // Training noise schedule (all classes).
    public var numTrainTimesteps: Int?
    public var betaStart: Double?
    public var betaEnd: Double?
    public var betaSchedule: String?
    public var trainedBetas: [Double]?
    public var rescaleBetasZeroSnr: Bool?
    public var predictionType: String?
    // Inference timesteps.
    public var timestepSpacing: String?
    public var stepsOffset: Int?
    // DDIM.
    public var setAlphaToOne: Bool?
    public var clipSample: Bool?
    public var clipSampleRange: Double?
    public var thresholding: Bool?
    // Sigma spacing (Euler, DPM-Solver).
    public var useKarrasSigmas: Bool?
    public var useExponentialSigmas: Bool?
    public var useBetaSigmas: Bool?
    public var sigmaMin: Double?
    public var sigmaMax: Double?
    public var interpolationType: String?
    public var finalSigmasType: String?
    public var timestepType: String?
    // DPM-Solver.
    public var solverOrder: Int?
    public var algorithmType: String?
    public var solverType: String?
    public var lowerOrderFinal: Bool?
    public var eulerAtFinal: Bool?
    public var lambdaMinClipped: Double?
    public var varianceType: String?
    public var useLuLambdas: Bool?
    public var useFlowSigmas: Bool?
    public var useDynamicShifting: Bool?
    // LCM.
    public var originalInferenceSteps: Int?
    public var timestepScaling: Double?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case className = "_class_name"
        case numTrainTimesteps = "num_train_timesteps", betaStart = "beta_start", betaEnd = "beta_end"
        case betaSchedule = "beta_schedule", trainedBetas = "trained_betas"
        case rescaleBetasZeroSnr = "rescale_betas_zero_snr", predictionType = "prediction_type"
        case timestepSpacing = "timestep_spacing", stepsOffset = "steps_offset"
        case setAlphaToOne = "set_alpha_to_one", clipSample = "clip_sample"
        case clipSampleRange = "clip_sample_range", thresholding
        case useKarrasSigmas = "use_karras_sigmas", useExponentialSigmas = "use_exponential_sigmas"
        case useBetaSigmas = "use_beta_sigmas", sigmaMin = "sigma_min", sigmaMax = "sigma_max"
        case interpolationType = "interpolation_type", finalSigmasType = "final_sigmas_type"
        case timestepType = "timestep_type"
        case solverOrder = "solver_order", algorithmType = "algorithm_type", solverType = "solver_type"
        case lowerOrderFinal = "lower_order_final", eulerAtFinal = "euler_at_final"
        case lambdaMinClipped = "lambda_min_clipped", varianceType = "variance_type"
        case useLuLambdas = "use_lu_lambdas", useFlowSigmas = "use_flow_sigmas"
        case useDynamicShifting = "use_dynamic_shifting"
        case originalInferenceSteps = "original_inference_steps", timestepScaling = "timestep_scaling"
    }

    /// The scheduler the config's `_class_name` asks for (Euler when absent).
    public func defaultKind() throws -> SchedulerKind {
        guard let className else { return .euler }
        return try SchedulerKind(className: className)
    }

    public static func load(from url: URL) throws -> SchedulerConfig {
        try decode(readConfigFile(url), name: url.path)
    }

    /// Decodes the JSON text. diffusers writes Python's `-Infinity` for
    /// `lambda_min_clipped`, which only JSON5 accepts.
    public static func decode(_ data: Data, name: String = "scheduler_config.json") throws -> SchedulerConfig {
        let decoder = JSONDecoder()
        decoder.allowsJSON5 = true
        do {
            return try decoder.decode(SchedulerConfig.self, from: data)
        } catch let error as DecodingError {
            switch error {
            case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
                let key = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }
                    .joined(separator: ".")
                throw ModelConfigError(key.isEmpty ? "\(name): not valid JSON" : "\(name): key '\(key)' has the wrong type")
            default:
                throw ModelConfigError("\(name): \(error)")
            }
        }
    }
}

/// One-line refusals that name the key and value ("beta_schedule 'foo'").
func unsupported(_ key: String, _ value: Any, by kind: SchedulerKind) -> ModelConfigError {
    ModelConfigError("scheduler_config.json: \(key) \(describeValue(value)) is not supported by \(kind.rawValue)")
}

private func describeValue(_ value: Any) -> String {
    if let text = value as? String { return "'\(text)'" }
    return "\(value)"
}

/// Reads a string key against a fixed set of accepted values.
func choice<T: RawRepresentable>(_ value: String?, default fallback: T, key: String,
                                 kind: SchedulerKind) throws -> T where T.RawValue == String {
    guard let value else { return fallback }
    guard let parsed = T(rawValue: value) else { throw unsupported(key, value, by: kind) }
    return parsed
}

/// Refuses a boolean option we do not implement when it is switched on.
func refuseTrue(_ value: Bool?, key: String, kind: SchedulerKind) throws {
    if value == true { throw unsupported(key, true, by: kind) }
}

public enum PredictionType: String, Sendable {
    case epsilon, vPrediction = "v_prediction", sample
}

public enum TimestepSpacing: String, CaseIterable, Sendable {
    case leading, trailing, linspace
}

func predictionType(_ config: SchedulerConfig, kind: SchedulerKind) throws -> PredictionType {
    // diffusers' Euler also accepts the old spelling "original_sample".
    if kind == .euler, config.predictionType == "original_sample" { return .sample }
    return try choice(config.predictionType, default: PredictionType.epsilon, key: "prediction_type", kind: kind)
}
