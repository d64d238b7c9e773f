#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKernels

/// Multi-head scaled dot-product attention with an online (tiled) softmax.
///
/// Layout: q [B, Nq, H·d], k [B, Nk, H·d], v [B, Nk, H·dv] — heads side by
/// side in the last dim, exactly as linear projections produce them, so no
/// permute is needed. Output [B, Nq, H·dv].
///
/// Each worker takes blocks of queries of one head and streams over blocks of
/// keys, keeping a running max and sum per query (fp32), so memory is
/// O(queries·d) plus a per-worker tile, never a full Nq×Nk score matrix.
/// Backward recomputes scores from the saved per-query log-sum-exp.

let attentionQueryBlock = 128
// 128×256 score tiles (128 KiB) stay in L2; measured best of 32–256 × 256–2048 at SD 1.5 shapes.
let attentionKeyBlock = 256

/// Which forward kernel attention uses where AVX-512 is available: the
/// transposed block kernel (default) or tiles through the general GEMM.
/// The choice is read on the calling thread only, so a task-local suffices.
public enum AttentionKernel {
    @TaskLocal static var blocked = true
    /// Runs `body` with the block kernel on or off for this task (benchmarks compare both).
    public static func with<T>(blocked on: Bool, _ body: () throws -> T) rethrows -> T {
        try $blocked.withValue(on, operation: body)
    }
    @TaskLocal static var bfloat16 = true
    /// Runs `body` with bfloat16 attention allowed or not for this task (benchmarks compare both).
    public static func with<T>(bfloat16 on: Bool, _ body: () throws -> T) rethrows -> T {
        try $bfloat16.withValue(on, operation: body)
    }
}

struct AttentionShape {
    let b, nq, nk, heads, d, dv: Int
    let scale: Float
    let causal: Bool
    var qStride: Int { heads * d }
    var vStride: Int { heads * dv }
    var queryBlocks: Int { (nq + attentionQueryBlock - 1) / attentionQueryBlock }
}

extension F {
    /// `bfloat16`: where the CPU has AVX512_BF16 and no gradient is recorded,
    /// both products run in bfloat16 with float32 softmax and sums (see
    /// attention_bf16.c; layers whose weights are bfloat16 ask for it).
    public static func attention(query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
                                 scale: Float? = nil, causal: Bool = false, bfloat16: Bool = false) -> Tensor {
        precondition(q.rank == 3 && k.rank == 3 && v.rank == 3, "attention expects [B, N, H·d] tensors")
        precondition(q.shape[0] == k.shape[0] && k.shape[0] == v.shape[0], "attention batch sizes differ")
        precondition(k.shape[1] == v.shape[1], "attention: \(k.shape[1]) keys but \(v.shape[1]) values")
        precondition(q.shape[2] % heads == 0 && v.shape[2] % heads == 0 && q.shape[2] == k.shape[2],
                     "attention: widths \(q.shape[2]), \(k.shape[2]), \(v.shape[2]) do not split into \(heads) heads")
        let d = q.shape[2] / heads
        let s = AttentionShape(b: q.shape[0], nq: q.shape[1], nk: k.shape[1], heads: heads, d: d,
                               dv: v.shape[2] / heads, scale: scale ?? 1 / Float(d).squareRoot(), causal: causal)
        let out = Tensor(uninitialized: [s.b, s.nq, s.vStride])
        let recording = Autograd.isEnabled && (q.needsGrad || k.needsGrad || v.needsGrad)
        let lse = recording ? Tensor(uninitialized: [s.b, s.heads, s.nq]) : nil
        if bfloat16 && !recording && !causal && BFloat16Weights.multiplies && AttentionKernel.bfloat16 {
            attentionForwardBF16(q.data, k.data, v.data, out.data, s)
            return out
        }
        attentionForward(q.data, k.data, v.data, out.data, lse?.data, s)
        guard recording, let lse else { return out }
        return out.recorded("attention", [q, k, v]) { g in
            let (gq, gk, gv) = attentionBackward(q, k, v, out, lse, g, s)
            return [q.needsGrad ? gq : nil, k.needsGrad ? gk : nil, v.needsGrad ? gv : nil]
        }
    }
}

