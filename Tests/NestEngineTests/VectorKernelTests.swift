import Foundation
import Testing
@testable import NestEngine

/// The AVX-512 kernels (CKernels) and the engine's portable Swift versions
/// must agree; the engine picks one at startup from the CPU's features.
@Suite(.serialized) struct VectorKernelTests {
    /// What the engine detected against what the system reports (AVX-512 exists only on x86).
    @Test func detectionMatchesTheCPU() throws {
        #if arch(x86_64) && os(Linux)
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        #expect(VectorKernels.available == cpuinfo.contains(" avx512f"))
        #elseif arch(x86_64) && canImport(Darwin)
        var value: Int32 = 0, size = MemoryLayout<Int32>.size
        let known = sysctlbyname("hw.optional.avx512f", &value, &size, nil, 0) == 0
        #expect(VectorKernels.available == (known && value != 0))
        #else
        #expect(!VectorKernels.available, "no AVX-512 off x86")
        #endif
    }

    /// A task's kernel switches reach the pool's worker threads (the inner
    /// loops run there), and leave other tasks alone.
    @Test func switchesReachTheWorkerThreads() {
        var seen = [Bool](repeating: true, count: 64)
        seen.withUnsafeMutableBufferPointer { buffer in
            Threads.$taskOverride.withValue(4) {
                VectorKernels.with(false) {
                    ConvolutionAlgorithm.with(winograd: false) {
                        parallelRanges(64) { r in for i in r { buffer[i] = VectorKernels.useAVX512 || ConvolutionAlgorithm.useWinograd } }
                    }
                }
            }
        }
        #expect(!seen.contains(true), "a worker saw the global switches")
        #expect(VectorKernels.with(false) { !VectorKernels.useAVX512 })
        #expect(VectorKernels.taskOverride == nil && ConvolutionAlgorithm.taskOverride == nil)
    }

    @Test func avx512AndPortableKernelsAgree() {
        // Lengths that exercise the 32-wide loop, the 16-wide masked tail and tiny rows.
        for n in [1, 7, 16, 31, 32, 33, 77, 256, 1000] {
            let values = Tensor.randn([n], seed: UInt64(n), std: 30)
            let shift = values.array.max()! - 5
            func run(_ avx: Bool) -> (exp: [Float], sum: Float, max: Float, silu: [Float]) { VectorKernels.with(avx) {
                let copy = Tensor(values.array, shape: [n])
                let sum = expShiftedInPlace(copy.data, n, shift: shift)
                return (copy.array, sum, rowMax(values.data, n), F.silu(values).array)
            } }
            let fast = run(true), portable = run(false)
            #expect(fast.max == portable.max && fast.max == values.array.max()!)
            #expect(abs(fast.sum - portable.sum) <= 1e-5 * portable.sum, "n=\(n)")
            for i in 0..<n {
                #expect(abs(fast.exp[i] - portable.exp[i]) <= 4e-7 * max(portable.exp[i], 1e-30), "exp n=\(n) i=\(i)")
                #expect(abs(fast.silu[i] - portable.silu[i]) <= 1e-6 * max(1, abs(portable.silu[i])), "silu n=\(n) i=\(i)")
            }
        }
        // Edge cases: overflow, underflow, NaN.
        let edge = Tensor([100, -100, .nan, 0, 88.3, -87.3], shape: [6])
        let out = Tensor(edge.array, shape: [6])
        _ = expShiftedInPlace(out.data, 6, shift: 0)
        #expect(out.array[0] == .infinity && out.array[1] == 0 && out.array[2].isNaN && out.array[3] == 1)
        #expect(abs(out.array[4] - expf(88.3)) <= 1e-6 * expf(88.3) && abs(out.array[5] - expf(-87.3)) <= 1e-6 * expf(-87.3))
    }

    @Test func gegluIsTheSameWithEitherKernel() {
        for width in [5, 16, 40, 77] {
            let x = Tensor.randn([3, 2 * width], seed: UInt64(width), std: 2)
            func run(_ avx: Bool) -> (y: [Float], grad: [Float]) { VectorKernels.with(avx) {
                let input = Tensor(x.array, shape: x.shape, requiresGrad: true)
                let y = F.geglu(input)
                (y * Tensor.randn(y.shape, seed: 9)).sum().backward()
                return (y.array, input.grad!.array)
            } }
            let fast = run(true), portable = run(false)
            for (a, b) in zip(fast.y + fast.grad, portable.y + portable.grad) {
                #expect(abs(a - b) <= 2e-6 * max(1, abs(b)), "width \(width): \(a) vs \(b)")
            }
        }
    }

    @Test func fusedGroupNormSiLUMatchesTheTwoSteps() {
        for (shape, groups) in [([2, 9, 7, 64], 32), ([1, 130, 96], 8), ([3, 4, 4, 32], 32)] {
            let x = Tensor.randn(shape, seed: UInt64(shape[1]), std: 3) + Tensor(scalar: 1.5)
            let c = shape.last!
            let w = Tensor.randn([c], seed: 2), b = Tensor.randn([c], seed: 3)
            for avx in [true, false] { VectorKernels.with(avx) {
                let fused = F.groupNormSiLU(x, groups: groups, weight: w, bias: b).array
                let twoSteps = F.silu(F.groupNorm(x, groups: groups, weight: w, bias: b)).array
                let worst = zip(fused, twoSteps).map { abs($0 - $1) }.max()!
                #expect(worst <= 1e-6, "\(shape) avx \(avx): \(worst)")
            } }
        }
        // With gradients recorded it is the two recorded steps.
        let x = Tensor.randn([2, 4, 4, 32], seed: 5, std: 1)
        let tracked = Tensor(x.array, shape: x.shape, requiresGrad: true)
        F.groupNormSiLU(tracked, groups: 8, weight: nil, bias: nil).sum().backward()
        #expect(tracked.grad != nil)
    }

