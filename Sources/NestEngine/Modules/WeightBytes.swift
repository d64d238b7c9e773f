#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A checkpoint tensor's bytes where they already lie (e.g. in a memory-mapped
/// file), in checkpoint layout, so a loader can use them in place instead of
/// copying them into fresh memory.
public struct WeightBytes {
    /// The element types the loader can use without a float32 copy.
    public enum Element: Sendable {
        case float32, float16, bfloat16

        public var byteSize: Int { self == .float32 ? 4 : 2 }
    }

    public let element: Element
    public let bytes: UnsafeRawBufferPointer
    /// Keeps `bytes` valid; tensors that use the bytes in place hold it.
    public let owner: AnyObject
    /// True when `bytes` lie in a private file mapping whose pages may be
    /// dropped once copied (the file still holds them). Never for heap memory,
    /// where dropping pages would zero the values.
    public let mappedFromFile: Bool

    public init(element: Element, bytes: UnsafeRawBufferPointer, owner: AnyObject, mappedFromFile: Bool) {
        self.element = element; self.bytes = bytes; self.owner = owner; self.mappedFromFile = mappedFromFile
    }

    /// The bytes as elements of `T` when their address allows it.
    func typed<T>(_: T.Type) -> UnsafeMutablePointer<T>? {
        guard let base = bytes.baseAddress, Int(bitPattern: base) % MemoryLayout<T>.alignment == 0 else { return nil }
        // Mapped copy-on-write: a write (training, an in-place edit) copies the page and never reaches the file.
        return UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: T.self))
    }

    /// Gives the resident pages lying wholly inside these bytes back to the
    /// OS once their values were copied elsewhere (a converted or narrowed
    /// weight): otherwise the copy and the mapped original would both count
    /// against the process. Pages shared with a neighbouring tensor stay.
    func discardPages() {
        guard mappedFromFile, let base = bytes.baseAddress, bytes.count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: base) + page - 1) / page * page
        let end = (Int(bitPattern: base) + bytes.count) / page * page
        guard end > start, let pointer = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(pointer, end - start, MADV_DONTNEED)
    }
}

/// How wide the loader keeps the large weights (Linear and Conv2d weights of
/// at least 4096 values; biases, norms and embeddings stay float32).
public enum WeightPrecision: String, Sendable, CaseIterable {
    case float32
    /// As `Module.storeWeightsAsHalf`, but straight from the file.
    case float16
    /// As `Module.storeWeightsAsBFloat16`, but straight from the file.
    case bfloat16

    /// Weights below this many values stay float32 whatever the precision.
    public static let minimumNarrowedCount = 4096
}

/// How far a load has got, in checkpoint bytes.
public struct WeightLoadProgress: Sendable {
    public let loadedBytes: Int
    public let totalBytes: Int
}

/// What a load is asked to do besides filling parameters.
public struct WeightLoadOptions: Sendable {
    public var precision: WeightPrecision
    /// Smaller Linear and Conv2d weights stay float32 (as `storeWeightsAsHalf(minimumCount:)`).
    public var minimumNarrowedCount: Int
    /// Called after each tensor, on the loading thread.
    public var progress: (@Sendable (WeightLoadProgress) -> Void)?

    public init(precision: WeightPrecision = .float32, minimumNarrowedCount: Int = WeightPrecision.minimumNarrowedCount,
                progress: (@Sendable (WeightLoadProgress) -> Void)? = nil) {
        self.precision = precision; self.minimumNarrowedCount = minimumNarrowedCount; self.progress = progress
    }
}