func attentionForward(_ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
                      _ out: UnsafeMutablePointer<Float>, _ lse: UnsafeMutablePointer<Float>?, _ s: AttentionShape) {
    if !s.causal && AttentionKernel.blocked {
        if VectorKernels.useAVX512 {
            return attentionForwardBlocked(q, k, v, out, lse, s, queries: nest_attention_block_queries(),
                                           scratchFloats: nest_attention_scratch_floats, kernel: nest_attention_block)
        }
        if VectorKernels.useAVX2 {
            return attentionForwardBlocked(q, k, v, out, lse, s, queries: nest_attention_block_queries_avx2(),
                                           scratchFloats: nest_attention_scratch_floats_avx2, kernel: nest_attention_block_avx2)
        }
    }
    let qb = attentionQueryBlock, kb = min(attentionKeyBlock, s.nk)
    let tasks = s.b * s.heads * s.queryBlocks
    let workers = workerCount(tasks)
    let scores = ScratchBuffers(count: workers, floats: qb * kb)
    let acc = ScratchBuffers(count: workers, floats: qb * s.dv + 2 * qb)
    _ = parallelWorkers(tasks) { worker, range in
        let sp = scores[worker], op = acc[worker]
        let runningMax = op + qb * s.dv, runningSum = runningMax + qb
        for task in range {
            let blk = task % s.queryBlocks, bh = task / s.queryBlocks
            let head = bh % s.heads, batch = bh / s.heads
            let q0 = blk * qb, rows = min(qb, s.nq - q0)
            let qPtr = q + (batch * s.nq + q0) * s.qStride + head * s.d
            op.update(repeating: 0, count: rows * s.dv)
            runningMax.update(repeating: -.infinity, count: rows)
            runningSum.update(repeating: 0, count: rows)
            // With a causal mask, keys after the block's last query are never seen.
            let keyEnd = s.causal ? min(s.nk, q0 + rows) : s.nk
            var k0 = 0
            while k0 < keyEnd {
                let cols = min(kb, keyEnd - k0)
                BLAS.gemmSerial(transB: true, m: rows, n: cols, k: s.d, alpha: s.scale,
                                a: qPtr, lda: s.qStride, b: k + (batch * s.nk + k0) * s.qStride + head * s.d, ldb: s.qStride,
                                c: sp, ldc: kb)
                for i in 0..<rows {
                    let row = sp + i * kb
                    var valid = cols
                    if s.causal { valid = max(0, min(cols, q0 + i + 1 - k0)) }
                    let m = max(runningMax[i], rowMax(row, valid))
                    if m == -.infinity { row.update(repeating: 0, count: cols); continue }
                    let correction = runningMax[i] == -.infinity ? 0 : expf(runningMax[i] - m)
                    runningMax[i] = m
                    let sum = expShiftedInPlace(row, valid, shift: m)
                    if valid < cols { (row + valid).update(repeating: 0, count: cols - valid) }
                    runningSum[i] = runningSum[i] * correction + sum
                    if correction != 1 { scaleInPlace(op + i * s.dv, s.dv, correction) }
                }
                BLAS.gemmSerial(m: rows, n: s.dv, k: cols, a: sp, lda: kb,
                                b: v + (batch * s.nk + k0) * s.vStride + head * s.dv, ldb: s.vStride,
                                beta: 1, c: op, ldc: s.dv)
                k0 += cols
            }
            for i in 0..<rows {
                let inv: Float = runningSum[i] > 0 ? 1 / runningSum[i] : 0
                let src = op + i * s.dv
                let dst = out + (batch * s.nq + q0 + i) * s.vStride + head * s.dv
                for c in 0..<s.dv { dst[c] = src[c] * inv }
                lse?[(batch * s.heads + head) * s.nq + q0 + i] = runningMax[i] + logf(runningSum[i])
            }
        }
    }
}

/// CKernels' transposed block kernel, one of the AVX-512 (attention_avx512.c,
/// blocks of 48 queries) or AVX2 build (attention_avx2.c, 24): blocks of
/// queries of one head are the unit of work.
typealias AttentionBlockKernel = @convention(c) (UnsafePointer<Float>?, Int, UnsafePointer<Float>?, Int,
                                                 UnsafePointer<Float>?, Int, UnsafeMutablePointer<Float>?, Int,
                                                 UnsafeMutablePointer<Float>?, Int, Int, Int, Int, Float,
                                                 UnsafeMutablePointer<Float>?) -> Void

