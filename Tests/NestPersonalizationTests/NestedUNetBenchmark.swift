import Foundation
import NestEngine
import NestModels
import NestPersonalization
import Testing

/// Not a check: what nested attention adds, per layer and to a UNet forward. Run in release:
/// NEST_NESTED_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter NestedUNetBenchmark
/// Runs alternate (plain, nested, …) and the best of each is kept, so a busy machine skews both alike.
@Suite(.serialized) struct NestedUNetBenchmark {
    static let enabled = ProcessInfo.processInfo.environment["NEST_NESTED_BENCH"] != nil

    static func best(of runs: Int, _ variants: [() throws -> Void]) throws -> [Double] {
        var best = [Double](repeating: .infinity, count: variants.count)
        for run in 0...runs {
            for (i, body) in variants.enumerated() {
                let start = Date()
                try body()
                if run > 0 { best[i] = min(best[i], Date().timeIntervalSince(start)) }  // run 0 warms up
            }
        }
        return best
    }

    /// The attention core of SD 1.5's cross-attention at each level (8 heads, 77 tokens, M = 16), batch [uncond, cond].
    @Test(.enabled(if: enabled)) func layerCost() throws {
        for (n, c) in [(4096, 320), (1024, 640), (256, 1280)] {
            let q = Tensor.randn([2, n, c], seed: 1), k = Tensor.randn([2, 77, c], seed: 2), v = Tensor.randn([2, 77, c], seed: 3)
            let subject = NestedSubject(tokenIndex: [nil, 5], keys: Tensor.randn([1, 16, c], seed: 4), values: Tensor.randn([1, 16, c], seed: 5))
            let t = try Self.best(of: 7, [
                { _ = F.attention(query: q, key: k, value: v, heads: 8) },
                { _ = nestedCrossAttention(query: q, key: k, value: v, heads: 8, subjects: [subject]) },
            ])
            print(String(format: "layer N=%d C=%d: plain %.1f ms, nested %.1f ms (+%.1f ms)", n, c, t[0] * 1e3, t[1] * 1e3, (t[1] - t[0]) * 1e3))
        }
    }

    @Test(.enabled(if: enabled)) func unetCost() throws {
        let tiny = NestedUNetTests.root.appendingPathComponent("sd1/unet/config.json")
        let sd15 = NestedUNetTests.root.appendingPathComponent("real_configs/sd15/config.json")
        var medium = try JSONSerialization.jsonObject(with: Data(contentsOf: sd15)) as! [String: Any]
        medium["block_out_channels"] = [160, 320, 640, 640]  // SD 1.5 at half width: 8 heads of 20–80
        let configs = [("tiny sd1 fixture", try UNet2DConditionConfig.load(from: tiny), [16], 10),
                       ("SD1.5 topology, half width", try UNet2DConditionConfig.decode(JSONSerialization.data(withJSONObject: medium)), [32, 64], 3)]
        for (label, config, sizes, runs) in configs {
            let unet = UNet2DConditionModel(config: config, seed: 1)
            let width = config.levels[0].crossAttentionDim, m = 16
            let adapterConfig = AdapterConfig(kind: .nested, placeholderToken: "<x>", classWord: "x",
                                              imageEncoder: .init(hiddenSize: 64, imageSize: 224),
                                              resampler: .init(embeddingDim: 64, width: 64, outputDim: width, depth: 1,
                                                               heads: 1, headDim: 64, queries: m, ffMult: 1),
                                              layers: PersonalizationAdapter.layers(for: unet.crossAttentionLayers))
            let adapter = PersonalizationAdapter(config: adapterConfig, seed: 2)
            let e = Tensor.randn([1, m, width], seed: 3)
            for size in sizes {
                let sample = Tensor.randn([2, size, size, 4], seed: 4), context = Tensor.randn([2, 77, width], seed: 5)
                func forward(_ index: [Int?]?) throws {
                    let binding = try index.map { try NestedAttentionBinding.install(on: unet, subjects: [.init(adapter: adapter, tokens: e, tokenIndex: $0)]) }
                    _ = unet(sample: sample, timestep: [500], encoderHiddenStates: context)
                    binding?.uninstall()
                }
                let t = try Self.best(of: runs, [{ try forward(nil) }, { try forward([nil, 5]) }, { try forward([5, 5]) }])
                func pct(_ x: Double) -> String { String(format: "%+.1f%%", 100 * (x / t[0] - 1)) }
                print(String(format: "%@ %d×%d, batch 2, %d layers: plain %.3f s, nested [uncond, cond] %.3f s (%@), nested both items %.3f s (%@)",
                             label, size, size, adapterConfig.layers.count, t[0], t[1], pct(t[1]), t[2], pct(t[2])))
            }
        }
    }
}
