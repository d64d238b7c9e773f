import CKernels

/// A matrix weight W[N][K] kept as bfloat16, packed once for the bfloat16
/// GEMM (gemm_bf16.c): y = x·Wᵀ then multiplies bfloat16 pairs with float32
/// sums, twice float32's multiply rate where the CPU has AVX512_BF16. The
/// activations are rounded to bfloat16 as they are packed, per call.
///
/// Half a float32 weight's memory, like `HalfWeights`, but with 8 bits of
/// mantissa instead of 11: each product is off by up to about 2^-8
/// relative, the sums stay float32. Inference only. On CPUs without BF16 the
/// same rounded weight is widened to float32 for each use instead.
public final class BFloat16Weights: @unchecked Sendable {
    /// The weight's own shape ([out, in] or [out, in, kh, kw]).
    public let shape: [Int]
    /// Rows (outputs) and columns (inputs) of the matrix it multiplies as.
    public let n: Int, k: Int
    let words: UnsafeMutableRawPointer

    /// Whether this CPU multiplies in bfloat16 (else `widened()` serves).
    public static let hardware = nest_kernels_bf16() != 0
    /// Tests take the widening path on BF16 hardware too, for their task only.
    @TaskLocal static var widenOnly = false
    /// Whether products run in bfloat16 here and now: on CPUs whose bfloat16
    /// dot products are faster than their float32 FMA (`MixedPrecision.pays`);
    /// elsewhere the rounded weights keep their memory saving and are widened
    /// for float32 products (on an Intel Xeon without AMX, bfloat16 products
    /// made the SD 1.5 UNet 1.7× slower than float32).
    public static var multiplies: Bool { hardware && !widenOnly && MixedPrecision.pays }

    /// Rounds `tensor` (viewed as [shape[0], rest]) to bfloat16, nearest even.
    public init(_ tensor: Tensor) {
        shape = tensor.shape
        n = shape[0]
        k = tensor.count / max(n, 1)
        let count = max(nest_bf16_packed_words(n, k), 1)
        words = .allocate(byteCount: count * 4, alignment: 64)
        let out = words.bindMemory(to: UInt32.self, capacity: count)
        nest_bf16_pack_weights(UnsafePointer(tensor.data), n, k, k, out)
    }

    deinit { words.deallocate() }

    var packed: UnsafePointer<UInt32> { UnsafePointer(words.assumingMemoryBound(to: UInt32.self)) }

    /// A new float32 tensor holding the rounded values.
    public func widened() -> Tensor {
        let out = Tensor(uninitialized: shape)
        nest_bf16_unpack_weights(packed, n, k, out.data)
        return out
    }

    /// c[m × n] (+)= a[m × k] · Wᵀ on the engine's workers: rows split when
    /// there are many, else column blocks. Requires `hardware`.
    func multiply(_ a: UnsafePointer<Float>, rows m: Int, lda: Int, into c: UnsafeMutablePointer<Float>, ldc: Int,
                  accumulate: Bool) {
        precondition(Self.multiplies, "bfloat16 GEMM needs a CPU with AVX512_BF16")
        if m == 0 || n == 0 { return }
        FLOPCounter.add(2 * m * n * k)
        let blocks = (n + nest_bf16_column_block() - 1) / nest_bf16_column_block()
        let (packed, n, k) = (self.packed, n, k), acc: Int32 = accumulate ? 1 : 0
        let workers = Threads.count
        if workers <= 1 || m * n * k < 1 << 18 {
            nest_bf16_gemm(m, n, k, a, lda, packed, 0, blocks, c, ldc, acc)
        } else if m >= 112 * workers {
            // Row chunks in multiples of the kernel's 14-row tile.
            let per = ((m + workers - 1) / workers + 13) / 14 * 14
            parallelRanges((m + per - 1) / per) { chunks in
                for chunk in chunks {
                    let r0 = chunk * per, rows = min(m, r0 + per) - r0
                    nest_bf16_gemm(rows, n, k, a + r0 * lda, lda, packed, 0, blocks, c + r0 * ldc, ldc, acc)
                }
            }
        } else {
            parallelRanges(blocks) { r in
                nest_bf16_gemm(m, n, k, a, lda, packed, r.lowerBound, r.upperBound, c, ldc, acc)
            }
        }
    }
}

