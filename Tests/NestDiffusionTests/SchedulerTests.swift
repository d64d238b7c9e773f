import Foundation
import NestDiffusion
import NestEngine
import NestModels
import Testing

/// Schedulers against diffusers 0.42.1 (tools/make_scheduler_fixtures.py).
@Suite struct SchedulerTests {
    struct Schedule: Decodable {
        let kind: String, config: String, steps: Int
        let timesteps: [Float], sigmas: [Float]?
        let init_noise_sigma: Float
    }
    struct Trajectory: Decodable {
        let kind: String, config: String, steps: Int
        let seed: UInt64?, eta: Float
        let records: [String: [Float]]
    }
    struct Training: Decodable { let clean, noise, noisy, velocity: [Float]; let timesteps: [Int] }
    struct InferenceNoise: Decodable { let kind: String, config: String, steps: Int, step: Int, values: [Float] }
    struct File: Decodable {
        let shape: [Int], start: [Float], offset: [Float]
        let schedules: [Schedule], trajectories: [Trajectory]
        let training: Training, inference_noise: [InferenceNoise]
        let train_schedule: [String: [Float]]
    }

    static let data: Data = {
        let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
            .appendingPathComponent("schedulers.json")
        return try! Data(contentsOf: url)
    }()
    static let file = try! JSONDecoder().decode(File.self, from: data)
    /// Each config decoded from its own JSON text, through the public decoder.
    static let configs: [String: SchedulerConfig] = {
        let root = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        let raw = root["configs"] as! [String: Any]
        return raw.mapValues { try! SchedulerConfig.decode(JSONSerialization.data(withJSONObject: $0)) }
    }()

    func scheduler(_ kind: String, _ config: String, steps: Int) throws -> any Scheduler {
        try makeScheduler(kind: SchedulerKind(rawValue: kind)!, config: Self.configs[config]!, stepCount: steps)
    }

