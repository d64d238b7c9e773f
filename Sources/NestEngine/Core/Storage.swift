import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Bytes the engine holds in tensor storage right now, and the most it has held.
/// Benchmarks and tests read these to prove a kernel did not allocate a large
/// buffer (e.g. an attention score matrix).
public enum MemoryStats {
    static let live = Atomic<Int>(0)
    static let peak = Atomic<Int>(0)

    public static var liveBytes: Int { live.load(ordering: .relaxed) }
    public static var peakBytes: Int { peak.load(ordering: .relaxed) }

    /// Starts a new peak measurement from the current live size.
    public static func resetPeak() { peak.store(live.load(ordering: .relaxed), ordering: .relaxed) }

    static func allocated(_ bytes: Int) {
        let now = live.wrappingAdd(bytes, ordering: .relaxed).newValue
        var seen = peak.load(ordering: .relaxed)
        while now > seen {
            let (exchanged, original) = peak.compareExchange(expected: seen, desired: now, ordering: .relaxed)
            if exchanged { break }
            seen = original
        }
    }

    static func freed(_ bytes: Int) { live.wrappingSubtract(bytes, ordering: .relaxed) }

    /// Runs `body` and returns the most memory that storage allocated by this
    /// thread during `body` held at once (bytes still alive count; freed ones
    /// stop counting). Unlike the global figures, other threads' work does
    /// not disturb it, so concurrent tests can measure a kernel's scratch.
    public static func measurePeak<T>(_ body: () throws -> T) rethrows -> (result: T, peakBytes: Int) {
        let tracker = AllocationTracker()
        let previous = pthread_getspecific(AllocationTracker.key)
        pthread_setspecific(AllocationTracker.key, Unmanaged.passUnretained(tracker).toOpaque())
        defer { pthread_setspecific(AllocationTracker.key, previous) }
        let result = try body()
        return (result, tracker.peak.load(ordering: .relaxed))
    }
}

/// Counts the storage allocated on one thread during a measurement.
final class AllocationTracker: @unchecked Sendable {
    static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()
    let live = Atomic<Int>(0)
    let peak = Atomic<Int>(0)

    static var current: AllocationTracker? {
        guard let raw = pthread_getspecific(key) else { return nil }
        return Unmanaged<AllocationTracker>.fromOpaque(raw).takeUnretainedValue()
    }

    func allocated(_ bytes: Int) {
        let now = live.wrappingAdd(bytes, ordering: .relaxed).newValue
        var seen = peak.load(ordering: .relaxed)
        while now > seen {
            let (exchanged, original) = peak.compareExchange(expected: seen, desired: now, ordering: .relaxed)
            if exchanged { break }
            seen = original
        }
    }

    func freed(_ bytes: Int) { live.wrappingSubtract(bytes, ordering: .relaxed) }
}

/// A flat, 64-byte aligned float32 buffer. Either owned (allocated here and
/// freed on deinit) or borrowed from an owner object such as a memory-mapped
/// file, which it keeps alive.
public final class Storage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    /// What keeps borrowed memory valid (nil: owned, freed on deinit).
    let owner: AnyObject?
    private let tracker: AllocationTracker?

    /// Allocates `count` floats. Contents are uninitialized unless `zeroed`.
    public init(count: Int, zeroed: Bool = false) {
        precondition(count >= 0, "negative storage size")
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw: UnsafeMutableRawPointer
        if bytes >= LargeBufferPool.threshold {
            raw = LargeBufferPool.allocate(bytes)
        } else {
            var p: UnsafeMutableRawPointer? = nil
            guard posix_memalign(&p, 64, bytes) == 0, let p else { fatalError("out of memory allocating \(bytes) bytes") }
            raw = p
        }
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
        owner = nil
        if zeroed { pointer.initialize(repeating: 0, count: count) }
        MemoryStats.allocated(count * 4)
        tracker = AllocationTracker.current
        tracker?.allocated(count * 4)
    }

    /// Wraps memory that `owner` keeps valid (zero-copy views of mapped files).
    public init(borrowing pointer: UnsafeMutablePointer<Float>, count: Int, owner: AnyObject) {
        self.pointer = pointer
        self.count = count
        self.owner = owner
        tracker = nil
    }

    deinit {
        if owner == nil {
            let bytes = max(count, 1) * MemoryLayout<Float>.stride
            if bytes >= LargeBufferPool.threshold {
                LargeBufferPool.release(UnsafeMutableRawPointer(pointer), bytes: bytes)
            } else {
                free(pointer)
            }
            MemoryStats.freed(count * 4)
            tracker?.freed(count * 4)
        }
    }
}
