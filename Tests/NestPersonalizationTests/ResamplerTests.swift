import Foundation
import NestEngine
import NestIO
import NestPersonalization
import Testing

/// The resampler against diffusers' IPAdapterPlusImageProjection, loaded from
/// weights in the original IP-Adapter-Plus key layout.
@Suite struct ResamplerTests {
    @Test func matchesDiffusersImageProjection() throws {
        let file = NestedAttentionTests.file
        let prefix = "resampler.weights."
        var weights: [String: Tensor] = [:]
        for name in file.names where name.hasPrefix(prefix) { weights[String(name.dropFirst(prefix.count))] = try file.tensor(name) }
        let config = Resampler.Config(embeddingDim: 16, width: 32, outputDim: 24, depth: 2, heads: 4, headDim: 8, queries: 6, ffMult: 2)
        let resampler = Resampler(config: config)
        try resampler.load(from: TensorDictionary(weights))   // strict: every name must match
        let out = resampler(try file.tensor("resampler.features"))
        let expected = try file.tensor("resampler.out")
        #expect(out.shape == [2, 6, 24])
        var worst: Float = 0, scale: Float = 1e-6
        for i in 0..<out.count { worst = max(worst, abs(out.data[i] - expected.data[i])); scale = max(scale, abs(expected.data[i])) }
        #expect(worst / scale < 1e-5, "resampler differs from diffusers by \(worst / scale)")
    }
}
