import Foundation
import NestEngine

/// The inference path of one nested batch item, fused: per head and block
/// of query rows, the text logits, their softmax, P·V, and for each subject
/// its nested attention over the encoder tokens and the a_s·(v* − V_s)
/// correction, all in a few small scratch buffers and written straight into
/// the [1, N, H·d] output. The composed path (engine operations, needed for
/// gradients) permutes Q, K, V and the probabilities into head-major copies
/// and makes half a dozen [N, H·d] temporaries per subject; at SD 1.5's
/// 64×64 latents that was most of Nested Attention's cost over the plain UNet.
///
/// Same arithmetic as `nestedItem` (residual form, λ per head, log w on the
/// weighted tokens' logits, v* added where the subject keeps V_s); q: [1, N, H·d], k, v: [1, T, H·d].
func nestedItemFused(query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
                     subjects: [(token: Int, subject: NestedSubject)], item: Int,
                     options: NestedAttentionOptions) -> Tensor {
    let (n, width, t) = (q.shape[1], q.shape[2], k.shape[1])
    let d = width / heads
    let scale = 1 / Float(d).squareRoot()
    var logBias = [Float](repeating: 0, count: t)
    for (token, subject) in subjects {
        let w = (subject.options ?? options).tokenWeight
        if w != 1 { logBias[token] = Float(log(Double(w))) }
    }
    let weighted = logBias.contains { $0 != 0 }
    // Each subject's keys and values for this item, contiguous [M, H·d].
    let nested = subjects.map { s in
        (token: s.token, keys: batchItem(s.subject.keys, item), values: batchItem(s.subject.values, item),
         lambda: (s.subject.options ?? options).valueNormalization, keep: s.subject.addsValue)
    }
    let maxM = nested.map { $0.keys.shape[1] }.max() ?? 0
    let rowBlock = 64
    let blocks = (n + rowBlock - 1) / rowBlock
    let out = Tensor(uninitialized: [1, n, width])
    let workers = Swift.max(1, Threads.count)
    let scratchSize = rowBlock * (t + maxM + d)
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: workers * scratchSize)
    defer { scratch.deallocate() }
    let (qp, kp, vp, op) = (q.data, k.data, v.data, out.data)
    parallelTasks(heads * blocks) { worker, task in
        let h = task % heads, r0 = (task / heads) * rowBlock
        let rows = Swift.min(rowBlock, n - r0)
        let logits = scratch + worker * scratchSize
        let nestedLogits = logits + rowBlock * t
        let vStar = nestedLogits + rowBlock * maxM
        let qh = qp + r0 * width + h * d, oh = op + r0 * width + h * d
        // Text attention: P = softmax(Q Kᵀ/√d + log w), out = P·V.
        BLAS.gemmSerial(transB: true, m: rows, n: t, k: d, alpha: scale, a: qh, lda: width, b: kp + h * d, ldb: width,
                        c: logits, ldc: t)
        for r in 0..<rows { softmaxRow(logits + r * t, t, bias: weighted ? logBias : nil) }
        BLAS.gemmSerial(m: rows, n: d, k: t, a: logits, lda: t, b: vp + h * d, ldb: width, c: oh, ldc: width)
        for s in nested {
            let m = s.keys.shape[1]
            BLAS.gemmSerial(transB: true, m: rows, n: m, k: d, alpha: scale, a: qh, lda: width, b: s.keys.data + h * d,
                            ldb: width, c: nestedLogits, ldc: m)
            for r in 0..<rows { softmaxRow(nestedLogits + r * m, m, bias: nil) }
            BLAS.gemmSerial(m: rows, n: d, k: m, a: nestedLogits, lda: m, b: s.values.data + h * d, ldb: width, c: vStar, ldc: d)
            let vS = vp + s.token * width + h * d
            var target: Float = 0
            if let lambda = s.lambda {
                var sum: Float = 0
                for j in 0..<d { sum += vS[j] * vS[j] }
                target = (sum + 1e-12).squareRoot() * lambda
            }
            for r in 0..<rows {
                let row = vStar + r * d, o = oh + r * width
                var gain: Float = 1
                if s.lambda != nil {
                    var sum: Float = 0
                    for j in 0..<d { sum += row[j] * row[j] }
                    gain = target / (sum + 1e-12).squareRoot()
                }
                let a = logits[r * t + s.token]
                if s.keep {
                    for j in 0..<d { o[j] += a * gain * row[j] }
                } else {
                    for j in 0..<d { o[j] += a * (gain * row[j] - vS[j]) }
                }
            }
        }
    }
    return out
}

/// In-place softmax of one row of `count` logits, with an optional additive bias.
@inline(__always) private func softmaxRow(_ x: UnsafeMutablePointer<Float>, _ count: Int, bias: [Float]?) {
    if let bias { for j in 0..<count { x[j] += bias[j] } }
    let total = expShiftedInPlace(x, count, shift: rowMax(x, count))
    scaleInPlace(x, count, 1 / total)
}
