import NestEngine
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct TensorTests {
    @Test func reshapeIsAViewPermuteIsACopy() {
        let t = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        let r = t.reshaped([3, -1])
        #expect(r.shape == [3, 2])
        #expect(r.storage === t.storage)
        let p = t.permuted([1, 0])
        #expect(p.storage !== t.storage)
        #expect(p.array == [1, 4, 2, 5, 3, 6])
    }

    @Test func creation() {
        #expect(Tensor(zeros: [2, 2]).array == [0, 0, 0, 0])
        #expect(Tensor(ones: [3]).array == [1, 1, 1])
        #expect(Tensor.randn([100], seed: 5).array == Tensor.randn([100], seed: 5).array)
        #expect(Tensor.randn([100], seed: 5).array != Tensor.randn([100], seed: 6).array)
        let n = Tensor.randn([20000], seed: 1)
        let mean = n.mean().item
        let variance = F.square(n - mean).mean().item
        #expect(abs(mean) < 0.03 && abs(variance - 1) < 0.05, "randn mean \(mean) variance \(variance)")
        let u = Tensor.uniform([1000], low: -2, high: 3, seed: 2).array
        #expect(u.allSatisfy { $0 >= -2 && $0 < 3 })
    }

    @Test func broadcastShapes() {
        #expect(broadcastShape([2, 1, 4], [3, 1]) == [2, 3, 4])
        #expect(broadcastShape([5], []) == [5])
        let a = Tensor([1, 2, 3], shape: [3, 1]), b = Tensor([10, 20], shape: [2])
        #expect((a + b).array == [11, 21, 12, 22, 13, 23])
    }

    @Test func vectorMathAccuracy() {
        var worstExp: Float = 0, worstErf: Float = 0, worstTanh: Float = 0
        var x: Float = -20
        while x <= 20 {
            worstExp = max(worstExp, abs(fastExp(x) - expf(x)) / expf(x))
            worstErf = max(worstErf, abs(fastErf(x) - erff(x)))
            worstTanh = max(worstTanh, abs(fastTanh(x) - tanhf(x)))
            x += 0.0137
        }
        #expect(worstExp < 4e-7, "exp relative error \(worstExp)")
        #expect(worstErf < 3e-7, "erf absolute error \(worstErf)")
        #expect(worstTanh < 3e-7, "tanh absolute error \(worstTanh)")
        #expect(fastExp(-100) == 0)
        #expect(fastExp(100) == .infinity)
        #expect(fastExp(.nan).isNaN)
    }

    @Test func threadCountDoesNotChangeResults() {
        let x = Tensor.randn([2, 17, 13, 8], seed: 3), w = Tensor.randn([6, 8, 3, 3], seed: 4)
        let q = Tensor.randn([2, 300, 16], seed: 5), k = Tensor.randn([2, 520, 16], seed: 6)
        func run() -> [Float] {
            F.conv2d(x, weight: w, stride: 1, padding: 1).array
                + F.groupNorm(x, groups: 4, weight: nil, bias: nil).array
                + F.attention(query: q, key: k, value: k, heads: 2).array
        }
        // Task-local: other tests running beside this one keep their worker count.
        let one = Threads.$taskOverride.withValue(1) { run() }
        let three = Threads.$taskOverride.withValue(3) { run() }
        // Tiles differ with the worker count, so BLAS may round differently; values must agree closely.
        let worst = zip(one, three).map { abs($0 - $1) / max(1, abs($0)) }.max() ?? 0
        #expect(one.count == three.count && worst < 1e-5, "results differ by \(worst) between 1 and 3 threads")
    }

    @Test func attentionNeverBuildsTheScoreMatrix() {
        // 2048 × 2048 scores per head would be 16 MiB; the streaming kernel needs far less.
        let q = Tensor.randn([1, 2048, 32], seed: 1), k = Tensor.randn([1, 2048, 32], seed: 2)
        let (out, peak) = MemoryStats.measurePeak { F.attention(query: q, key: k, value: k, heads: 2) }
        let scratch = peak - out.count * 4
        #expect(scratch < 4 << 20, "attention used \(scratch) bytes of scratch")
    }
}
