import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import Testing

/// Gradients of one training step of the base models against PyTorch autograd
/// (tools/make_training_fixtures.py), for every parameter.
@Suite struct GradientParityTests {
    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    static let file = try! SafeTensorsFile(path: fixtures.appendingPathComponent("gradients.safetensors").path)
    static let models = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("NestModelsTests/Fixtures")

    /// Relative error of one gradient, measured against the largest gradient of the model
    /// (tiny gradients of individual tensors are dominated by float32 rounding).
    func compareGradients(_ model: Module, prefix: String, tolerance: Float = 1e-3) throws {
        var scale: Float = 0
        for (path, _) in model.namedParameters() {
            let g = try Self.file.tensor("\(prefix).grad.\(path)")
            for i in 0..<g.count { scale = max(scale, abs(g.data[i])) }
        }
        var worst: (Float, String) = (0, "")
        var checked = 0
        for (path, p) in model.namedParameters() {
            guard let grad = p.tensor.grad else { Issue.record("\(prefix): no gradient for \(path)"); continue }
            let expected = try Self.file.tensor("\(prefix).grad.\(path)")
            var e: Float = 0
            for i in 0..<expected.count { e = max(e, abs(grad.data[i] - expected.data[i])) }
            if e / scale > worst.0 { worst = (e / scale, path) }
            checked += 1
        }
        print("gradient parity \(prefix): \(checked) parameters, worst \(worst.0) at \(worst.1)")
        #expect(worst.0 < tolerance, "\(prefix): gradient of \(worst.1) differs by \(worst.0) (relative to the largest gradient)")
    }

    @Test(arguments: ["sd1", "sdxl"])
    func unetDenoisingStep(flavour: String) throws {
        let unet = try UNet2DConditionModel.load(folder: Self.models.appendingPathComponent("\(flavour)/unet"))
        unet.unfreeze()
        let f = Self.file
        let x0 = try f.tensor("\(flavour).x0").permuted([0, 2, 3, 1]), eps = try f.tensor("\(flavour).eps").permuted([0, 2, 3, 1])
        let t = try f.tensor("\(flavour).t").array.map { Int($0) }
        let config = try SchedulerConfig.decode(Data(#"{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}"#.utf8), name: "test")
        let schedule = try makeScheduler(kind: .ddim, config: config, stepCount: 1).noiseSchedule
        let xt = schedule.addNoise(original: x0, noise: eps, timesteps: t)
        var added: (textEmbeds: Tensor, timeIds: Tensor)? = nil
        if f.tensors["\(flavour).text_embeds"] != nil {
            added = (try f.tensor("\(flavour).text_embeds"), try f.tensor("\(flavour).time_ids"))
        }
        let pred = unet(sample: xt, timestep: t.map(Float.init), encoderHiddenStates: try f.tensor("\(flavour).context"), added: added)
        let loss = F.mseLoss(pred, eps)
        let expectedLoss = try f.tensor("\(flavour).loss").item
        #expect(abs(loss.item - expectedLoss) / expectedLoss < 1e-4, "loss \(loss.item) vs \(expectedLoss)")
        loss.backward()
        try compareGradients(unet, prefix: flavour)
    }

    @Test func vaeReconstructionStep() throws {
        let vae = try AutoencoderKL.load(folder: Self.models.appendingPathComponent("sd1/vae"))
        vae.unfreeze()
        let x = try Self.file.tensor("vae.x").permuted([0, 2, 3, 1])
        let noise = try Self.file.tensor("vae.noise").permuted([0, 2, 3, 1])
        let posterior = vae.encode(x)
        let recon = vae.decode(posterior.sample(noise: noise))
        let loss = F.mseLoss(recon, x) + posterior.klToStandardNormal().mean() * 1e-3
        let expectedLoss = try Self.file.tensor("vae.loss").item
        #expect(abs(loss.item - expectedLoss) / expectedLoss < 1e-4, "loss \(loss.item) vs \(expectedLoss)")
        loss.backward()
        try compareGradients(vae, prefix: "vae")
    }
}
