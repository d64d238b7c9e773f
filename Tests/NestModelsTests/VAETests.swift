import Foundation
import NestEngine
import NestIO
@testable import NestModels
import Testing

/// AutoencoderKL against diffusers 0.42.1 (tools/model_fixtures/vae.py), and
/// the errors a broken or unsupported VAE folder must give.
@Suite struct VAETests {
    static let tolerance: Float = 1e-4

    @Test(arguments: ["sd1", "sd2", "sdxl"])
    func matchesDiffusers(flavour: String) throws {
        let vae = try AutoencoderKL.load(folder: ModelFixtures.component(flavour, "vae"))
        let refs = try ModelFixtures.references(flavour, "vae")
        func check(_ name: String, _ actual: Tensor, nchw: Bool = true) throws {
            let expected = try refs.reference(name, nchw: nchw)
            #expect(actual.shape == expected.shape, "\(flavour) \(name)")
            let error = relativeError(actual, expected)
            print("VAE \(flavour) \(name): max relative error \(error)")
            #expect(error <= Self.tolerance, "\(flavour) \(name)")
        }

        let posterior = vae.encode(try refs.reference("images", nchw: true))
        try check("mean", posterior.mean)
        try check("logvar", posterior.logvar)
        try check("sample", posterior.sample(noise: try refs.reference("noise", nchw: true)))
        try check("kl", posterior.klToStandardNormal(), nchw: false)
        try check("scaled_sample", vae.scaleLatents(posterior.sample(noise: try refs.reference("noise", nchw: true))))
        try check("unscaled_latents", vae.unscaleLatents(try refs.reference("latents", nchw: true)))
        try check("decoded", vae.decode(try refs.reference("latents", nchw: true)))

        let odd = vae.encode(try refs.reference("odd_images", nchw: true))
        try check("odd_mean", odd.mean)
        try check("odd_logvar", odd.logvar)
        try check("odd_decoded", vae.decode(try refs.reference("odd_latents", nchw: true)))
    }

    @Test func logvarIsClampedWithTorchsGradient() {
        // Two channels of mean, two of log-variance: 25 and -35 fall outside [-30, 20].
        let params = Tensor([0.5, -0.5, 25, 1, 0, 0, -35, 20], shape: [2, 1, 1, 4], requiresGrad: true)
        let posterior = Autograd.withGrad { DiagonalGaussian(parameters: params) }
        #expect(posterior.logvar.array == [20, 1, -30, 20])
        #expect(posterior.mean.array == [0.5, -0.5, 0, 0])
        Autograd.withGrad { posterior.logvar.sum() }.backward()
        // Gradient passes inside the range, boundary included (torch.clamp's rule).
        #expect(params.grad?.array == [0, 0, 0, 1, 0, 0, 0, 1])
    }

    @Test func gradientsReachEncoderAndDecoder() throws {
        let vae = try AutoencoderKL(config: AutoencoderKLConfig(blockOutChannels: [8, 8], normNumGroups: 4))
        vae.unfreeze()
        let images = Tensor.uniform([1, 8, 8, 3], low: -1, high: 1, seed: 3)
        let loss = Autograd.withGrad {
            let z = vae.encode(images).sample(noise: Tensor.randn([1, 4, 4, 4], seed: 4))
            return F.mseLoss(vae.decode(z), images)
        }
        loss.backward()
        let missing = vae.trainableParameters.filter { $0.tensor.grad == nil }.map(\.path)
        #expect(missing.isEmpty, "no gradient for \(missing)")
    }

    @Test func optionalPartsFollowTheConfig() throws {
        var config = AutoencoderKLConfig(blockOutChannels: [8, 16], normNumGroups: 4)
        config.useQuantConv = false
        config.usePostQuantConv = false
        config.midBlockAddAttention = false
        let names = try AutoencoderKL(config: config).namedParameters().map(\.path)
        #expect(!names.contains { $0.hasPrefix("quant_conv") || $0.hasPrefix("post_quant_conv") })
        #expect(!names.contains { $0.contains("attentions") })
        #expect(names.contains("decoder.mid_block.resnets.1.conv2.weight"))
        #expect(names.contains("encoder.down_blocks.0.downsamplers.0.conv.weight"))
        #expect(!names.contains("encoder.down_blocks.1.downsamplers.0.conv.weight"))
        #expect(names.contains("decoder.up_blocks.1.resnets.1.conv1.weight"))
    }

    // MARK: - Errors

    @Test func unsupportedBlockTypeIsNamed() throws {
        try withCopyOfFixture("sd1") { folder in
            try editConfig(folder) { $0["down_block_types"] = ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"] }
            let message = try #require(loadError(folder))
            #expect(message.contains("unsupported down_block_types entry 'AttnDownEncoderBlock2D'"))
            #expect(message.contains("config.json") && !message.contains("\n"))
        }
    }

    @Test(arguments: [("act_fn", "gelu" as Any), ("latents_mean", [0.1, 0.2, 0.3, 0.4]), ("norm_type", "spatial")])
    func unsupportedValuesAreNamed(key: String, value: Any) throws {
        try withCopyOfFixture("sd2") { folder in
            try editConfig(folder) { $0[key] = value }
            let message = try #require(loadError(folder))
            #expect(message.contains(key) && !message.contains("\n"), "\(message)")
        }
    }

    @Test func wrongWeightShapeIsNamed() throws {
        try withCopyOfFixture("sdxl") { folder in
            let path = folder.appendingPathComponent("diffusion_pytorch_model.safetensors").path
            let file = try SafeTensorsFile(path: path)
            let target = "decoder.up_blocks.0.resnets.1.conv1.weight"
            var writer = SafeTensorsWriter()
            for name in file.names {
                var shape = try file.info(name).shape
                if name == target { shape = [shape[0], shape[1] * shape[2] * shape[3], 1, 1] }  // same values, reshaped
                writer.add(name, shape: shape, floats: try file.floats(name))
            }
            try writer.write(to: path, overwrite: true)
            let message = try #require(loadError(folder))
            #expect(message.contains(target) && message.contains("shape"), "\(message)")
        }
    }

    @Test func missingWeightsFileIsReported() throws {
        try withCopyOfFixture("sd1") { folder in
            try FileManager.default.removeItem(at: folder.appendingPathComponent("diffusion_pytorch_model.safetensors"))
            let message = try #require(loadError(folder))
            #expect(message.contains("no weights file"), "\(message)")
        }
    }

    // MARK: - Helpers

    /// The error message loading `folder` gives, or nil when it loads.
    private func loadError(_ folder: URL) -> String? {
        do { _ = try AutoencoderKL.load(folder: folder); return nil } catch { return "\(error)" }
    }

    /// Runs `body` on a writable copy of a flavour's `vae/` folder in a fresh
    /// temporary directory, removed afterwards.
    private func withCopyOfFixture(_ flavour: String, _ body: (URL) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vae-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let copy = dir.appendingPathComponent("vae")
        try FileManager.default.copyItem(at: ModelFixtures.component(flavour, "vae"), to: copy)
        try body(copy)
    }

    private func editConfig(_ folder: URL, _ edit: (inout [String: Any]) -> Void) throws {
        let url = folder.appendingPathComponent("config.json")
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: url)
    }
}
