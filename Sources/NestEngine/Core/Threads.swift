import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How many worker threads the engine's own kernels (norms, elementwise,
/// im2col, softmax, attention, and the GEMM split) use.
///
/// Default: the `NEST_THREADS` environment variable if set, else the number
/// of cores. BLAS itself is kept single-threaded: the engine splits GEMMs
/// across these workers so that one pool owns the cores.
public enum Threads {
    static let configured = Atomic<Int>(Threads.defaultCount())

    /// A worker count for the current task only (tests run in parallel: a
    /// change to the global count would leak into every other test's kernels,
    /// and bit-exact comparisons there would fail at random).
    @TaskLocal public static var taskOverride: Int? = nil

    public static var count: Int {
        get { taskOverride.map { max(1, $0) } ?? configured.load(ordering: .relaxed) }
        set { configured.store(max(1, newValue), ordering: .relaxed) }
    }

    static func defaultCount() -> Int {
        EngineConfiguration.current.threads
    }
}

/// Splits `0..<total` into at most `Threads.count` contiguous ranges of at
/// least `grain` items and runs `body` on each, in parallel. Small jobs run
/// inline so tiny tensors pay no dispatch cost.
@inline(__always)
public func parallelRanges(_ total: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
    if total <= 0 { return }
    let workers = min(Threads.count, max(1, total / max(grain, 1)))
    if workers <= 1 { body(0..<total); return }
    let chunk = (total + workers - 1) / workers
    withoutActuallyEscaping(body) { body in
        let switches = KernelSwitches.current
        forkJoin(workers) { w in
            let start = w * chunk
            let end = min(total, start + chunk)
            if start < end { switches.bound { body(start..<end) } }
        }
    }
}

/// Runs `body(worker, range)`: like `parallelRanges` but also passes the
/// worker index so callers can use per-worker scratch buffers.
public func parallelWorkers(_ total: Int, grain: Int = 1, _ body: (Int, Range<Int>) -> Void) -> Int {
    if total <= 0 { return 0 }
    let workers = min(Threads.count, max(1, total / max(grain, 1)))
    if workers <= 1 { body(0, 0..<total); return 1 }
    let chunk = (total + workers - 1) / workers
    withoutActuallyEscaping(body) { body in
        let switches = KernelSwitches.current
        forkJoin(workers) { w in
            let start = w * chunk
            let end = min(total, start + chunk)
            if start < end { switches.bound { body(w, start..<end) } }
        }
    }
    return workers
}

/// Number of workers `parallelWorkers` would use for this job.
public func workerCount(_ total: Int, grain: Int = 1) -> Int {
    if total <= 0 { return 0 }
    return min(Threads.count, max(1, total / max(grain, 1)))
}

/// Runs `body(worker, task)` for every task in `0..<tasks`, handing tasks out
/// one at a time from a shared counter, so a worker that is slowed down (or
/// preempted) does not hold up the others. Use for coarse tasks (GEMM tiles,
/// attention blocks) where static splitting leaves cores idle.
public func parallelTasks(_ tasks: Int, _ body: (Int, Int) -> Void) {
    if tasks <= 0 { return }
    let workers = min(Threads.count, tasks)
    if workers <= 1 { for t in 0..<tasks { body(0, t) }; return }
    let next = Atomic<Int>(0)
    let switches = KernelSwitches.current
    withoutActuallyEscaping(body) { body in
        forkJoin(workers) { w in
            switches.bound {
                while true {
                    let t = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    if t >= tasks { break }
                    body(w, t)
                }
            }
        }
    }
}

/// The caller's task-local kernel switches (vector kernels, Winograd, bfloat16 products),
/// bound again on each worker thread, so the inner loops a kernel runs on
/// the pool see what its caller chose. Tests flip these per task: a global
/// flip would change the arithmetic of every test running beside them.
struct KernelSwitches {
    let avx512: Bool?, winograd: Bool?, bfloat16: Bool?

    static var current: KernelSwitches {
        KernelSwitches(avx512: VectorKernels.openScopes.load(ordering: .relaxed) != 0 ? VectorKernels.taskOverride : nil,
                       winograd: ConvolutionAlgorithm.openScopes.load(ordering: .relaxed) != 0 ? ConvolutionAlgorithm.taskOverride : nil,
                       bfloat16: MixedPrecision.openScopes.load(ordering: .relaxed) != 0 ? MixedPrecision.taskOverride : nil)
    }

    @inline(__always) func bound(_ body: () -> Void) {
        if avx512 == nil && winograd == nil && bfloat16 == nil { body(); return }
        VectorKernels.$taskOverride.withValue(avx512) {
            ConvolutionAlgorithm.$taskOverride.withValue(winograd) {
                MixedPrecision.$taskOverride.withValue(bfloat16) { body() }
            }
        }
    }
}
