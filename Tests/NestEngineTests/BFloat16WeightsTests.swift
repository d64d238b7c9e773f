import Foundation
import Testing
@testable import NestEngine
import CKernels

/// bfloat16 weights: rounding is IEEE round-to-nearest-even (checked against
/// a reference that picks the nearer neighbour), packing keeps every value,
/// and the bfloat16 GEMM computes the product of the rounded operands with
/// float32 sums, across the kernel's edges (partial 14-row tiles and
/// 32-column blocks, odd K, K split in blocks, rows or column blocks split
/// across workers). Without AVX512_BF16 (as on some CI machines) the same
/// layers widen the rounded weight instead, and that path is checked.
@Suite struct BFloat16WeightsTests {
    /// The nearer of the two bfloat16 values around x; ties to the even one.
    static func roundedBF16(_ x: Float) -> Float {
        if x.isNaN || x.isInfinite { return x }
        let low = Float(bitPattern: x.bitPattern & 0xffff_0000)
        let high = Float(bitPattern: (x.bitPattern & 0xffff_0000) &+ 0x1_0000)  // away from zero
        // Past the largest finite value the next step up is ±2^128 (which rounds to infinity).
        let highValue = high.isInfinite ? (x < 0 ? -0x1p128 : 0x1p128) : Double(high)
        let dLow = abs(Double(x) - Double(low)), dHigh = abs(highValue - Double(x))
        if dLow != dHigh { return dLow < dHigh ? low : high }
        return (low.bitPattern >> 16) & 1 == 0 ? low : high
    }

    @Test func roundingIsNearestEvenAndPackingKeepsEveryValue() {
        var rng = SeededRandom(seed: 5)
        var values: [Float] = [0, -0.0, 1, -1, 3.4e38, -3.4e38, 3.3961e38, .infinity, -.infinity, 1e-40, -1e-42,
                               Float(bitPattern: 0x3f80_8000), Float(bitPattern: 0x3f81_8000), Float(bitPattern: 0x3f80_8001)]
        while values.count < 77 * 45 {
            let magnitude = Float(pow(2.0, Double(rng.nextInt(below: 60)) - 30))
            values.append((rng.nextFloat() * 2 - 1) * magnitude)
        }
        // 45 rows (one full 32-column block and a partial one) of 77 values (odd K).
        let w = Tensor(values, shape: [45, 77])
        let packed = BFloat16Weights(w)
        #expect(packed.n == 45 && packed.k == 77 && packed.shape == [45, 77])
        let widened = packed.widened().array
        let expected = values.map(Self.roundedBF16)
        let mismatches = zip(widened, expected).enumerated().filter { $0.element.0 != $0.element.1 }
        #expect(mismatches.isEmpty, "first mismatches: \(mismatches.prefix(3).map { (values[$0.offset], $0.element) })")
        // The element-wise conversion agrees, and NaN stays NaN.
        var halves = [UInt16](repeating: 0, count: values.count + 1)
        let source = values + [.nan]
        nest_f32_to_bf16(source, &halves, source.count)
        var back = [Float](repeating: 0, count: source.count)
        nest_bf16_to_f32(halves, &back, source.count)
        #expect(Array(back.dropLast()) == expected && back.last!.isNaN)
    }

