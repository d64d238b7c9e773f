import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where tensors of 1 MiB and more live: pages mapped from the OS, kept for
/// reuse (by size) when freed.
///
/// Why: a diffusion step allocates and frees the same large activation
/// buffers every time. Through malloc they either come back as fresh pages
/// (a page fault per 4 KiB: measured 15–30% of an SD 1.5 UNet call) or stay
/// in malloc's arenas, fragmented (peak RSS drifted 3.7–5.1 GB between
/// identical runs). Reusing buffers by size removes both: after the first
/// step, the step loop gets its memory from this pool.
///
/// Idle buffers cost resident memory, so a request that finds no buffer of
/// its size first returns idle ones (largest first) to the OS until live +
/// idle + the new buffer fit within the most memory ever live at once plus a
/// slack (NEST_POOL_SLACK_MB, default 256). Measured, build plus four calls:
/// the earlier rule (at most 512 MiB idle, whatever was live) kept SD 1.5's
/// UNet at 64×64 latents at 4,055 MiB peak RSS with 0.92 M page faults; this
/// one 3,801 MiB and 0.21 M. Without the slack (3,544 MiB) a training step,
/// whose backward pass asks for other sizes than its forward, evicted and
/// re-mapped buffers every step (736 k faults for 41 steps; 128 k with it).
enum LargeBufferPool {
    static let threshold = 1 << 20
    /// Sizes are rounded to 64 KiB, so near-equal requests share buffers.
    static let granule = 64 << 10
    /// Most idle bytes kept for reuse (NEST_POOL_MB, default 512). The peak
    /// rule below bounds only memory that passes through the pool: with 4 GiB
    /// here, SDXL at 1024² with float16 weights (stored outside the pool) kept
    /// up to 4 GiB of the freed float32 build idle, 13,773 → 15,431 MiB peak.
    /// SD 1.5 and the training step measured the same with 512 as with 4096.
    static let idleCapacity = EngineConfiguration.current.poolMegabytes << 20

    /// Buffers of 2 MiB and more ask for transparent huge pages (Linux's
    /// MADV_HUGEPAGE; nothing happens where THP is off): a fresh buffer then
    /// costs one fault per 2 MiB instead of one per 4 KiB. SD 1.5's UNet at
    /// 64×64 latents: 9.8–11.1 → 8.8–9.1 s a call, same peak RSS.
    /// NEST_HUGE_PAGES=0 turns the advice off.
    static let hugePage = 2 << 20
    static let useHugePages = EngineConfiguration.current.hugePages

    /// The pool's bookkeeping, apart from the OS calls (so tests can drive it).
    struct State: ~Copyable {
        var idle: [Int: [UnsafeMutableRawPointer]] = [:]
        var idleBytes = 0
        /// Bytes handed out and not yet released, and the most there has been.
        var liveBytes = 0, peakLive = 0
        let capacity: Int
        /// Idle bytes allowed beyond the peak of live bytes.
        var slack = 0

        /// An idle buffer of exactly `size` bytes, or nil and the idle buffers
        /// to unmap first (largest first) so that live + idle + the new
        /// buffer stays within the peak of live memory (plus the slack).
        mutating func take(_ size: Int) -> (UnsafeMutableRawPointer?, [(UnsafeMutableRawPointer, Int)]) {
            liveBytes += size
            peakLive = max(peakLive, liveBytes)
            if var list = idle[size], let p = list.popLast() {
                idle[size] = list.isEmpty ? nil : list
                idleBytes -= size
                return (p, [])
            }
            let allowed = peakLive + slack
            var victims: [(UnsafeMutableRawPointer, Int)] = []
            for key in idle.keys.sorted(by: >) where liveBytes + idleBytes > allowed {
                while liveBytes + idleBytes > allowed, var list = idle[key], let v = list.popLast() {
                    idle[key] = list.isEmpty ? nil : list
                    idleBytes -= key
                    victims.append((v, key))
                }
            }
            return (nil, victims)
        }

        /// Keeps a freed buffer for reuse; false when that would pass the capacity.
        mutating func put(_ p: UnsafeMutableRawPointer, _ size: Int) -> Bool {
            liveBytes -= size
            guard idleBytes + size <= capacity else { return false }
            idle[size, default: []].append(p)
            idleBytes += size
            return true
        }
    }
    static let state = Mutex(State(capacity: idleCapacity, slack: EngineConfiguration.current.poolSlackMegabytes << 20))

    static func roundedSize(_ bytes: Int) -> Int { (bytes + granule - 1) / granule * granule }

    static func allocate(_ bytes: Int) -> UnsafeMutableRawPointer {
        let size = roundedSize(bytes)
        let (reused, victims) = state.withLock { $0.take(size) }
        if let reused { return reused }
        for (v, n) in victims { munmap(v, n) }
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            fatalError("out of memory mapping \(size) bytes")
        }
        #if os(Linux)
        if size >= hugePage && useHugePages { _ = madvise(p, size, 14) }  // 14: MADV_HUGEPAGE
        #endif
        return p
    }

    static func release(_ p: UnsafeMutableRawPointer, bytes: Int) {
        let size = roundedSize(bytes)
        if !state.withLock({ $0.put(p, size) }) { munmap(p, size) }
    }

    /// Returns every idle buffer to the OS (for long-lived processes between jobs).
    public static func trim() {
        let all = state.withLock { s -> [(UnsafeMutableRawPointer, Int)] in
            let list = s.idle.flatMap { size, ps in ps.map { ($0, size) } }
            s.idle = [:]
            s.idleBytes = 0
            return list
        }
        for (p, size) in all { munmap(p, size) }
    }
}
