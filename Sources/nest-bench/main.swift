import Foundation
import NestEngine

/// Engine micro-benchmarks on Stable Diffusion–sized shapes.
///
/// Run in release mode, ideally without the environment's OpenBLAS overrides:
///   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE swift run -c release nest-bench
/// Prints GFLOP/s for sgemm, 3×3 and 1×1 convolutions and attention, and the
/// conv/sgemm ratio the engine aims for (≥ 70%).

func seconds(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

/// Best time of `repeats` runs after one warm-up.
func best(_ repeats: Int, _ body: () -> Void) -> Double {
    body()
    var t = Double.infinity
    for _ in 0..<repeats { t = min(t, seconds(body)) }
    return t
}

func report(_ name: String, flops: Double, time: Double, extra: String = "") {
    let line = String(format: "%-44@ %9.2f ms %9.1f GFLOP/s", name as NSString, time * 1e3, flops / time / 1e9)
    print(line + (extra.isEmpty ? "" : "  " + extra))
}

let args = CommandLine.arguments
if args.count > 1 && args[1] == "compare" { compare(arguments: args); exit(0) }
if args.count > 1 && args[1] == "nested-overhead" { nestedOverhead(arguments: args); exit(0) }
if args.count > 1 && args[1] == "nested-layer" { nestedLayerCost(arguments: args); exit(0) }
if args.count > 1 && args[1] == "conv-thresholds" { convThresholds(arguments: args); exit(0) }
if args.count > 1 && args[1] == "bf16" { bf16Bench(arguments: args); exit(0) }
if args.count > 1 && args[1] == "bf16-gemm" { bf16GEMMBench(arguments: args); exit(0) }
if args.count > 1 && args[1] == "packed-gemm" { packedGEMMBench(arguments: args); exit(0) }
if args.count > 1 && args[1] == "attention" { attentionBench(arguments: args); exit(0) }
if args.count > 1 && args[1] == "winograd4" { winograd4(arguments: args); exit(0) }
if args.count > 1 && args[1] == "avx2" { avx2Bench(arguments: args); exit(0) }
if args.count > 1 && args[1] == "optimizer" { optimizerBench(arguments: args); exit(0) }
if args.count > 2 && args[1] == "case" {
    guard (compareCases + extraCases).contains(args[2]) else {
        FileHandle.standardError.write(Data("nest-bench: unknown case '\(args[2])' (known: \((compareCases + extraCases).joined(separator: ", ")))\n".utf8))
        exit(2)
    }
    let n = args.firstIndex(of: "--repeats").flatMap { Int(args[$0 + 1]) } ?? 3
    runSwiftCase(args[2], repeats: n)
    exit(0)
}
let repeats = args.contains("--quick") ? 2 : 8
print("nest-bench: \(Threads.count) thread(s); OPENBLAS_CORETYPE=\(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "unset")")

// Large sgemm: the machine's reference throughput.
let n = 2048
let a = Tensor.randn([n, n], seed: 1), b = Tensor.randn([n, n], seed: 2), c = Tensor(zeros: [n, n])
let gemmTime = best(repeats) {
    BLAS.gemm(m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n, c: c.data, ldc: n)
}
let gemmFlops = 2.0 * Double(n * n * n)
report("sgemm 2048×2048×2048", flops: gemmFlops, time: gemmTime)
var gemmRate = gemmFlops / gemmTime

// Convolutions at SD 1.5's first resolution level (64×64 latents, 320 channels).
// The machine's speed drifts, so sgemm is re-measured before each convolution
// and the ratio uses the best sgemm seen so far (the conservative choice).
let convShapes = args.contains("--small-convs") ? [(8, 8, 128, 128, 3), (8, 8, 192, 192, 3), (8, 8, 320, 128, 3), (8, 4, 192, 192, 3), (8, 4, 384, 192, 3), (8, 16, 4, 64, 3), (2, 16, 640, 640, 3), (2, 16, 128, 128, 3), (1, 32, 320, 320, 3), (1, 32, 64, 64, 3)]
    : [(1, 64, 320, 320, 3), (2, 64, 320, 320, 3), (2, 32, 640, 640, 3), (1, 64, 320, 320, 1),
                                    (8, 16, 64, 64, 3), (8, 8, 192, 192, 3), (8, 16, 128, 64, 3)]
for (batch, size, cin, cout, k) in convShapes {
    let x = Tensor.randn([batch, size, size, cin], seed: 3)
    let w = Tensor.randn([cout, cin, k, k], seed: 4, std: 0.02)
    let bias = Tensor.randn([cout], seed: 5)
    gemmRate = max(gemmRate, gemmFlops / best(1) {
        BLAS.gemm(m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n, c: c.data, ldc: n)
    })
    var y: Tensor? = nil
    let t = best(repeats) { y = F.conv2d(x, weight: w, bias: bias, stride: 1, padding: k / 2) }
    _ = y
    let flops = 2.0 * Double(batch * size * size * cout * cin * k * k)
    let rate = flops / t
    report("conv2d \(k)×\(k) \(batch)×\(size)×\(size)×\(cin)→\(cout)", flops: flops, time: t,
           extra: String(format: "%.0f%% of best sgemm (%.0f GFLOP/s)", 100 * rate / gemmRate, gemmRate / 1e9))
}

// Attention at SD 1.5's largest self-attention: 4096 tokens, 8 heads of 40.
do {
    let (tokens, heads, dim) = (4096, 8, 40)
    let q = Tensor.randn([1, tokens, heads * dim], seed: 6)
    let k = Tensor.randn([1, tokens, heads * dim], seed: 7)
    let v = Tensor.randn([1, tokens, heads * dim], seed: 8)
    var out: Tensor? = nil
    let t = best(repeats) { out = F.attention(query: q, key: k, value: v, heads: heads) }
    out = nil
    // Peak extra memory of one call beyond inputs and output.
    let (result, peak) = MemoryStats.measurePeak { F.attention(query: q, key: k, value: v, heads: heads) }
    let extra = peak - result.count * 4
    let scoreMatrix = tokens * tokens * 4
    let flops = 4.0 * Double(tokens * tokens * heads * dim)
    report("attention 4096q×4096k×8h×40d", flops: flops, time: t,
           extra: String(format: "scratch %.1f MiB (one 4096² score matrix: %.0f MiB)",
                         Double(extra) / 1048576, Double(scoreMatrix) / 1048576))
    // Cross-attention against 77 text tokens.
    let kt = Tensor.randn([1, 77, heads * dim], seed: 9), vt = Tensor.randn([1, 77, heads * dim], seed: 10)
    let tc = best(repeats) { out = F.attention(query: q, key: kt, value: vt, heads: heads) }
    report("attention 4096q×77k×8h×40d", flops: 4.0 * Double(tokens * 77 * heads * dim), time: tc)
}

// Whole-model timings, on request (add --quick to shorten the engine ones above):
//   --vae-decode                 SD VAE decoder at 512×512
//   sdxl-unet [--batch N]        real-size SDXL UNet at 128×128 latents
if args.contains("--vae-decode") { vaeDecodeBench(repeats: 1) }
if args.contains("sdxl-unet") { benchSDXLUNet(arguments: args) }