    @Test func attentionIsTheSameWithEitherKernel() {
        let q = Tensor.randn([2, 300, 32], seed: 1), k = Tensor.randn([2, 600, 32], seed: 2), v = Tensor.randn([2, 600, 32], seed: 3)
        func run(_ avx: Bool) -> [Float] { VectorKernels.with(avx) {
            let inputs = [q, k, v].map { Tensor($0.array, shape: $0.shape, requiresGrad: true) }
            let y = F.attention(query: inputs[0], key: inputs[1], value: inputs[2], heads: 4)
            (y * Tensor.randn(y.shape, seed: 4)).sum().backward()
            return y.array + inputs.flatMap { $0.grad!.array }
        } }
        let portable = run(false), fast = run(true)
        let worst = zip(fast, portable).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-5, "largest difference \(worst)")
    }

    /// The transposed block kernel against GEMM tiles at shapes that leave
    /// partial blocks everywhere: 100 queries (48 + 48 + 4), 333 keys (not a
    /// multiple of 8 or 128), value width 12 (a partial tile of 8), and scores
    /// spread over ±80 so most probabilities underflow. The log-sum-exp it saves
    /// for the backward pass is checked through the gradients.
    @Test(arguments: [(40, 12, Float(0.3)), (24, 40, Float(12))])
    func attentionBlockKernelMatchesGEMMTiles(d: Int, dv: Int, spread: Float) {
        let heads = 3
        let q = Tensor.randn([2, 100, heads * d], seed: 11, std: spread), k = Tensor.randn([2, 333, heads * d], seed: 12)
        let v = Tensor.randn([2, 333, heads * dv], seed: 13)
        let weights = Tensor.randn([2, 100, heads * dv], seed: 14)
        func run(_ blocked: Bool) -> [Float] { AttentionKernel.with(blocked: blocked) {
            let inputs = [q, k, v].map { Tensor($0.array, shape: $0.shape, requiresGrad: true) }
            let y = F.attention(query: inputs[0], key: inputs[1], value: inputs[2], heads: heads)
            (y * weights).sum().backward()
            return y.array + inputs.flatMap { $0.grad!.array }
        } }
        let tiles = run(false), block = run(true)
        #expect(block.allSatisfy { $0.isFinite })
        // Outputs, then the gradients of q, k and v: each compared relative to its largest value.
        let sizes = [2 * 100 * heads * dv, q.count, k.count, v.count]
        var start = 0
        for (part, size) in sizes.enumerated() {
            let a = block[start..<start + size], b = tiles[start..<start + size]
            let scale = b.map { abs($0) }.max()!
            let worst = zip(a, b).map { abs($0 - $1) }.max()! / scale
            #expect(worst < 1e-5, "part \(part): largest difference \(worst) of \(scale)")
            start += size
        }
    }
}

/// Large tensors come from the reuse pool: a freed buffer of the same size
/// is handed out again, and its contents are whatever the last user left
/// (so `zeroed` must still zero it).
@Suite struct LargeBufferPoolTests {
    @Test func zeroedStorageIsZeroEvenWhenReused() {
        let count = (LargeBufferPool.threshold / 4) * 3 + 123
        for _ in 0..<3 {
            let s = Storage(count: count, zeroed: true)
            #expect(s.pointer[0] == 0 && s.pointer[count / 2] == 0 && s.pointer[count - 1] == 0)
            s.pointer.update(repeating: 7, count: count)
        }
        let small = Storage(count: 10)
        small.pointer[9] = 1
        #expect(small.pointer[9] == 1)
    }

    /// The bookkeeping on its own (the shared pool is busy with other tests):
    /// same size → the same buffer; a miss gives back idle buffers, largest
    /// first, until live + idle fits within the peak of live memory.
    @Test func aMissReturnsIdleBuffersBeforeMapping() {
        func fake(_ n: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: n << 12)! }
        var pool = LargeBufferPool.State(capacity: 100)
        let sizes = [10, 30, 30, 20, 20]
        let first = sizes.map { pool.take($0) }
        #expect(first.allSatisfy { $0.0 == nil && $0.1.isEmpty }, "an empty pool maps everything")
        let kept = sizes.enumerated().map { pool.put(fake($0.offset + 1), $0.element) }
        #expect(kept == [true, true, true, true, false], "the last one is past the capacity")
        let (hit, none) = pool.take(20)
        let afterHit = pool.idleBytes
        #expect(hit == fake(4) && none.isEmpty && afterHit == 70)
        // Live 20 + 40, idle 70, peak 110: one idle 30 must go.
        let (miss, victims) = pool.take(40)
        let afterMiss = pool.idleBytes
        #expect(miss == nil && victims.map(\.1) == [30] && afterMiss == 40)
        // Live 110 = the peak: every idle buffer goes, largest first.
        let (_, rest) = pool.take(50)
        let empty = pool.idleBytes
        #expect(rest.map(\.1) == [30, 10] && empty == 0)

        // With a slack, a miss keeps idle buffers while live + idle stays within peak + slack.
        var roomy = LargeBufferPool.State(capacity: 1000, slack: 40)
        _ = roomy.take(50)  // peak live 50
        _ = roomy.put(fake(6), 50)
        let (_, keptIdle) = roomy.take(30)  // 30 live + 50 idle = 80 ≤ 50 + 40
        let (_, evicted) = roomy.take(20)  // 50 live + 50 idle = 100 > 90: the idle 50 goes
        #expect(keptIdle.isEmpty && evicted.map(\.1) == [50])
    }
}
