import CKernels
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The engine's own worker threads: one fewer than the cores (or than
/// NEST_THREADS), started on first use, each spinning for a short while after
/// a job before it sleeps. Linux only; elsewhere every job goes to dispatch.
///
/// Why not `DispatchQueue.concurrentPerform` alone: a training step of the
/// miniature world's UNet runs ~2,000 parallel kernels of 10–200 µs each;
/// waking a parked dispatch thread for each (a futex wake and a context
/// switch, measured 10% of the step in `perf`) costs more than the split
/// saves. A worker that is still spinning picks the next job up within a
/// microsecond. Jobs are one at a time: a second caller meanwhile (tests run
/// side by side; a kernel inside a kernel) falls back to dispatch.
final class WorkerPool: @unchecked Sendable {
    /// NEST_DISPATCH=1 leaves every job to dispatch (to measure what the pool buys).
    static let shared: WorkerPool = {
        #if canImport(Glibc)
        let off = EngineConfiguration.current.dispatchOnly
        return WorkerPool(threads: off ? 0 : max(0, Threads.defaultCount() - 1))
        #else
        return WorkerPool(threads: 0)
        #endif
    }()

    /// How long an idle worker spins before it sleeps (NEST_SPIN_US, default 200 µs).
    static let spinNanoseconds = EngineConfiguration.current.spinMicroseconds * 1000

    let threads: Int
    private let busy = Atomic<Bool>(false)
    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    /// The current job: participant index → its share. Set before `generation`
    /// moves on and cleared after every participant is done.
    private nonisolated(unsafe) var job: ((Int) -> Void)?
    private nonisolated(unsafe) var participants = 0
    private let sleepLock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let started = Atomic<Bool>(false)

    init(threads: Int) {
        #if canImport(Glibc)
        self.threads = threads
        #else
        self.threads = 0
        #endif
        pthread_mutex_init(sleepLock, nil)
        pthread_cond_init(wake, nil)
    }

    private func start() {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        #if canImport(Glibc)
        for index in 1...max(1, threads) where threads > 0 {
            let context = Unmanaged.passRetained(Box(pool: self, index: index)).toOpaque()
            var thread = pthread_t()
            let status = pthread_create(&thread, nil, { raw in
                let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
                box.pool.work(index: box.index)
                return nil
            }, context)
            precondition(status == 0, "cannot start engine worker thread (\(status))")
            pthread_detach(thread)
        }
        #endif
    }

    private final class Box {
        let pool: WorkerPool, index: Int
        init(pool: WorkerPool, index: Int) { self.pool = pool; self.index = index }
    }

    private func work(index: Int) {
        var seen = 0
        // A worker the last job did not need (fewer shares than threads, e.g.
        // `--threads 4` on 16 cores) sleeps at once instead of spinning.
        var spinBudget = Self.spinNanoseconds
        while true {
            var current = generation.load(ordering: .acquiring)
            if current == seen {
                let start = DispatchTime.now().uptimeNanoseconds
                var spins = 0
                while current == seen {
                    nest_cpu_relax()
                    spins += 1
                    if (spins & 255 == 0 || spinBudget == 0) && DispatchTime.now().uptimeNanoseconds - start >= spinBudget {
                        pthread_mutex_lock(sleepLock)
                        while generation.load(ordering: .acquiring) == seen { pthread_cond_wait(wake, sleepLock) }
                        pthread_mutex_unlock(sleepLock)
                    }
                    current = generation.load(ordering: .acquiring)
                }
            }
            seen = current
            let needed = index < participants
            if needed, let job { job(index) }
            spinBudget = needed ? Self.spinNanoseconds : 0
            pending.wrappingSubtract(1, ordering: .releasing)
        }
    }

    /// Runs `body(i)` for i in 0..<n, i = 0 on the calling thread. False (and
    /// nothing run) when the pool cannot take the job: too few threads, or busy.
    func run(_ n: Int, _ body: (Int) -> Void) -> Bool {
        guard n - 1 <= threads, threads > 0,
              busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        start()
        withoutActuallyEscaping(body) { body in
            job = body
            participants = n
            pending.store(threads, ordering: .relaxed)
            pthread_mutex_lock(sleepLock)
            generation.wrappingAdd(1, ordering: .releasing)
            pthread_cond_broadcast(wake)
            pthread_mutex_unlock(sleepLock)
            body(0)
            while pending.load(ordering: .acquiring) > 0 { nest_cpu_relax() }
            job = nil
        }
        busy.store(false, ordering: .releasing)
        return true
    }
}

/// `body(i)` for i in 0..<n in parallel: on the engine's workers, else dispatch.
@inline(__always)
func forkJoin(_ n: Int, _ body: (Int) -> Void) {
    if WorkerPool.shared.run(n, body) { return }
    DispatchQueue.concurrentPerform(iterations: n, execute: body)
}