extension F {
    /// y = x·Wᵀ + b with W held as bfloat16 (see `BFloat16Weights`); no
    /// gradient is recorded. Without BF16 hardware, the widened weight.
    public static func linear(_ x: Tensor, bfloat16 weight: BFloat16Weights, bias: Tensor? = nil) -> Tensor {
        let (outF, inF) = (weight.n, weight.k)
        precondition(x.shape.last == inF, "linear: input \(x.shape) does not end in \(inF)")
        if !BFloat16Weights.multiplies {
            return linear(x, weight: weight.widened().reshaped([outF, inF]), bias: bias)
        }
        let (out, m) = linearOutput(x, inFeatures: inF, outFeatures: outF, bias: bias)
        weight.multiply(x.data, rows: m, lda: inF, into: out.data, ldc: outF, accumulate: bias != nil)
        return out
    }
}

extension F {
    /// A convolution with a bfloat16 weight [O, C, kh, kw] as one bfloat16
    /// GEMM over the unfolded input (im2col), for the convolutions Winograd
    /// does not take (small images, strides): bfloat16 products on the
    /// direct convolution's work. No gradient is recorded. Nil where the
    /// caller should take the float32 path instead (Winograd applies, or no
    /// BF16 hardware).
    static func conv2d(_ x: Tensor, bfloat16 weight: BFloat16Weights, bias: Tensor?, stride: Int,
                       padding: Int) -> Tensor? {
        guard BFloat16Weights.multiplies, x.rank == 4, weight.shape.count == 4, weight.shape[1] == x.shape[3] else { return nil }
        let g = ConvGeometry(n: x.shape[0], h: x.shape[1], w: x.shape[2], c: x.shape[3], o: weight.shape[0],
                             kh: weight.shape[2], kw: weight.shape[3], stride: stride,
                             padTop: padding, padLeft: padding, padBottom: padding, padRight: padding)
        guard g.ho > 0 && g.wo > 0, !ConvolutionAlgorithm.winogradApplies(g) else { return nil }
        if let bias { precondition(bias.count == g.o, "conv2d bias \(bias.shape) for \(g.o) outputs") }
        let rows = g.n * g.ho * g.wo
        let col = Tensor(uninitialized: [rows, g.k])
        let (xp, cp) = (UnsafePointer(x.data), col.data)
        parallelRanges(rows, grain: 16) { r in im2col(xp, g, rows: r, col: cp + r.lowerBound * g.k) }
        return linear(col, bfloat16: weight, bias: bias).reshaped([g.n, g.ho, g.wo, g.o])
    }
}

extension Module {
    /// Stores every Linear and Conv2d weight of at least `minimumCount`
    /// values as packed bfloat16 (see `BFloat16Weights`). Linear layers, 1×1
    /// convolutions and convolutions Winograd does not take multiply in
    /// bfloat16; Winograd convolutions widen the rounded weight and keep
    /// float32 products (their transforms would magnify bfloat16's rounding
    /// of the transformed operands ~10×). Biases, norms and embeddings stay
    /// float32; weights that train are left alone. Returns the bytes of
    /// float32 storage given back.
    @discardableResult
    public func storeWeightsAsBFloat16(minimumCount: Int = 4096) -> Int {
        var saved = 0
        for module in allModules() {
            if let linear = module as? Linear, linear.halfWeight == nil, linear.bfloat16Weight == nil,
               !linear.weight.requiresGrad, linear.weight.count >= minimumCount {
                linear.bfloat16Weight = BFloat16Weights(linear.weight)
                saved += linear.weight.count * 2
                linear.weight.releaseStorage()
            } else if let conv = module as? Conv2d, conv.halfWeight == nil, conv.bfloat16Weight == nil,
                      !conv.weight.requiresGrad, conv.weight.count >= minimumCount {
                conv.bfloat16Weight = BFloat16Weights(conv.weight)
                saved += conv.weight.count * 2
                conv.weight.releaseStorage()
            }
        }
        return saved
    }
}