    /// y = x·Wᵀ + b in float64 from the given operands.
    static func reference(_ x: [Float], _ w: [Float], _ bias: [Float]?, m: Int, n: Int, k: Int) -> [Double] {
        var out = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = Double(bias?[j] ?? 0)
                for t in 0..<k { s += Double(x[i * k + t]) * Double(w[j * k + t]) }
                out[i * n + j] = s
            }
        }
        return out
    }

    @Test(arguments: [(3, 40, 77, false), (29, 70, 64, true), (300, 64, 96, true), (20, 256, 512, false),
                      (17, 33, 2600, true), (230, 96, 128, false)])
    func linearMultipliesTheRoundedOperands(m: Int, n: Int, k: Int, withBias: Bool) {
        // The bfloat16 kernel wherever the CPU has BF16 (even where float32 would be faster) ...
        MixedPrecision.$assumePays.withValue(true) { checkLinear(m: m, n: n, k: k, withBias: withBias) }
        // ... and the path CPUs without BF16 take (widened weights), checked on every machine.
        BFloat16Weights.$widenOnly.withValue(true) { checkLinear(m: m, n: n, k: k, withBias: withBias) }
    }

    func checkLinear(m: Int, n: Int, k: Int, withBias: Bool) {
        let x = Tensor.randn([m, k], seed: UInt64(m * 7 + k)), weight = Tensor.randn([n, k], seed: UInt64(n), std: 0.1)
        let bias: Tensor? = withBias ? Tensor.randn([n], seed: 9) : nil
        let packed = BFloat16Weights(weight)
        let y = F.linear(x, bfloat16: packed, bias: bias)
        #expect(y.shape == [m, n])
        let w = weight.array.map(Self.roundedBF16)
        // With BF16 hardware the activations are rounded too; without, only the weight is.
        let xs = BFloat16Weights.multiplies ? x.array.map(Self.roundedBF16) : x.array
        let ref = Self.reference(xs, w, bias?.array, m: m, n: n, k: k)
        let scale = (ref.map { $0 * $0 }.reduce(0, +) / Double(ref.count)).squareRoot()
        let worst = zip(y.array, ref).map { abs(Double($0) - $1) }.max()!
        // float32 sums of k products: a few ulp of the row's magnitude.
        #expect(worst < 2e-6 * Double(k).squareRoot() * scale, "worst \(worst) at scale \(scale)")
        // Accumulating into C (a bias row) equals adding it afterwards.
        if withBias, let bias {
            let plain = F.linear(x, bfloat16: packed)
            let sum = (0..<m * n).map { plain.array[$0] + bias.array[$0 % n] }
            #expect(zip(y.array, sum).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) })
        }
    }

    /// Under the kernel path wherever the CPU has BF16 (see `linearMultipliesTheRoundedOperands`).
    @Test func layersStoreBFloat16AndKeepGradientsOnTheFloat32Path() {
        MixedPrecision.$assumePays.withValue(true) { checkLayers() }
    }

    func checkLayers() {
        func model() -> (Linear, Conv2d, Conv2d) {
            ParameterSeeds.scoped(13) {
                (Linear(64, 96), Conv2d(48, 40, kernelSize: 1), Conv2d(48, 40, kernelSize: 3, padding: 1))
            }
        }
        let (linear, pointwise, conv) = model(), (refLinear, refPointwise, refConv) = model()
        for m in [linear, pointwise, conv, refLinear, refPointwise, refConv] as [Module] { m.freeze() }
        for w in [refLinear.weight, refPointwise.weight, refConv.weight] {
            for i in 0..<w.count { w.data[i] = Self.roundedBF16(w.data[i]) }
        }
        let saved = [linear, pointwise, conv].map { ($0 as Module).storeWeightsAsBFloat16(minimumCount: 64) }.reduce(0, +)
        #expect(saved == 2 * (64 * 96 + 48 * 40 + 48 * 9 * 40))
        #expect(linear.bfloat16Weight != nil && pointwise.bfloat16Weight != nil && linear.weight.released)
        #expect(conv.bfloat16Weight != nil && conv.halfWeight == nil)
        #expect(linear.computeWeight.array == refLinear.weight.array)
        #expect(conv.computeWeight.array == refConv.weight.array)
        // A small image: the 3×3 convolution unfolds and multiplies in bfloat16 (activations rounded too).
        let image = Tensor.randn([2, 5, 7, 48], seed: 3)
        let direct = conv(image).array, exact = refConv(image).array
        let rms = (exact.map { Double($0 * $0) }.reduce(0, +) / Double(exact.count)).squareRoot()
        let worstDirect = zip(direct, exact).map { Double(abs($0 - $1)) }.max()!
        #expect(worstDirect < 0.02 * rms, "worst \(worstDirect), rms \(rms)")
        #expect(BFloat16Weights.multiplies ? direct != exact : direct == exact)
        // Where Winograd applies (≥ 512 2×2 tiles), the rounded weight is widened and products stay float32.
        let large = Tensor.randn([2, 32, 32, 48], seed: 5)
        #expect(conv(large).array == refConv(large).array)
        // The 1×1 convolution is the linear layer over channels.
        let viaLinear = F.linear(image, bfloat16: pointwise.bfloat16Weight!, bias: pointwise.bias)
        #expect(pointwise(image).array == viaLinear.array)
        let refOut = refPointwise(image).array
        #expect(zip(pointwise(image).array, refOut).allSatisfy { abs($0 - $1) <= 0.02 * max(1, abs($1)) })
        // An input that needs a gradient takes the float32 path with the rounded weight, and gets its gradient.
        let x = Tensor.randn([3, 64], seed: 4)
        x.requiresGrad = true
        let ref = Tensor(x.array, shape: x.shape)
        ref.requiresGrad = true
        Autograd.withGrad {
            linear(x).sum().backward()
            refLinear(ref).sum().backward()
        }
        #expect(x.grad != nil && x.grad!.array == ref.grad!.array)
        // A small weight stays float32; a trainable one is left alone.
        let small = Linear(4, 4), trainable = Linear(128, 128)
        small.freeze()
        trainable.weight.requiresGrad = true
        #expect(small.storeWeightsAsBFloat16() == 0 && trainable.storeWeightsAsBFloat16() == 0)
    }
}

