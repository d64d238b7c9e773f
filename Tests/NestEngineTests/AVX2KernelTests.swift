import Foundation
import CKernels
import Testing
@testable import NestEngine

/// The AVX2 builds of the CKernels hot loops, called directly (so they are
/// checked on AVX-512 machines too, where the engine would not pick them),
/// against the engine's portable Swift versions.
@Suite struct AVX2KernelTests {
    /// Lengths around the 8- and 16-wide loops and their masked tails.
    static let lengths = [1, 3, 8, 9, 15, 16, 17, 33, 77, 320]

    /// Whether this CPU runs AVX2 code; where it does not, checks that the
    /// CPU indeed lacks AVX2 or FMA (so a broken detection still fails).
    static func canRun() throws -> Bool {
        if VectorKernels.availableAVX2 { return true }
        #if arch(x86_64) && os(Linux)
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        #expect(!(cpuinfo.contains(" avx2") && cpuinfo.contains(" fma")), "AVX2 and FMA present but not detected")
        #endif
        return false
    }

    @Test(arguments: lengths)
    func rowKernelsMatchThePortableOnes(n: Int) throws {
        guard try Self.canRun() else { return }
        let x = Tensor.randn([n], seed: UInt64(n), std: 30).array
        let portable = VectorKernels.with(false) { () -> (max: Float, exp: [Float], sum: Float, silu: [Float]) in
            var e = x
            let sum = e.withUnsafeMutableBufferPointer { expShiftedInPlace($0.baseAddress!, n, shift: x.max()! - 5) }
            return (rowMax(x, n), e, sum, F.silu(Tensor(x, shape: [n])).array)
        }
        #expect(nest_row_max_avx2(x, n) == portable.max)
        var e = x, silu = [Float](repeating: .nan, count: n + 1)
        let sum = e.withUnsafeMutableBufferPointer { nest_exp_shift_sum_avx2($0.baseAddress!, n, x.max()! - 5) }
        #expect(abs(sum - portable.sum) <= 1e-5 * portable.sum, "n=\(n)")
        nest_silu_avx2(x, &silu, n)
        #expect(silu[n].isNaN, "wrote past n")
        for i in 0..<n {
            #expect(abs(e[i] - portable.exp[i]) <= 4e-7 * max(portable.exp[i], 1e-30), "exp n=\(n) i=\(i)")
            #expect(abs(silu[i] - portable.silu[i]) <= 1e-6 * max(1, abs(portable.silu[i])), "silu n=\(n) i=\(i)")
        }
    }

    @Test func expEdgesMatchTheEngine() throws {
        guard try Self.canRun() else { return }
        var edge: [Float] = [100, -100, .nan, 0, 88.3, -87.3, 88.376, -87.33, 88.38]
        _ = nest_exp_shift_sum_avx2(&edge, edge.count, 0)
        #expect(edge[0] == .infinity && edge[1] == 0 && edge[2].isNaN && edge[3] == 1 && edge[8] == .infinity)
        for (i, x) in [(4, Float(88.3)), (5, -87.3), (6, 88.376), (7, -87.33)] {
            #expect(abs(edge[i] - expf(x)) <= 1e-6 * expf(x), "exp(\(x)) = \(edge[i])")
        }
    }

    @Test(arguments: [5, 8, 16, 40, 77])
    func gegluAndAffineSiLUMatchThePortableOnes(width: Int) throws {
        guard try Self.canRun() else { return }
        let rows = 3
        let x = Tensor.randn([rows, 2 * width], seed: UInt64(width), std: 2), dy = Tensor.randn([rows, width], seed: 7)
        let portable = VectorKernels.with(false) { () -> (y: [Float], grad: [Float]) in
            let input = Tensor(x.array, shape: x.shape, requiresGrad: true)
            let y = F.geglu(input)
            (y * dy).sum().backward()
            return (y.array, input.grad!.array)
        }
        var y = [Float](repeating: 0, count: rows * width), grad = [Float](repeating: 0, count: rows * 2 * width)
        nest_geglu_forward_avx2(x.array, &y, rows, width)
        nest_geglu_backward_avx2(x.array, dy.array, &grad, rows, width)
        for (a, b) in zip(y + grad, portable.y + portable.grad) {
            #expect(abs(a - b) <= 2e-6 * max(1, abs(b)), "width \(width): \(a) vs \(b)")
        }
        // y = silu(x·scale + shift) against the portable affine step and SiLU.
        let v = Array(x.array[0..<width]), scale = Array(x.array[width..<2 * width]), shift = Array(dy.array[0..<width])
        var fused = [Float](repeating: 0, count: width)
        nest_affine_silu_avx2(v, scale, shift, &fused, width)
        let expected = VectorKernels.with(false) { F.silu(Tensor((0..<width).map { v[$0] * scale[$0] + shift[$0] }, shape: [width])).array }
        for (a, b) in zip(fused, expected) { #expect(abs(a - b) <= 1e-6 * max(1, abs(b)), "affine silu width \(width)") }
    }

    /// The AVX2 attention block kernel, called directly over every block of a head, against
    /// the engine's GEMM-tile attention: partial query blocks (100 = 4 × 24 + 4), a key count
    /// no tile divides (333), a value width with a partial 4-channel tile (13), scores spread
    /// wide enough that most probabilities underflow, and the log-sum-exp it saves.
    @Test(arguments: [(40, 13, Float(0.3)), (24, 40, Float(12))])
    func attentionBlockKernelMatchesGEMMTiles(d: Int, dv: Int, spread: Float) throws {
        guard try Self.canRun() else { return }
        let (nq, nk) = (100, 333)
        let q = Tensor.randn([nq, d], seed: 21, std: spread).array, k = Tensor.randn([nk, d], seed: 22).array
        let v = Tensor.randn([nk, dv], seed: 23).array
        let scale = 1 / Float(d).squareRoot()
        let expected = AttentionKernel.with(blocked: false) {
            F.attention(query: Tensor(q, shape: [1, nq, d]), key: Tensor(k, shape: [1, nk, d]),
                        value: Tensor(v, shape: [1, nk, dv]), heads: 1).array
        }
        let qb = nest_attention_block_queries_avx2()
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: nest_attention_scratch_floats_avx2(d, dv) * 4, alignment: 64)
        defer { scratch.deallocate() }
        var out = [Float](repeating: .nan, count: nq * dv), lse = [Float](repeating: .nan, count: nq)
        for q0 in stride(from: 0, to: nq, by: qb) {
            let rows = min(qb, nq - q0)
            out.withUnsafeMutableBufferPointer { o in lse.withUnsafeMutableBufferPointer { l in
                nest_attention_block_avx2(q.withUnsafeBufferPointer { $0.baseAddress! + q0 * d }, d, k, d, v, dv,
                                          o.baseAddress! + q0 * dv, dv, l.baseAddress! + q0, rows, nk, d, dv, scale,
                                          scratch.assumingMemoryBound(to: Float.self))
            } }
        }
        let worst = zip(out, expected).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-5 * expected.map { abs($0) }.max()!, "largest difference \(worst)")
        for i in 0..<nq {
            let scores = (0..<nk).map { j in (0..<d).reduce(Float(0)) { $0 + q[i * d + $1] * k[j * d + $1] } * scale }
            let m = scores.max()!
            let reference = m + log(scores.reduce(Float(0)) { $0 + exp($1 - m) })
            #expect(abs(lse[i] - reference) <= 1e-4 * max(1, abs(reference)), "lse of query \(i): \(lse[i]) vs \(reference)")
        }
    }
}
