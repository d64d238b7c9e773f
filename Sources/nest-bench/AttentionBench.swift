import Foundation
import NestEngine

/// `nest-bench attention [--rounds N] [--whole CASE]`: the attention kernels
/// at the Stable Diffusion UNets' shapes, block kernel against GEMM tiles,
/// interleaved in one process (this VM's speed drifts between processes).
/// With --whole, also a whole case from `compare` with either kernel. With
/// --bf16, the float32 block kernel against the bfloat16 one instead.
func attentionBench(arguments: [String]) {
    let rounds = arguments.firstIndex(of: "--rounds").flatMap { Int(arguments[$0 + 1]) } ?? 6
    let bf16 = arguments.contains("--bf16")
    print("nest-bench attention: \(Threads.count) thread(s); \(bf16 ? "float32 vs bfloat16 block kernel" : "GEMM tiles vs block kernel"), best of \(rounds) interleaved rounds")
    // (batch, queries, keys, heads, head width): SD 1.5 at 64² latents, its cross-attention, SDXL's levels.
    let shapes = [(2, 4096, 4096, 8, 40), (2, 1024, 1024, 8, 80), (2, 256, 256, 8, 160), (2, 4096, 77, 8, 40),
                  (2, 1024, 77, 8, 80), (2, 1024, 1024, 10, 64), (2, 256, 256, 20, 64), (8, 256, 256, 4, 32)]
    for (b, nq, nk, h, d) in shapes {
        let q = Tensor.randn([b, nq, h * d], seed: 1), k = Tensor.randn([b, nk, h * d], seed: 2)
        let v = Tensor.randn([b, nk, h * d], seed: 3)
        var best = [Double.infinity, .infinity]
        var outputs: [[Float]] = [[], []]
        for round in 0...rounds {
            for blocked in [false, true] {
                let i = blocked ? 1 : 0
                var y: Tensor?
                // --bf16: the float32 block kernel (first) against the bfloat16 one (second).
                let t = bf16 ? seconds { y = F.attention(query: q, key: k, value: v, heads: h, bfloat16: blocked) }
                    : seconds { y = AttentionKernel.with(blocked: blocked) { F.attention(query: q, key: k, value: v, heads: h) } }
                if round > 0 { best[i] = min(best[i], t) } else { outputs[i] = y!.array }
            }
        }
        let differ = zip(outputs[0], outputs[1]).map { abs($0 - $1) }.max() ?? 0
        let flops = 4.0 * Double(b * nq * nk * h * d)
        let (first, second) = bf16 ? ("float32", "bfloat16") : ("GEMM tiles", "block")
        print(String(format: "%d×%dq×%dk×%dh×%d: %@ %.2f ms (%.0f GFLOP/s), %@ %.2f ms (%.0f GFLOP/s), %.3f×, max diff %.1e",
                     b, nq, nk, h, d, first as NSString, best[0] * 1e3, flops / best[0] / 1e9, second as NSString,
                     best[1] * 1e3, flops / best[1] / 1e9, best[1] / best[0], differ))
    }
    guard let i = arguments.firstIndex(of: "--whole") else { return }
    let name = arguments[i + 1]
    let body = makeSwiftCase(name)
    var best = [Double.infinity, .infinity]
    for round in 0...2 {
        for blocked in [false, true] {
            let t = AttentionKernel.with(blocked: blocked) { seconds(body) }
            if round > 0 { best[blocked ? 1 : 0] = min(best[blocked ? 1 : 0], t) }
        }
    }
    print(String(format: "%@: GEMM tiles %.3f s, block kernel %.3f s (%.3f×)", name, best[0], best[1], best[1] / best[0]))
}
