import Foundation
import NestEngine

/// What the machine under a `compare` table can do, printed above it so a
/// reader can tell whether its bfloat16 rows ran native bfloat16 arithmetic:
/// the CPU's vector extensions from /proc/cpuinfo, a measured sgemm rate and,
/// where the CPU has AVX512_BF16, the bfloat16 GEMM's rate and how its dot
/// products compare with float32 FMA (on Intel Xeons without AMX they are slower).
struct MachinePeaks {
    let model: String
    let flags: Set<String>
    let sgemmGFLOPs: Double
    /// The training path's bfloat16 GEMM at the same size (nil without AVX512_BF16).
    let bfloat16GFLOPs: Double?

    static func measure() -> MachinePeaks {
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let lines = info.split(separator: "\n")
        func field(_ name: String) -> String? {
            lines.first { $0.hasPrefix(name) }.flatMap { $0.split(separator: ":", maxSplits: 1).last }
                .map { $0.trimmingCharacters(in: .whitespaces) }
        }
        return MachinePeaks(model: field("model name") ?? "unknown CPU",
                            flags: Set((field("flags") ?? "").split(separator: " ").map(String.init)),
                            sgemmGFLOPs: sgemmRate(),
                            bfloat16GFLOPs: MixedPrecision.available ? MixedPrecision.with(bfloat16: true) { sgemmRate() } : nil)
    }

    /// Best of three 2048³ sgemm calls after a warm-up, in GFLOP/s (the engine's thread count).
    static func sgemmRate() -> Double {
        let n = 2048
        let a = Tensor.randn([n, n], seed: 1), b = Tensor.randn([n, n], seed: 2), c = Tensor(zeros: [n, n])
        let time = best(3) { BLAS.gemm(m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n, c: c.data, ldc: n) }
        return 2 * Double(n * n * n) / time / 1e9
    }

    /// Native bfloat16 arithmetic: AVX512_BF16 dot products or AMX tiles.
    var nativeBFloat16: Bool { flags.contains("avx512_bf16") || flags.contains("amx_bf16") }

    var summary: String {
        func has(_ flag: String) -> String { flags.contains(flag) ? "yes" : "no" }
        let meaning = nativeBFloat16 ? "bf16 rows can use native bfloat16 arithmetic"
                                     : "no native bfloat16: bf16 rows compute in float32, converted or emulated"
        return "machine: \(model); AVX-512F \(has("avx512f")), AVX512_BF16 \(has("avx512_bf16")), AMX-BF16 \(has("amx_bf16")) "
            + "(\(meaning)); sgemm 2048³ \(Int(sgemmGFLOPs.rounded())) GFLOP/s on \(Threads.count) thread(s)"
            + (bfloat16GFLOPs.map { rate in
                String(format: ", bfloat16 GEMM 2048³ %.0f GFLOP/s (VDPBF16PS at %.2f× the float32 FMA rate: bfloat16 products %@)",
                       rate, MixedPrecision.rateOverFloat32, MixedPrecision.pays ? "used" : "not used where they are a choice")
            } ?? "")
    }
}