func attentionForwardBlocked(_ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
                             _ out: UnsafeMutablePointer<Float>, _ lse: UnsafeMutablePointer<Float>?, _ s: AttentionShape,
                             queries qb: Int, scratchFloats: (Int, Int) -> Int, kernel: AttentionBlockKernel) {
    FLOPCounter.add(2 * s.b * s.heads * s.nq * s.nk * (s.d + s.dv))
    let blocks = (s.nq + qb - 1) / qb
    let tasks = s.b * s.heads * blocks
    let scratch = ScratchBuffers(count: min(Threads.count, tasks), floats: scratchFloats(s.d, s.dv))
    parallelTasks(tasks) { worker, task in
        do {
            let blk = task % blocks, bh = task / blocks
            let head = bh % s.heads, batch = bh / s.heads
            let q0 = blk * qb, rows = min(qb, s.nq - q0)
            kernel(q + (batch * s.nq + q0) * s.qStride + head * s.d, s.qStride,
                                 k + batch * s.nk * s.qStride + head * s.d, s.qStride,
                                 v + batch * s.nk * s.vStride + head * s.dv, s.vStride,
                                 out + (batch * s.nq + q0) * s.vStride + head * s.dv, s.vStride,
                                 lse.map { $0 + (batch * s.heads + head) * s.nq + q0 },
                                 rows, s.nk, s.d, s.dv, s.scale, scratch[worker])
        }
    }
}

/// attentionForwardBlocked's bfloat16 counterpart: keys and values of every
/// (batch item, head) are packed to bfloat16 pairs once, then blocks of 48
/// queries run `nest_attention_block_bf16`.
func attentionForwardBF16(_ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
                          _ out: UnsafeMutablePointer<Float>, _ s: AttentionShape) {
    FLOPCounter.add(2 * s.b * s.heads * s.nq * s.nk * (s.d + s.dv))
    let dp = (s.d + 1) / 2, pairs = (s.nk + 1) / 2
    let keyWords = s.nk * dp, valueWords = pairs * s.dv, heads = s.b * s.heads
    let packed = Storage(count: heads * (keyWords + valueWords))
    let words = UnsafeMutableRawPointer(packed.pointer).bindMemory(to: UInt32.self, capacity: heads * (keyWords + valueWords))
    parallelRanges(heads) { r in
        for bh in r {
            let head = bh % s.heads, batch = bh / s.heads
            nest_attention_pack_keys_bf16(k + batch * s.nk * s.qStride + head * s.d, s.qStride, s.nk, s.d,
                                          words + bh * keyWords)
            nest_attention_pack_values_bf16(v + batch * s.nk * s.vStride + head * s.dv, s.vStride, s.nk, s.dv,
                                            words + heads * keyWords + bh * valueWords)
        }
    }
    let qb = nest_attention_block_queries()
    let blocks = (s.nq + qb - 1) / qb
    let tasks = heads * blocks
    let scratch = ScratchBuffers(count: min(Threads.count, tasks), floats: nest_attention_bf16_scratch_floats(s.d, s.dv))
    let keys = UnsafePointer(words), values = UnsafePointer(words + heads * keyWords)
    parallelTasks(tasks) { worker, task in
        let blk = task % blocks, bh = task / blocks
        let head = bh % s.heads, batch = bh / s.heads
        let q0 = blk * qb, rows = min(qb, s.nq - q0)
        nest_attention_block_bf16(q + (batch * s.nq + q0) * s.qStride + head * s.d, s.qStride,
                                  keys + bh * keyWords, values + bh * valueWords,
                                  out + (batch * s.nq + q0) * s.vStride + head * s.dv, s.vStride, nil,
                                  rows, s.nk, s.d, s.dv, s.scale, scratch[worker])
    }
    withExtendedLifetime(packed) {}
}