    @Test func timestepsAndSigmasMatchDiffusers() throws {
        var worstTimestep: Float = 0, worstSigma: Float = 0, worstInit: Float = 0
        for s in Self.file.schedules {
            let scheduler = try scheduler(s.kind, s.config, steps: s.steps)
            let name = "\(s.kind) \(s.config) \(s.steps) steps"
            try #require(scheduler.timesteps.count == s.timesteps.count,
                         "\(name): \(scheduler.timesteps.count) timesteps, diffusers has \(s.timesteps.count)")
            let t = relativeErrors(scheduler.timesteps, s.timesteps)
            worstTimestep = max(worstTimestep, t)
            #expect(t <= 1e-6, "\(name): timesteps \(scheduler.timesteps) vs \(s.timesteps)")
            if let sigmas = s.sigmas {
                let ours = try #require(sigmaList(scheduler))
                let e = elementRelativeError(ours, sigmas)
                worstSigma = max(worstSigma, e)
                #expect(ours.count == sigmas.count && e <= 5e-7, "\(name): sigmas differ by \(e)")
            }
            let e = abs(scheduler.initNoiseSigma - s.init_noise_sigma) / s.init_noise_sigma
            worstInit = max(worstInit, e)
            #expect(e <= 3e-7, "\(name): init noise sigma \(scheduler.initNoiseSigma) vs \(s.init_noise_sigma)")
        }
        print("schedules: \(Self.file.schedules.count); worst relative error timesteps \(worstTimestep), sigmas \(worstSigma), init_noise_sigma \(worstInit)")
    }

    @Test func trajectoriesMatchDiffusers() throws {
        var worst: [String: Float] = [:]
        for trajectory in Self.file.trajectories {
            let results = try run(trajectory, layout: .nchw)
            for (step, expected) in trajectory.records {
                let e = relativeError(results[Int(step)!].array, expected)
                worst[trajectory.kind] = max(worst[trajectory.kind] ?? 0, e)
                #expect(e <= 1e-5, "\(trajectory.kind) \(trajectory.config) \(trajectory.steps) steps: step \(step) differs by \(e)")
            }
        }
        print("trajectories: \(Self.file.trajectories.count); worst relative error per sampler \(worst.sorted { $0.key < $1.key })")
    }

    /// Channels-last latents get the same noise as diffusers' NCHW draw.
    @Test func noiseFollowsTheLatentLayout() throws {
        let noisy = Self.file.trajectories.filter { $0.seed != nil }
        #expect(noisy.count >= 10)
        for trajectory in noisy {
            let results = try run(trajectory, layout: .nhwc)
            let last = trajectory.steps - 1
            let expected = Tensor(trajectory.records[String(last)]!, shape: Self.file.shape).permuted([0, 2, 3, 1])
            let e = relativeError(results[last].array, expected.array)
            #expect(e <= 1e-5, "\(trajectory.kind) \(trajectory.config) NHWC: differs by \(e)")
        }
    }

    /// Runs the fixture's loop: the "denoiser" is 0.3·input + 0.1·sin(t/100) + offset.
    func run(_ trajectory: Trajectory, layout: LatentLayout) throws -> [Tensor] {
        var scheduler = try scheduler(trajectory.kind, trajectory.config, steps: trajectory.steps)
        if trajectory.eta > 0, var ddim = scheduler as? DDIMScheduler {
            ddim.eta = trajectory.eta
            scheduler = ddim
        }
        scheduler.latentLayout = layout
        func arrange(_ values: [Float]) -> Tensor {
            let t = Tensor(values, shape: Self.file.shape)
            return layout == .nhwc ? t.permuted([0, 2, 3, 1]) : t
        }
        let offset = arrange(Self.file.offset)
        let noiseScale = scheduler.initNoiseSigma
        var sample = arrange(Self.file.start).map { $0 * noiseScale }
        let generator = trajectory.seed.map { TorchGenerator(seed: $0) }
        var results: [Tensor] = []
        for (i, t) in scheduler.timesteps.enumerated() {
            let input = scheduler.scaleModelInput(sample, step: i)
            let shift = Float(0.1 * sin(Double(t) / 100))
            let output = input.zip(offset) { x, o in 0.3 * x + shift + o }
            sample = scheduler.step(modelOutput: output, step: i, sample: sample, generator: generator)
            results.append(sample)
        }
        return results
    }

    /// A multistep scheduler reused without setTimesteps starts each run afresh.
    @Test func rerunningAMultistepSchedulerRepeatsTheRun() throws {
        let trajectory = try #require(Self.file.trajectories.first { $0.kind == "dpm++2m" && $0.steps == 10 })
        var scheduler = try scheduler(trajectory.kind, trajectory.config, steps: trajectory.steps)
        var finals: [[Float]] = []
        for _ in 0..<2 {
            var sample = Tensor(Self.file.start, shape: Self.file.shape)
            for i in 0..<scheduler.stepCount {
                sample = scheduler.step(modelOutput: sample.map { 0.3 * $0 }, step: i, sample: sample)
            }
            finals.append(sample.array)
        }
        #expect(finals[0] == finals[1])
    }

    @Test func trainingTargetsMatchDiffusers() throws {
        let training = Self.file.training
        let shape = [2] + Self.file.shape.dropFirst()
        let clean = Tensor(training.clean, shape: shape), noise = Tensor(training.noise, shape: shape)
        let ddim = try scheduler("ddim", "sd15", steps: 10)
        let noisy = ddim.addNoise(original: clean, noise: noise, timesteps: training.timesteps)
        let velocity = ddim.velocity(sample: clean, noise: noise, timesteps: training.timesteps)
        let e1 = relativeError(noisy.array, training.noisy), e2 = relativeError(velocity.array, training.velocity)
        print("training targets: add_noise \(e1), velocity \(e2)")
        #expect(e1 <= 1e-6 && e2 <= 1e-6)
    }

    @Test func img2imgNoiseMatchesDiffusers() throws {
        let shape = Self.file.shape
        let count = shape.reduce(1, *)
        let clean = Tensor(Array(Self.file.training.clean.prefix(count)), shape: shape)
        let noise = Tensor(Array(Self.file.training.noise.prefix(count)), shape: shape)
        for c in Self.file.inference_noise {
            let s = try scheduler(c.kind, c.config, steps: c.steps)
            let e = relativeError(s.addNoise(original: clean, noise: noise, step: c.step).array, c.values)
            #expect(e <= 1e-6, "\(c.kind) \(c.config): img2img noise differs by \(e)")
        }
    }

    @Test func trainingScheduleMatchesTorch() throws {
        for (name, expected) in Self.file.train_schedule {
            let s = try scheduler("euler", name, steps: 1)
            let ours = s.noiseSchedule.alphasCumprod
            let e = zip(ours, expected).map { abs($0 - $1) / $1 }.max() ?? 1
            print("alphas_cumprod \(name): worst relative error \(e)")
            #expect(ours.count == expected.count && e <= 3e-7, "\(name): alphas_cumprod differs by \(e)")
        }
    }
}

