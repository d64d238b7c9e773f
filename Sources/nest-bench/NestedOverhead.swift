import Foundation
import NestEngine
import NestModels
import NestPersonalization

/// `nest-bench nested-overhead [--rounds R]`: what Nested Attention adds to
/// one SD 1.5 UNet forward (batch 2, 64×64 latents, the subject token in both
/// items as in `compare`). One UNet in one process, the variants interleaved
/// round by round and the best of each kept, so the machine's drift between
/// processes does not masquerade as overhead.
func nestedOverhead(arguments: [String]) {
    let rounds = arguments.firstIndex(of: "--rounds").flatMap { Int(arguments[$0 + 1]) } ?? 3
    let config = try! UNet2DConditionConfig.decode(benchConfig("sd15_unet.json"), name: "nested-overhead")
    let unet = UNet2DConditionModel(config: config, seed: 1)
    let x = Tensor.randn([2, 64, 64, 4], seed: 2), context = Tensor.randn([2, 77, 768], seed: 3)
    let subjects = [5, 9].enumerated().map { i, index in
        NestedBindingSubject(adapter: benchAdapter(unet, tokenWidth: 768, seed: UInt64(i)),
                             tokens: Tensor.randn([1, 16, 768], seed: 10 + UInt64(i)), tokenIndex: [index, index])
    }
    func run(_ count: Int) -> Double {
        let processors = count == 0 ? [:] : try! NestedAttentionBinding.make(on: unet, subjects: Array(subjects.prefix(count))).processors
        return try! unet.withAttentionProcessors(processors) {
            seconds { _ = Autograd.noGrad { unet(sample: x, timestep: [999, 999], encoderHiddenStates: context) } }
        }
    }
    print("nest-bench nested-overhead: \(Threads.count) thread(s), \(rounds) rounds after a warm-up, best of each")
    for count in 0...2 { _ = run(count) }
    var best = [Double](repeating: .infinity, count: 3)
    for _ in 0..<rounds { for count in 0...2 { best[count] = min(best[count], run(count)) } }
    for count in 0...2 {
        let extra = count == 0 ? "" : String(format: "  +%.1f%%", (best[count] / best[0] - 1) * 100)
        print(String(format: "%-34@ %8.3f s", (count == 0 ? "SD 1.5 UNet, 64² latents, batch 2" : "  with \(count) nested subject(s)") as NSString, best[count]) + extra)
    }
}

/// `nest-bench nested-layer [--rounds R]`: the attention core of SD 1.5's cross-attention at
/// each level (8 heads, 77 tokens, M = 16 encoder tokens, batch [uncond, cond]), plain against
/// nested, interleaved round by round and the best of each kept.
func nestedLayerCost(arguments: [String]) {
    let rounds = arguments.firstIndex(of: "--rounds").flatMap { Int(arguments[$0 + 1]) } ?? 7
    print("nest-bench nested-layer: \(Threads.count) thread(s), \(rounds) rounds after a warm-up, best of each")
    for (n, c) in [(4096, 320), (1024, 640), (256, 1280)] {
        let q = Tensor.randn([2, n, c], seed: 1), k = Tensor.randn([2, 77, c], seed: 2), v = Tensor.randn([2, 77, c], seed: 3)
        let subject = NestedSubject(tokenIndex: [nil, 5], keys: Tensor.randn([1, 16, c], seed: 4), values: Tensor.randn([1, 16, c], seed: 5))
        let variants: [() -> Void] = [
            { _ = F.attention(query: q, key: k, value: v, heads: 8) },
            { _ = nestedCrossAttention(query: q, key: k, value: v, heads: 8, subjects: [subject]) },
        ]
        for body in variants { body() }
        var best = [Double](repeating: .infinity, count: variants.count)
        for _ in 0..<rounds { for (i, body) in variants.enumerated() { best[i] = min(best[i], seconds(body)) } }
        print(String(format: "layer N=%d C=%d: plain %.1f ms, nested %.1f ms (+%.1f ms)", n, c, best[0] * 1e3, best[1] * 1e3,
                     (best[1] - best[0]) * 1e3))
    }
}
