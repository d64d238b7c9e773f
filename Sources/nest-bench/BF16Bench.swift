import Foundation
import NestEngine
import NestModels
import CKernels

/// `nest-bench bf16 [--size S] [--rounds N]`: the SD 1.5 UNet with float32
/// weights and the same UNet with bfloat16 weights (`storeWeightsAsBFloat16`),
/// called alternately in one process (the VM's speed drifts between
/// processes), and how far the bfloat16 output is from the float32 one.
func bf16Bench(arguments args: [String]) {
    func value(_ flag: String) -> Int? { args.firstIndex(of: flag).flatMap { Int(args[$0 + 1]) } }
    let size = value("--size") ?? 64, rounds = value("--rounds") ?? 3
    let config = try! UNet2DConditionConfig.decode(benchConfig("sd15_unet.json"), name: "sd15")
    let full = UNet2DConditionModel(config: config, seed: 1), narrow = UNet2DConditionModel(config: config, seed: 1)
    try! narrow.load(from: TensorDictionary(Dictionary(uniqueKeysWithValues: full.checkpointTensors().map { ($0.name, $0.tensor) })))
    full.freeze()
    narrow.freeze()
    if args.contains("--half") { narrow.storeWeightsAsHalf() } else if !args.contains("--same") { narrow.storeWeightsAsBFloat16() }
    let x = Tensor.randn([2, size, size, 4], seed: 2), context = Tensor.randn([2, 77, 768], seed: 3)
    var outputs: [Tensor] = []
    var times: [[Double]] = [[], [], []]
    for round in 0...rounds {
        // float32; bfloat16; bfloat16 linear layers with float32 attention.
        for (i, (unet, attention)) in [(full, true), (narrow, true), (narrow, false)].enumerated() {
            var y: Tensor? = nil
            let t = AttentionKernel.with(bfloat16: attention) {
                seconds { y = unet(sample: x, timestep: [999, 999], encoderHiddenStates: context) }
            }
            if round == 0 { outputs.append(y!) } else { times[i].append(t) }
        }
    }
    let (a, b) = (outputs[0].array, outputs[1].array)
    var diff = 0.0, norm = 0.0
    for i in a.indices {
        let d = Double(a[i]) - Double(b[i])
        diff += d * d
        norm += Double(a[i]) * Double(a[i])
    }
    let (f, n, linearOnly) = (times[0].min()!, times[1].min()!, times[2].min()!)
    print(String(format: "SD 1.5 UNet %d²: float32 %.3f s, bfloat16 %.3f s (%.2f×; with float32 attention %.3f s); relative L2 difference %.2e",
                 size, f, n, n / f, linearOnly, (diff / norm).squareRoot()))
}

/// `nest-bench bf16-gemm [--rounds N]`: one thread's GFLOP/s for sgemm and
/// for the training path's bfloat16 GEMM (`MixedPrecision`: both operands
/// rounded as packed) at the shapes a miniature-world training step
/// multiplies (linear forward NT, input gradient NN, weight gradient TN;
/// unfolded 3×3 convolutions), alternating in one process.
func bf16GEMMBench(arguments args: [String]) {
    let rounds = args.firstIndex(of: "--rounds").flatMap { Int(args[$0 + 1]) } ?? 5
    // (label, transA, transB, m, n, k)
    let shapes: [(String, Bool, Bool, Int, Int, Int)] = [
        ("linear 2048×128←128", false, true, 2048, 128, 128), ("dgrad 2048×128←128", false, false, 2048, 128, 128),
        ("wgrad 128×128←2048", true, false, 128, 128, 2048), ("linear 512×768←192", false, true, 512, 768, 192),
        ("conv 1024×64←576", false, true, 1024, 64, 576), ("conv 256×192←1728", false, true, 256, 192, 1728),
        ("conv wgrad 64×576←1024", true, false, 64, 576, 1024), ("conv wgrad 192×1728←256", true, false, 192, 1728, 256),
        ("attn QKᵀ 128×256←64", false, true, 128, 256, 64), ("attn PᵀdO 256×64←128", true, false, 256, 64, 128),
        ("sd linear 4096×320←320", false, true, 4096, 320, 320), ("sd wgrad 1280×1280←2048", true, false, 1280, 1280, 2048)]
    print("shape                       sgemm GFLOP/s   bf16 GFLOP/s   ratio")
    Threads.$taskOverride.withValue(1) {
        for (label, ta, tb, m, n, k) in shapes {
            let a = Tensor.randn([m * k], seed: 1), b = Tensor.randn([n * k], seed: 2), c = Tensor(zeros: [m * n])
            let (lda, ldb) = (ta ? m : k, tb ? k : n)
            var best = [Double.infinity, .infinity]
            for _ in 0...rounds {
                for (i, bf16) in [false, true].enumerated() {
                    let t = MixedPrecision.with(bfloat16: bf16) {
                        seconds { BLAS.gemmSerial(transA: ta, transB: tb, m: m, n: n, k: k, a: a.data, lda: lda, b: b.data, ldb: ldb, c: c.data, ldc: n) }
                    }
                    best[i] = min(best[i], t)
                }
            }
            let flop = 2.0 * Double(m * n * k) / 1e9
            print(String(format: "%-26@ %10.1f %14.1f %9.2f×", label as NSString, flop / best[0], flop / best[1], best[0] / best[1]))
        }
    }
}

/// `nest-bench packed-gemm [--rounds N]`: one thread's GFLOP/s for a linear
/// layer's product x·Wᵀ through sgemm (which packs W on every call) and
/// through the engine's float32 kernel on W packed once (gemm_f32.c), at SD
/// 1.5's linear-layer shapes, alternating in one process.
func packedGEMMBench(arguments args: [String]) {
    let rounds = args.firstIndex(of: "--rounds").flatMap { Int(args[$0 + 1]) } ?? 5
    let shapes: [(Int, Int, Int)] = [(4096, 320, 320), (4096, 2560, 320), (4096, 320, 1280), (1024, 640, 640),
                                     (256, 1280, 1280), (64, 1280, 1280), (77, 320, 768), (2048, 128, 128)]
    print("m×n←k                 sgemm GFLOP/s   packed GFLOP/s   ratio")
    Threads.$taskOverride.withValue(1) {
        for (m, n, k) in shapes {
            let a = Tensor.randn([m * k], seed: 1), w = Tensor.randn([n * k], seed: 2), c = Tensor(zeros: [m * n])
            let raw = UnsafeMutableRawPointer.allocate(byteCount: nest_f32_packed_floats(n, k) * 4, alignment: 64)
            defer { raw.deallocate() }
            let packed = raw.bindMemory(to: Float.self, capacity: nest_f32_packed_floats(n, k))
            nest_f32_pack_panels(w.data, n, k, k, packed)
            var best = [Double.infinity, .infinity]
            for _ in 0...rounds {
                best[0] = min(best[0], seconds { BLAS.gemmSerial(transB: true, m: m, n: n, k: k, a: a.data, lda: k, b: w.data, ldb: k, c: c.data, ldc: n) })
                best[1] = min(best[1], seconds { nest_f32_gemm_packed_blocked(m, n, k, a.data, k, packed, 0, (n + 31) / 32, c.data, n, 0) })
            }
            let flop = 2.0 * Double(m * n * k) / 1e9
            print(String(format: "%5d×%4d←%4d %14.1f %15.1f %9.2f×", m, n, k, flop / best[0], flop / best[1], best[0] / best[1]))
        }
    }
}