extension SchedulerTests {
    /// scheduler_config.json parsing: the shipped SD1.5 / SD2.1 / SDXL configs and refusals.
    @Suite struct ConfigParsing {
        let configs = SchedulerTests.configs

        @Test func stableDiffusion15PicksEulerForPNDM() throws {
            let config = try #require(configs["sd15"])
            #expect(config.className == "PNDMScheduler" && config.betaSchedule == "scaled_linear")
            #expect(config.betaStart == 0.00085 && config.betaEnd == 0.012 && config.stepsOffset == 1)
            #expect(config.trainedBetas == nil && config.setAlphaToOne == false && config.clipSample == false)
            #expect(try config.defaultKind() == .euler)
            let scheduler = try #require(try makeScheduler(config: config, stepCount: 25) as? EulerDiscreteScheduler)
            // PNDM configs carry no timestep_spacing: Euler's own default applies, as in from_config.
            #expect(scheduler.spacing == .linspace && scheduler.predictionType == .epsilon)
        }

        @Test func stableDiffusion21IsVPredictionDDIM() throws {
            let config = try #require(configs["sd21"])
            #expect(try config.defaultKind() == .ddim)
            #expect(config.predictionType == "v_prediction" && config.setAlphaToOne == false && config.clipSample == false)
            let scheduler = try #require(try makeScheduler(config: config, stepCount: 50) as? DDIMScheduler)
            #expect(scheduler.predictionType == .vPrediction && scheduler.spacing == .leading)
            #expect(scheduler.timesteps.first == 981 && scheduler.timesteps.last == 1)
        }

        @Test func stableDiffusionXLIsLeadingEuler() throws {
            let config = try #require(configs["sdxl"])
            #expect(try config.defaultKind() == .euler && config.timestepSpacing == "leading")
            #expect(config.useKarrasSigmas == false && config.interpolationType == "linear")
            let plain = try #require(try makeScheduler(config: config, stepCount: 30) as? EulerDiscreteScheduler)
            let karras = try #require(try makeScheduler(config: config, karras: true, stepCount: 30) as? EulerDiscreteScheduler)
            #expect(plain.sigmaSpacing == .interpolated && karras.sigmaSpacing == .karras)
            #expect(abs(plain.initNoiseSigma - 11.520334) < 1e-5 && plain.timesteps.prefix(2) == [958, 925])
            // Switching sampler keeps the config's values.
            let dpm = try #require(try makeScheduler(kind: .dpmSolverMultistep, config: config, stepCount: 30) as? DPMSolverMultistepScheduler)
            #expect(dpm.spacing == .leading && dpm.solverOrder == 2 && dpm.initNoiseSigma == 1)
        }

        @Test func trainedBetasAreUsedAsGiven() throws {
            var config = SchedulerConfig()
            config.numTrainTimesteps = 4
            config.trainedBetas = [0.1, 0.2, 0.3, 0.4]
            let scheduler = try makeScheduler(kind: .ddim, config: config, stepCount: 2)
            #expect(scheduler.noiseSchedule.betas == [0.1, 0.2, 0.3, 0.4])
            #expect(relativeError(scheduler.noiseSchedule.alphasCumprod, [0.9, 0.72, 0.504, 0.3024]) < 1e-6)
            config.numTrainTimesteps = 5
            #expect(throws: ModelConfigError.self) { try makeScheduler(kind: .ddim, config: config) }
        }

        @Test func diffusersInfinityIsAccepted() throws {
            let text = #"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity, "variance_type": null}"#
            let config = try SchedulerConfig.decode(Data(text.utf8))
            #expect(config.lambdaMinClipped == -.infinity)
            #expect(try makeScheduler(config: config, stepCount: 20).stepCount == 20)
        }

