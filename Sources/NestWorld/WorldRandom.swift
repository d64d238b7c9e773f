/// SplitMix64: tiny, fast and identical on every platform, so a seed names
/// the same world everywhere (Swift's own generators and `hashValue` are not
/// stable across runs).
public struct WorldRandom: Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// A stream derived from `seed` and a label, so independent parts of a
    /// scene (background details, jitter, caption wording) do not shift when
    /// another part draws more numbers.
    public init(seed: UInt64, stream: String) {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a, stable unlike String.hashValue
        for byte in stream.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        state = seed ^ hash
        _ = next()
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Float { Float(next() >> 40) / Float(1 << 24) }

    public mutating func uniform(_ low: Float, _ high: Float) -> Float { low + (high - low) * unit() }

    public mutating func int(_ count: Int) -> Int { Int(next() % UInt64(count)) }

    public mutating func pick<T>(_ items: [T]) -> T { items[int(items.count)] }
}
