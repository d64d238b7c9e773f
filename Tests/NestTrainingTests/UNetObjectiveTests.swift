import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
@testable import NestTraining
import Testing

/// The UNet's training objective: min-SNR-γ weights and loss against diffusers
/// (tools/make_min_snr_fixtures.py), the ε a v-prediction implies, and the
/// moving average of the weights that a run writes and resumes.
@Suite(.serialized) struct UNetObjectiveTests {
    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    static let file = try! SafeTensorsFile(path: fixtures.appendingPathComponent("min_snr.safetensors").path)

    static func schedule(_ prediction: String = "epsilon") throws -> NoiseSchedule {
        let config = try SchedulerConfig.decode(Data("""
            {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "\(prediction)"}
            """.utf8), name: "test")
        return try makeScheduler(kind: .ddim, config: config, stepCount: 1).noiseSchedule
    }

    static func close(_ a: [Float], _ b: [Float], relative: Float) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= relative * max(abs($1), 1e-6) }
    }

    @Test func minSNRWeightsMatchDiffusers() throws {
        let schedule = try Self.schedule()
        let timesteps = try Self.file.tensor("timesteps").array.map { Int($0) }
        let snr = LossWeighting.signalToNoise(schedule, timesteps: timesteps)
        #expect(Self.close(snr, try Self.file.tensor("snr").array, relative: 1e-5), "SNR \(snr)")
        let weighting = LossWeighting.minSNR(gamma: 5)
        for (kind, velocity) in [("epsilon", false), ("v_prediction", true)] {
            let ours = weighting.weights(schedule, timesteps: timesteps, predictsVelocity: velocity)
            let expected = try Self.file.tensor("weights.\(kind)").array
            #expect(Self.close(ours, expected, relative: 1e-5), "\(kind): \(ours) vs \(expected)")
        }
        #expect(LossWeighting.uniform.weights(schedule, timesteps: timesteps, predictsVelocity: false).allSatisfy { $0 == 1 })
        // Zero terminal SNR: the last step's ε weight is its limit 1 (not 0/0), v's is 0.
        let rescaled = try SchedulerConfig.decode(Data(#"{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "rescale_betas_zero_snr": true}"#.utf8), name: "test")
        let zeroSNR = try makeScheduler(kind: .ddim, config: rescaled, stepCount: 1).noiseSchedule
        #expect(LossWeighting.signalToNoise(zeroSNR, timesteps: [999]) == [0])
        #expect(weighting.weights(zeroSNR, timesteps: [999], predictsVelocity: false) == [1])
        #expect(weighting.weights(zeroSNR, timesteps: [999], predictsVelocity: true) == [0])
    }

    /// One denoising step of the tiny sd1 UNet, weighted as diffusers' train_text_to_image does.
    @Test(arguments: ["epsilon", "v_prediction"])
    func minSNRStepLossMatchesPyTorch(kind: String) throws {
        let models = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("NestModelsTests/Fixtures/sd1/unet")
        let unet = try UNet2DConditionModel.load(folder: models)
        let f = Self.file, schedule = try Self.schedule(kind)
        let x0 = try f.tensor("step.x0").permuted([0, 2, 3, 1]), eps = try f.tensor("step.eps").permuted([0, 2, 3, 1])
        let t = try f.tensor("step.t").array.map { Int($0) }
        let noisy = schedule.addNoise(original: x0, noise: eps, timesteps: t)
        let velocity = kind == "v_prediction"
        let target = velocity ? schedule.velocity(sample: x0, noise: eps, timesteps: t) : eps
        let prediction = Autograd.noGrad {
            unet(sample: noisy, timestep: t.map(Float.init), encoderHiddenStates: try! f.tensor("step.context"), added: nil)
        }
        let loss = LossWeighting.minSNR(gamma: 5).loss(prediction: prediction, target: target, schedule: schedule, timesteps: t,
                                                        predictsVelocity: velocity).item
        let plain = LossWeighting.uniform.loss(prediction: prediction, target: target, schedule: schedule, timesteps: t,
                                               predictsVelocity: velocity).item
        let expected = try f.tensor("step.loss.\(kind)").item, expectedPlain = try f.tensor("step.plain.\(kind)").item
        #expect(abs(loss - expected) <= 1e-4 * expected, "\(kind): weighted loss \(loss) vs PyTorch \(expected)")
        #expect(abs(plain - expectedPlain) <= 1e-4 * expectedPlain, "\(kind): plain loss \(plain) vs \(expectedPlain)")
        #expect(abs(loss - plain) > 1e-3 * plain, "the weighting changes this batch's loss")
    }

    /// A v-prediction converts back to the noise it implies, for the held-out loss in ε-units.
    @Test func velocityConvertsBackToNoise() throws {
        let (trainer, _) = try BaseTrainerTests.unetTrainer(prediction: "v_prediction")
        let x0 = Tensor.randn([3, 4, 4, 4], seed: 1), eps = Tensor.randn([3, 4, 4, 4], seed: 2)
        let t = [10, 500, 990]
        let noisy = trainer.noise.addNoise(original: x0, noise: eps, timesteps: t)
        let v = trainer.noise.velocity(sample: x0, noise: eps, timesteps: t)
        let recovered = trainer.noiseFromVelocity(v, noisy: noisy, timesteps: t)
        #expect(F.mseLoss(recovered, eps).item < 1e-8, "ε from v differs by \(F.mseLoss(recovered, eps).item)")
    }

    @Test func movingAverageFollowsItsFormula() {
        let weight = Tensor([1, 2], shape: [2])
        let ema = ExponentialMovingAverage([("w", weight)], decay: 0.9, warmup: true)
        #expect(ema.shadows[0].path == "ema.w")
        weight.assign(Tensor([3, 6], shape: [2]))
        ema.update(toward: [weight], update: 1)
        // Warmup: decay min(0.9, 2 / 11) for the first update.
        let d: Float = 2.0 / 11
        #expect(Self.close(ema.shadows[0].tensor.array, [d * 1 + (1 - d) * 3, d * 2 + (1 - d) * 6], relative: 1e-6))
        #expect(ema.decay(atUpdate: 1000) == 0.9 && ExponentialMovingAverage([], decay: 0.99).decay(atUpdate: 1) == 0.99)
        let before = ema.shadows[0].tensor.array
        let seen = ema.withAveragedWeights(in: [weight]) { weight.array }
        #expect(seen == before && weight.array == [3, 6], "the average is swapped in, then the trained values put back")
    }

    /// `nest train unet` with min-SNR and EMA: stopped after 2 steps and resumed to 4, it
    /// writes the same bytes as 4 steps at once; what it writes is the average, not the last step.
    @Test func resumedEMARunWritesTheSameBytes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nest-ema-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var lines: [String] = []
        for i in 0..<3 {
            try ImageFile.writePNG(AdapterTrainerTests.image(UInt64(i)), to: dir.appendingPathComponent("img\(i).png").path)
            lines.append(#"{"image": "img\#(i).png", "caption": "a cat at night"}"#)
        }
        try lines.joined(separator: "\n").write(to: dir.appendingPathComponent("train.jsonl"), atomically: true, encoding: .utf8)
        try lines[0].write(to: dir.appendingPathComponent("held.jsonl"), atomically: true, encoding: .utf8)
        let model = AdapterTrainerTests.tests.appendingPathComponent("NestDiffusionTests/Fixtures/pipelines/sd1").path
        func run(_ output: String, steps: Int, resume: Bool) throws -> URL {
            let url = dir.appendingPathComponent(output + ".json")
            try """
                {"model": "\(model)", "data": "train.jsonl", "output": "\(output)", "resolution": 16, "batch_size": 2,
                 "steps": \(steps), "checkpoint_every": 2, "log_every": 1, "learning_rate": 1e-2,
                 "loss_weighting": "min_snr", "snr_gamma": 5, "ema": 0.5, "ema_warmup": true, "validation_data": "held.jsonl"}
                """.write(to: url, atomically: true, encoding: .utf8)
            try BaseTrainingRun(component: .unet, configFile: url, resume: resume).run()
            return dir.appendingPathComponent(output)
        }
        let straight = try run("straight", steps: 4, resume: false)
        _ = try run("resumed", steps: 2, resume: false)
        let resumed = try run("resumed", steps: 4, resume: true)
        let weights = "unet/diffusion_pytorch_model.safetensors"
        let a = try Data(contentsOf: straight.appendingPathComponent(weights)), b = try Data(contentsOf: resumed.appendingPathComponent(weights))
        #expect(a == b, "the resumed run writes other weights")
        let checkpoint = try Data(contentsOf: resumed.appendingPathComponent("checkpoint.safetensors"))
        #expect(checkpoint == (try Data(contentsOf: straight.appendingPathComponent("checkpoint.safetensors"))), "checkpoints differ")

        let written = try SafeTensorsFile(path: straight.appendingPathComponent(weights).path)
        let saved = try SafeTensorsFile(path: straight.appendingPathComponent("checkpoint.safetensors").path)
        let name = "conv_in.bias"  // a bias: the same layout in the model file and the checkpoint
        let output = try written.tensor(name).array, average = try saved.tensor("ema." + name).array, raw = try saved.tensor(name).array
        #expect(output == average && output != raw, "the written weights are the average, not the last step's")
        let log = try String(contentsOf: straight.appendingPathComponent("log.jsonl"), encoding: .utf8)
        #expect(log.components(separatedBy: "validation_loss").count - 1 == 2, "a held-out loss at each checkpoint: \(log)")
    }
}
