extension Module {
    /// A fingerprint of the weights: FNV-1a (64 bits) over every parameter's dotted path and
    /// its values rounded to float16, in registration order, as 16 hex digits. Rounding first
    /// makes a float32 file and its float16 copy (`nest world pack`) the same weights; any
    /// trained change past float16's precision, or a different architecture, changes it.
    /// Not a cryptographic hash: it tells weights apart, it does not guard against forgery.
    public func weightDigest() -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        @inline(__always) func mix(_ byte: UInt8) { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        for (path, parameter) in namedParameters() {
            for byte in path.utf8 { mix(byte) }
            mix(0)
            let values = parameter.tensor.data
            for i in 0..<parameter.tensor.count {
                let bits = Float16(values[i]).bitPattern
                mix(UInt8(truncatingIfNeeded: bits)); mix(UInt8(truncatingIfNeeded: bits >> 8))
            }
        }
        return String(hash, radix: 16).leftPadded(to: 16)
    }
}

private extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