/// Attention with bfloat16 products: against float64 attention over the
/// bfloat16-rounded (scaled) queries, keys and values, the only further
/// rounding is of the probabilities (8 bits), so the outputs agree to a few
/// thousandths of the values' scale; odd key counts and head widths, key
/// counts across several softmax steps and partial query blocks included.
@Suite struct BFloat16AttentionTests {
    @Test(arguments: [(100, 77, 2, 40), (50, 300, 3, 33), (7, 129, 1, 64)])
    func matchesRoundedReference(nq: Int, nk: Int, heads: Int, d: Int) {
        MixedPrecision.$assumePays.withValue(true) { check(nq: nq, nk: nk, heads: heads, d: d) }
    }

    func check(nq: Int, nk: Int, heads: Int, d: Int) {
        let b = 2, scale = 1 / Float(d).squareRoot()
        let q = Tensor.randn([b, nq, heads * d], seed: 1, std: 2), k = Tensor.randn([b, nk, heads * d], seed: 2, std: 2)
        let v = Tensor.randn([b, nk, heads * d], seed: 3)
        let out = F.attention(query: q, key: k, value: v, heads: heads, bfloat16: true).array
        let plain = F.attention(query: q, key: k, value: v, heads: heads).array
        // Without BF16 hardware (or with it switched off) the float32 path runs, bit for bit.
        let widened = BFloat16Weights.$widenOnly.withValue(true) {
            F.attention(query: q, key: k, value: v, heads: heads, bfloat16: true).array
        }
        #expect(widened == plain)
        guard BFloat16Weights.multiplies else { #expect(out == plain); return }
        let r = BFloat16WeightsTests.roundedBF16
        let (qa, ka, va) = (q.array, k.array, v.array)
        var worst = 0.0
        for batch in 0..<b {
            for h in 0..<heads {
                for i in 0..<nq {
                    let qi = (0..<d).map { Double(r(qa[(batch * nq + i) * heads * d + h * d + $0] * scale)) }
                    let scores = (0..<nk).map { j in
                        (0..<d).reduce(0.0) { $0 + qi[$1] * Double(r(ka[(batch * nk + j) * heads * d + h * d + $1])) }
                    }
                    let top = scores.max()!
                    let weights = scores.map { exp($0 - top) }, total = weights.reduce(0, +)
                    for c in 0..<d {
                        var acc = 0.0
                        for j in 0..<nk { acc += weights[j] * Double(r(va[(batch * nk + j) * heads * d + h * d + c])) }
                        let index = (batch * nq + i) * heads * d + h * d + c
                        worst = max(worst, abs(acc / total - Double(out[index])))
                    }
                }
            }
        }
        #expect(worst < 5e-3, "worst \(worst) (values ~1)")
        #expect(out != plain, "the bfloat16 kernel ran")
    }
}