func attentionBackward(_ q: Tensor, _ k: Tensor, _ v: Tensor, _ out: Tensor, _ lse: Tensor, _ gOut: Tensor,
                       _ s: AttentionShape) -> (Tensor, Tensor, Tensor) {
    let gq = Tensor(zeros: q.shape), gk = Tensor(zeros: k.shape), gv = Tensor(zeros: v.shape)
    let qb = attentionQueryBlock, kb = min(attentionKeyBlock, s.nk)
    let tasks = s.b * s.heads
    let workers = workerCount(tasks)
    let pBuf = ScratchBuffers(count: workers, floats: qb * kb)
    let dpBuf = ScratchBuffers(count: workers, floats: qb * kb)
    let dBuf = ScratchBuffers(count: workers, floats: qb)
    let qp = UnsafePointer(q.data), kp = UnsafePointer(k.data), vp = UnsafePointer(v.data)
    let op = UnsafePointer(out.data), gop = UnsafePointer(gOut.data), lp = UnsafePointer(lse.data)
    let gqp = gq.data, gkp = gk.data, gvp = gv.data
    // One (batch, head) per task: each writes only its own head's columns.
    _ = parallelWorkers(tasks) { worker, range in
        let p = pBuf[worker], dp = dpBuf[worker], dRow = dBuf[worker]
        for bh in range {
            let head = bh % s.heads, batch = bh / s.heads
            var q0 = 0
            while q0 < s.nq {
                let rows = min(qb, s.nq - q0)
                let qOff = (batch * s.nq + q0) * s.qStride + head * s.d
                let oOff = (batch * s.nq + q0) * s.vStride + head * s.dv
                // D_i = Σ_c dO_ic · O_ic
                for i in 0..<rows {
                    var acc: Float = 0
                    for c in 0..<s.dv { acc += gop[oOff + i * s.vStride + c] * op[oOff + i * s.vStride + c] }
                    dRow[i] = acc
                }
                let keyEnd = s.causal ? min(s.nk, q0 + rows) : s.nk
                var k0 = 0
                while k0 < keyEnd {
                    let cols = min(kb, keyEnd - k0)
                    let kOff = (batch * s.nk + k0) * s.qStride + head * s.d
                    let vOff = (batch * s.nk + k0) * s.vStride + head * s.dv
                    BLAS.gemmSerial(transB: true, m: rows, n: cols, k: s.d, alpha: s.scale,
                                    a: qp + qOff, lda: s.qStride, b: kp + kOff, ldb: s.qStride, c: p, ldc: kb)
                    for i in 0..<rows {
                        let l = lp[(batch * s.heads + head) * s.nq + q0 + i]
                        let row = p + i * kb
                        let valid = s.causal ? max(0, min(cols, q0 + i + 1 - k0)) : cols
                        _ = expShiftedInPlace(row, valid, shift: l)
                        if valid < cols { (row + valid).update(repeating: 0, count: cols - valid) }
                    }
                    // dV += Pᵀ·dO ; dP = dO·Vᵀ
                    BLAS.gemmSerial(transA: true, m: cols, n: s.dv, k: rows, a: p, lda: kb, b: gop + oOff, ldb: s.vStride,
                                    beta: 1, c: gvp + vOff, ldc: s.vStride)
                    BLAS.gemmSerial(transB: true, m: rows, n: cols, k: s.dv, a: gop + oOff, lda: s.vStride,
                                    b: vp + vOff, ldb: s.vStride, c: dp, ldc: kb)
                    // dS = P ⊙ (dP - D)
                    for i in 0..<rows {
                        let pr = p + i * kb, dr = dp + i * kb, di = dRow[i]
                        for j in 0..<cols { dr[j] = pr[j] * (dr[j] - di) }
                    }
                    // dQ += scale·dS·K ; dK += scale·dSᵀ·Q
                    BLAS.gemmSerial(m: rows, n: s.d, k: cols, alpha: s.scale, a: dp, lda: kb, b: kp + kOff, ldb: s.qStride,
                                    beta: 1, c: gqp + qOff, ldc: s.qStride)
                    BLAS.gemmSerial(transA: true, m: cols, n: s.d, k: rows, alpha: s.scale, a: dp, lda: kb,
                                    b: qp + qOff, ldb: s.qStride, beta: 1, c: gkp + kOff, ldc: s.qStride)
                    k0 += cols
                }
                q0 += rows
            }
        }
    }
    return (gq, gk, gv)
}
