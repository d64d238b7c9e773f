import Foundation
import NestEngine
import NestIO
import NestModels
import NestPersonalization
import Testing

/// Training a nested adapter through a frozen UNet: the loss and the gradient of
/// every adapter parameter (resampler and per-layer K̃/Ṽ projections) against
/// PyTorch autograd on the same weights and inputs
/// (tools/make_adapter_gradient_fixtures.py, with the direct-form processor).
@Suite struct AdapterGradientTests {
    static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("nested")
    static let cases = ["plain", "scaled"]

    @Test(arguments: ["sd1", "sdxl"])
    func adapterGradientsMatchPyTorch(flavour: String) throws {
        let folder = Self.root.appendingPathComponent(flavour)
        let unet = try UNet2DConditionModel.load(folder: folder.appendingPathComponent("unet"))
        let refs = try SafeTensorsFile(path: folder.appendingPathComponent("gradients.safetensors").path)
        let sample = try refs.tensor("sample").permuted([0, 2, 3, 1]), eps = try refs.tensor("eps").permuted([0, 2, 3, 1])
        let context = try refs.tensor("encoder_hidden_states"), timesteps = try refs.tensor("timesteps").array
        let added = refs.names.contains("text_embeds") ? (try refs.tensor("text_embeds"), try refs.tensor("time_ids")) : nil
        for name in Self.cases {
            // A fresh adapter per case, so gradients do not accumulate across cases.
            let adapter = try PersonalizationAdapter.load(path: folder.appendingPathComponent("adapter_a").path)
            adapter.unfreeze()
            let index = try refs.tensor("\(name).index").array.map { $0 < 0 ? nil : Int($0) }
            let lambda = try refs.tensor("\(name).lambda").item
            let options = NestedAttentionOptions(valueNormalization: lambda == 0 ? nil : lambda,
                                                 tokenWeight: try refs.tensor("\(name).weight").item)
            // Encoded with recording on: the binding's K̃/Ṽ then hang off the resampler's graph.
            let tokens = adapter.encode(features: try refs.tensor("features"))
            let binding = try NestedAttentionBinding.install(on: unet, subjects: [
                NestedBindingSubject(adapter: adapter, tokens: tokens, tokenIndex: index, options: options),
            ])
            let pred = unet(sample: sample, timestep: timesteps, encoderHiddenStates: context, added: added)
            binding.uninstall()
            let loss = F.mseLoss(pred, eps)
            let expectedLoss = try refs.tensor("\(name).loss").item
            let lossError = abs(loss.item - expectedLoss) / expectedLoss
            #expect(lossError < 1e-4, "\(flavour) \(name): loss \(loss.item) vs \(expectedLoss)")
            loss.backward()
            #expect(unet.namedParameters().allSatisfy { $0.1.tensor.grad == nil }, "the UNet stays frozen")
            let worst = try compareGradients(adapter, refs: refs, prefix: "\(name).grad")
            print("adapter gradients \(flavour) \(name): loss error \(lossError), worst gradient \(worst.error) at \(worst.path)")
            #expect(worst.error <= 1e-3, "\(flavour) \(name): gradient of \(worst.path) differs by \(worst.error)")
        }
    }

    /// Worst max|ours − expected| over every adapter parameter, relative to the largest reference
    /// gradient (tiny gradients of individual tensors are dominated by float32 rounding).
    func compareGradients(_ adapter: PersonalizationAdapter, refs: SafeTensorsFile, prefix: String) throws -> (error: Float, path: String) {
        let parameters = adapter.namedParameters()
        #expect(Set(parameters.map(\.0)) == Set(refs.names.filter { $0.hasPrefix(prefix + ".") }.map { String($0.dropFirst(prefix.count + 1)) }),
                "every adapter parameter has a reference gradient and vice versa")
        var scale: Float = 0
        for (path, _) in parameters { scale = max(scale, try refs.tensor("\(prefix).\(path)").array.map(abs).max() ?? 0) }
        var worst: (error: Float, path: String) = (0, "")
        for (path, p) in parameters {
            guard let grad = p.tensor.grad else { Issue.record("\(prefix): no gradient for \(path)"); continue }
            let expected = try refs.tensor("\(prefix).\(path)")
            #expect(grad.shape == expected.shape, "\(path): gradient shape \(grad.shape) vs \(expected.shape)")
            var e: Float = 0
            for i in 0..<expected.count { e = max(e, abs(grad.data[i] - expected.data[i])) }
            if e / scale > worst.error { worst = (e / scale, path) }
        }
        return worst
    }
}
