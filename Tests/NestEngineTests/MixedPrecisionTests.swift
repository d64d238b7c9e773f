import Foundation
import Testing
@testable import NestEngine
import CKernels

/// bfloat16 mixed precision for training: the general bfloat16 GEMM
/// computes alpha·op(A)·op(B) + beta·C from the operands rounded to
/// bfloat16 (every transposition, partial tiles and panels, odd K, K and N
/// split in blocks, strided operands); `MixedPrecision.with` routes the
/// engine's GEMMs there for its task only, on the workers too; and a layer's
/// gradients under it stay close to float32's. Where the CPU has no
/// AVX512_BF16 the scope must change nothing, bit for bit.
@Suite struct MixedPrecisionTests {
    static let r = BFloat16WeightsTests.roundedBF16

    static func values(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SeededRandom(seed: seed)
        return (0..<count).map { _ in rng.nextFloat() * 2 - 1 }
    }

    /// alpha·op(A)·op(B) + beta·C in float64 from bfloat16-rounded operands, and Σ|terms| per entry.
    static func reference(ta: Bool, tb: Bool, m: Int, n: Int, k: Int, alpha: Float, a: [Float], lda: Int,
                          b: [Float], ldb: Int, beta: Float, c: [Float], ldc: Int) -> ([Double], [Double]) {
        var out = [Double](repeating: 0, count: m * n), scale = out
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0, mag = 0.0
                for t in 0..<k {
                    let x = Double(r(ta ? a[t * lda + i] : a[i * lda + t])), y = Double(r(tb ? b[j * ldb + t] : b[t * ldb + j]))
                    s += x * y; mag += abs(x * y)
                }
                let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
                out[i * n + j] = Double(alpha) * s + old
                scale[i * n + j] = abs(Double(alpha)) * mag + abs(old)
            }
        }
        return (out, scale)
    }

    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func generalGEMMIsTheProductOfRoundedOperands(_ ta: Bool, _ tb: Bool) throws {
        try #require(MixedPrecision.available, "this CPU has no AVX512_BF16; the scope's no-op is checked below")
        // (m, n, k, alpha, beta): partial 14-row tiles and 32-column panels, odd K;
        // K over two 2,560-value blocks and N over two 1,024-column chunks.
        for (m, n, k, alpha, beta) in [(31, 45, 77, Float(1), Float(0)), (5, 1030, 2601, 0.5, 1), (17, 33, 3, -2, 0.25)] {
            let (ar, ac) = ta ? (k, m) : (m, k), (br, bc) = tb ? (n, k) : (k, n)
            let (lda, ldb, ldc) = (ac + 3, bc + 1, n + 2)  // strided operands
            let a = Self.values(ar * lda, seed: 1), b = Self.values(br * ldb, seed: 2)
            var c = Self.values(m * ldc, seed: 3)
            let (expected, scale) = Self.reference(ta: ta, tb: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                                                   b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            let before = c
            nest_bf16_gemm_general(ta ? 1 : 0, tb ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, &c, ldc)
            var worst = 0.0
            for i in 0..<m {
                for j in 0..<n { worst = max(worst, abs(Double(c[i * ldc + j]) - expected[i * n + j]) / max(scale[i * n + j], 1e-30)) }
                // The padding between rows is never written.
                #expect(c[(i * ldc + n)..<(i * ldc + ldc)] == before[(i * ldc + n)..<(i * ldc + ldc)])
            }
            // float32 sums of k products: a few ulps of the magnitude, far below one bfloat16 step (2^-8).
            #expect(worst < 1e-5, "m \(m) n \(n) k \(k) ta \(ta) tb \(tb): worst relative error \(worst)")
        }
    }

    @Test func theScopeRoutesGEMMsOnWorkersAndOnlyForItsTask() {
        let (m, n, k) = (256, 96, 200)
        let a = Tensor(Self.values(m * k, seed: 4), shape: [m, k]), w = Tensor(Self.values(n * k, seed: 5), shape: [n, k])
        let plain = Threads.$taskOverride.withValue(2) { F.linear(a, weight: w).array }
        let mixed = Threads.$taskOverride.withValue(2) { MixedPrecision.with(bfloat16: true) { F.linear(a, weight: w).array } }
        let after = Threads.$taskOverride.withValue(2) { F.linear(a, weight: w).array }
        #expect(after == plain, "the scope leaked past its end")
        guard MixedPrecision.available else {
            #expect(mixed == plain, "without AVX512_BF16 the scope must leave float32 as it is")
            return
        }
        // Row chunks ran on two workers: every row is the rounded operands' product.
        let ra = a.array.map(Self.r), rw = w.array.map(Self.r)
        var worstMixed = 0.0, worstPlain = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0, mag = 0.0
                for t in 0..<k { s += Double(ra[i * k + t]) * Double(rw[j * k + t]); mag += abs(Double(ra[i * k + t] * rw[j * k + t])) }
                worstMixed = max(worstMixed, abs(Double(mixed[i * n + j]) - s) / mag)
                worstPlain = max(worstPlain, abs(Double(plain[i * n + j]) - s) / mag)
            }
        }
        #expect(worstMixed < 1e-5, "bfloat16 products: \(worstMixed)")
        #expect(worstPlain > 1e-4, "float32 products should differ from the rounded ones: \(worstPlain)")
    }

    /// A small network's loss and gradients under bfloat16 products, against float32.
    @Test func gradientsStayCloseToFloat32() {
        let x = Tensor(Self.values(64 * 8 * 8 * 16, seed: 6), shape: [64, 8, 8, 16])
        let conv = Tensor(Self.values(32 * 16 * 9, seed: 7).map { $0 * 0.1 }, shape: [32, 16, 3, 3])
        let w1 = Tensor(Self.values(48 * 32, seed: 8).map { $0 * 0.2 }, shape: [48, 32])
        let w2 = Tensor(Self.values(32 * 48, seed: 9).map { $0 * 0.2 }, shape: [32, 48])
        func run(_ bf16: Bool) -> [[Float]] {
            let params = [conv, w1, w2].map { p -> Tensor in let t = Tensor(p.array, shape: p.shape); t.requiresGrad = true; return t }
            return Threads.$taskOverride.withValue(2) {
                MixedPrecision.with(bfloat16: bf16) {
                    Autograd.withGrad {
                        let h = F.conv2d(x, weight: params[0], padding: 1).reshaped([64, 64, 32])
                        let q = F.linear(h, weight: params[1]), kv = F.linear(F.gelu(q), weight: params[2])
                        let att = F.attention(query: kv, key: kv, value: kv, heads: 2)
                        let loss = F.mseLoss(att, h)
                        loss.backward()
                        return [loss.array] + params.map { $0.grad!.array }
                    }
                }
            }
        }
        let full = run(false), mixed = run(true)
        for (name, (f, b)) in zip(["loss", "conv", "w1", "w2"], zip(full, mixed)) {
            let diff = zip(f, b).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            let norm = f.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
            let rel = diff / max(norm, 1e-30)
            #expect(rel < 0.02, "\(name): relative L2 \(rel) between bfloat16 and float32")
            if MixedPrecision.available && name != "loss" {
                #expect(rel > 1e-6, "\(name): bfloat16 products should change the gradient a little")
            } else if !MixedPrecision.available {
                #expect(rel == 0, "\(name): without AVX512_BF16 the scope must change nothing")
            }
        }
    }
}
