import Foundation
import Synchronization
import Testing
@testable import NestEngine

/// The engine's own worker threads: every share of every job runs exactly
/// once, jobs back to back (workers spinning) and after a sleep, with a job
/// inside a job and several callers at once (both fall back to dispatch).
@Suite struct WorkerPoolTests {
    @Test func everyShareRunsOnceJobAfterJob() {
        let pool = WorkerPool(threads: 3)
        for round in 0..<2000 {
            let n = 1 + round % 4
            let counts = Mutex([0, 0, 0, 0])
            #expect(pool.run(n) { i in counts.withLock { $0[i] += 1 } })
            let seen = counts.withLock { $0 }
            #expect(seen == (0..<4).map { $0 < n ? 1 : 0 }, "round \(round)")
        }
        #expect(!pool.run(5) { _ in }, "more shares than threads + caller")
    }

    @Test func workersWakeFromSleep() {
        let pool = WorkerPool(threads: 1)
        let done = Atomic<Int>(0)
        #expect(pool.run(2) { _ in _ = done.wrappingAdd(1, ordering: .relaxed) })
        // Longer than the spin (200 µs by default): the worker is asleep now.
        Thread.sleep(forTimeInterval: 0.02)
        #expect(pool.run(2) { _ in _ = done.wrappingAdd(1, ordering: .relaxed) })
        #expect(done.load(ordering: .relaxed) == 4)
    }

    @Test func nestedAndConcurrentJobsFallBack() async {
        let total = Atomic<Int>(0)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    for _ in 0..<200 {
                        forkJoin(2) { _ in
                            forkJoin(2) { _ in _ = total.wrappingAdd(1, ordering: .relaxed) }
                        }
                    }
                }
            }
        }
        #expect(total.load(ordering: .relaxed) == 4 * 200 * 4)
    }
}
