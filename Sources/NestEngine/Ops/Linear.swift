/// Matrix products: linear layers and (batched) matmul, all through BLAS.

extension F {
    /// y = x·Wᵀ + b with PyTorch's weight layout W: [out, in]; x: [..., in].
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
        precondition(weight.rank == 2, "linear weight must be [out, in], got \(weight.shape)")
        let (outF, inF) = (weight.shape[0], weight.shape[1])
        precondition(x.shape.last == inF, "linear: input \(x.shape) does not end in \(inF)")
        let (out, m) = linearOutput(x, inFeatures: inF, outFeatures: outF, bias: bias)
        BLAS.gemm(transB: true, m: m, n: outF, k: inF, a: x.data, lda: inF, b: weight.data, ldb: inF,
                  beta: bias == nil ? 0 : 1, c: out.data, ldc: outF)
        var inputs = [x, weight]
        if let bias { inputs.append(bias) }
        return out.recorded("linear", inputs) { g in
            var gx: Tensor? = nil, gw: Tensor? = nil, gb: Tensor? = nil
            if x.needsGrad {
                gx = Tensor(uninitialized: x.shape)
                BLAS.gemm(m: m, n: inF, k: outF, a: g.data, lda: outF, b: weight.data, ldb: inF, c: gx!.data, ldc: inF)
            }
            if weight.needsGrad {
                gw = Tensor(uninitialized: weight.shape)
                BLAS.gemm(transA: true, m: outF, n: inF, k: m, a: g.data, lda: outF, b: x.data, ldb: inF,
                          c: gw!.data, ldc: inF)
            }
            if let bias, bias.needsGrad { gb = g.reshaped([m, outF]).sumToShape([outF]).reshaped(bias.shape) }
            return bias == nil ? [gx, gw] : [gx, gw, gb]
        }
    }

    /// The output of a linear layer, [..., out], with every row pre-filled
    /// with the bias when there is one (the product is then accumulated onto
    /// it), and the number of rows.
    static func linearOutput(_ x: Tensor, inFeatures inF: Int, outFeatures outF: Int, bias: Tensor?) -> (Tensor, Int) {
        if let bias { precondition(bias.count == outF, "linear bias \(bias.shape) for \(outF) outputs") }
        let m = x.count / max(inF, 1)
        let out = Tensor(uninitialized: Array(x.shape.dropLast()) + [outF])
        if let bias {
            let b = UnsafePointer(bias.data), o = out.data
            parallelRanges(m, grain: 64) { r in for i in r { (o + i * outF).update(from: b, count: outF) } }
        }
        return (out, m)
    }

    /// Matrix product over the last two dims; leading dims are batch dims and
    /// must match, or `b` may be a single 2-D matrix shared by the batch.
    public static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
        precondition(a.rank >= 2 && b.rank >= 2, "matmul needs matrices, got \(a.shape) and \(b.shape)")
        let (ar, ac) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (br, bc) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        let (m, k) = transposeA ? (ac, ar) : (ar, ac)
        let (k2, n) = transposeB ? (bc, br) : (br, bc)
        precondition(k == k2, "matmul: inner dims differ (\(a.shape) × \(b.shape))")
        let batchShape = Array(a.shape.dropLast(2))
        let batch = batchShape.reduce(1, *)
        let shared = b.rank == 2
        precondition(shared || Array(b.shape.dropLast(2)) == batchShape,
                     "matmul: batch dims of \(a.shape) and \(b.shape) differ")
        let out = Tensor(uninitialized: batchShape + [m, n])
        matmulKernel(a.data, b.data, out.data, batch: batch, m: m, n: n, k: k, ta: transposeA, tb: transposeB,
                     aCols: ac, bCols: bc, bStride: shared ? 0 : br * bc)
        return out.recorded("matmul", [a, b]) { g in
            var ga: Tensor? = nil, gb: Tensor? = nil
            if a.needsGrad {
                // dA = dC·op(B)ᵀ, laid out as A (transposed back if A was).
                ga = Tensor(uninitialized: a.shape)
                if !transposeA {
                    matmulKernel(g.data, b.data, ga!.data, batch: batch, m: m, n: k, k: n, ta: false, tb: !transposeB,
                                 aCols: n, bCols: bc, bStride: shared ? 0 : br * bc)
                } else {
                    matmulKernel(b.data, g.data, ga!.data, batch: batch, m: k, n: m, k: n, ta: transposeB, tb: true,
                                 aCols: bc, bCols: n, bStride: m * n, aStride: shared ? 0 : br * bc)
                }
            }
            if b.needsGrad {
                let gbFull = Tensor(uninitialized: shared ? [batch, br, bc] : b.shape)
                if !transposeB {
                    matmulKernel(a.data, g.data, gbFull.data, batch: batch, m: k, n: n, k: m, ta: !transposeA, tb: false,
                                 aCols: ac, bCols: n, bStride: m * n)
                } else {
                    matmulKernel(g.data, a.data, gbFull.data, batch: batch, m: n, n: k, k: m, ta: true, tb: transposeA,
                                 aCols: n, bCols: ac, bStride: ar * ac, aStride: m * n)
                }
                gb = shared ? gbFull.reshaped([batch, br * bc]).sumToShape([br * bc]).reshaped(b.shape) : gbFull
            }
            return [ga, gb]
        }
    }
}

/// Batched GEMM over contiguous matrices. `aCols`/`bCols` are the stored
/// column counts (leading dimensions); strides of 0 share a matrix across the batch.
func matmulKernel(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                  batch: Int, m: Int, n: Int, k: Int, ta: Bool, tb: Bool, aCols: Int, bCols: Int,
                  bStride: Int, aStride: Int? = nil) {
    let aStep = aStride ?? m * k
    if batch >= Threads.count && m * n * k < 1 << 22 {
        // Many small products: one per worker.
        parallelRanges(batch) { r in
            for i in r {
                BLAS.gemmSerial(transA: ta, transB: tb, m: m, n: n, k: k, a: a + i * aStep, lda: aCols,
                                b: b + i * bStride, ldb: bCols, c: c + i * m * n, ldc: n)
            }
        }
    } else {
        for i in 0..<batch {
            BLAS.gemm(transA: ta, transB: tb, m: m, n: n, k: k, a: a + i * aStep, lda: aCols,
                      b: b + i * bStride, ldb: bCols, c: c + i * m * n, ldc: n)
        }
    }
}