        @Test(arguments: [
            (#"{"beta_schedule": "foo"}"#, SchedulerKind.euler, "beta_schedule 'foo'"),
            (#"{"thresholding": true}"#, .ddim, "thresholding true"),
            (#"{"thresholding": true}"#, .dpmSolverMultistep, "thresholding true"),
            (#"{"_class_name": "FlowMatchEulerDiscreteScheduler"}"#, nil, "_class_name 'FlowMatchEulerDiscreteScheduler'"),
            (#"{"interpolation_type": "log_linear"}"#, .euler, "interpolation_type 'log_linear'"),
            (#"{"prediction_type": "flow_prediction"}"#, .dpmSolverMultistep, "prediction_type 'flow_prediction'"),
            (#"{"prediction_type": "sample"}"#, .eulerAncestral, "prediction_type 'sample'"),
            (#"{"timestep_spacing": "uniform"}"#, .ddim, "timestep_spacing 'uniform'"),
            (#"{"algorithm_type": "sde-dpmsolver++"}"#, .dpmSolverMultistep, "algorithm_type 'sde-dpmsolver++'"),
            (#"{"solver_order": 3}"#, .dpmSolverMultistep, "solver_order 3"),
            (#"{"use_beta_sigmas": true}"#, .euler, "use_beta_sigmas true"),
            (#"{"final_sigmas_type": "denoise_to_zero"}"#, .euler, "final_sigmas_type 'denoise_to_zero'"),
            (#"{"num_train_timesteps": "many"}"#, .euler, "key 'num_train_timesteps' has the wrong type"),
        ] as [(String, SchedulerKind?, String)])
        func refusesWhatWeDoNotImplement(json: String, kind: SchedulerKind?, expected: String) throws {
            let message = refusal { try makeScheduler(kind: kind, config: SchedulerConfig.decode(Data(json.utf8))) }
            #expect(message?.contains(expected) == true && message?.contains("\n") == false, "got \(message ?? "no error")")
        }

        @Test func refusesKarrasWhereItHasNoMeaningAndBadStepCounts() throws {
            let karras = refusal { try makeScheduler(kind: .eulerAncestral, config: SchedulerConfig(), karras: true) }
            #expect(karras == "euler-a does not support Karras sigmas")
            #expect(refusal { try makeScheduler(kind: .ddim, config: SchedulerConfig(), stepCount: 0) } != nil)
            #expect(refusal { try makeScheduler(kind: .euler, config: SchedulerConfig(), stepCount: 1001) } != nil)
            // Keys a diffusers class does not read are ignored, as from_config does.
            var config = SchedulerConfig()
            config.thresholding = true
            #expect(refusal { try makeScheduler(kind: .euler, config: config, stepCount: 10) } == nil)
        }

        func refusal(_ body: () throws -> Any) -> String? {
            do { _ = try body(); return nil } catch { return String(describing: error) }
        }
    }
}

func sigmaList(_ scheduler: any Scheduler) -> [Float]? {
    switch scheduler {
    case let s as EulerDiscreteScheduler: s.sigmas
    case let s as EulerAncestralDiscreteScheduler: s.sigmas
    case let s as DPMSolverMultistepScheduler: s.sigmas
    default: nil
    }
}

/// Largest |a - b| relative to the reference's largest magnitude.
func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    guard a.count == b.count else { return .infinity }
    let scale = b.map { abs($0) }.max() ?? 0
    return (zip(a, b).map { abs($0 - $1) }.max() ?? 0) / max(scale, 1e-30)
}

/// Largest elementwise |a - b| / |b| (0 must match exactly).
func elementRelativeError(_ a: [Float], _ b: [Float]) -> Float {
    guard a.count == b.count else { return .infinity }
    return zip(a, b).map { $1 == 0 ? ($0 == 0 ? 0 : .infinity) : abs($0 - $1) / abs($1) }.max() ?? 0
}

/// Largest elementwise |a - b| / max(|b|, 1) (timesteps near 0 compare absolutely).
func relativeErrors(_ a: [Float], _ b: [Float]) -> Float {
    guard a.count == b.count else { return .infinity }
    return zip(a, b).map { abs($0 - $1) / max(abs($1), 1) }.max() ?? 0
}

extension Tensor {
    func map(_ f: (Float) -> Float) -> Tensor { Tensor(array.map(f), shape: shape) }
    func zip(_ other: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
        Tensor(Swift.zip(array, other.array).map(f), shape: shape)
    }
}
