// Element conversions between safetensors dtypes and Float32.
//
// Float16 is a native Swift type on Linux x86_64 and arm64, and its
// conversions are IEEE exact (widening) or round-to-nearest-even (narrowing),
// including subnormals, infinities, signed zeros and NaN.

/// Bit-level helpers for half-precision formats, used when reading tensors and
/// when writing fp16/bf16 checkpoints from Float arrays.
public enum HalfPrecision {
    /// IEEE binary16 bits -> Float (exact: every F16 value is a Float value).
    @inline(__always)
    public static func float(fromF16 bits: UInt16) -> Float {
        Float(Float16(bitPattern: bits))
    }

    /// Float -> IEEE binary16 bits, round-to-nearest-even; values beyond the
    /// F16 range become ±infinity, tiny ones F16 subnormals or ±0.
    @inline(__always)
    public static func f16(from value: Float) -> UInt16 {
        Float16(value).bitPattern
    }

    /// bfloat16 bits -> Float: bf16 is the top half of a Float, so this is exact.
    @inline(__always)
    public static func float(fromBF16 bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Float -> bfloat16 bits, round-to-nearest-even (plain truncation would
    /// bias every weight towards zero). NaN stays NaN (forced quiet, so the
    /// payload cannot round into an infinity); overflow rounds to ±infinity.
    @inline(__always)
    public static func bf16(from value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        // Adding 0x7FFF (+1 when the kept part is odd) carries into the upper
        // half exactly when the dropped half is above, or at and odd, one half-ulp.
        let roundingBias: UInt32 = 0x7FFF + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
    }

    /// Encodes floats as little-endian F32, F16 or BF16 bytes for the writer.
    /// Integer and 8-bit float dtypes are not encodable from Float here, so
    /// they return nil rather than silently truncating.
    public static func encode(_ values: [Float], as dtype: SafeTensorsDType) -> [UInt8]? {
        switch dtype {
        case .f32: return littleEndianBytes(values.map(\.bitPattern))
        case .f16: return littleEndianBytes(values.map(f16(from:)))
        case .bf16: return littleEndianBytes(values.map(bf16(from:)))
        default: return nil
        }
    }

    private static func littleEndianBytes<T: FixedWidthInteger>(_ words: [T]) -> [UInt8] {
        let size = MemoryLayout<T>.size
        return [UInt8](unsafeUninitializedCapacity: words.count * size) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            for (i, word) in words.enumerated() {
                raw.storeBytes(of: word.littleEndian, toByteOffset: i * size, as: T.self)
            }
            initialized = words.count * size
        }
    }
}

enum FloatConversion {
    /// Converts `count` little-endian elements of `dtype` at `source` to Float.
    /// Loads are unaligned-safe: the format does not promise alignment, and
    /// other writers than the reference library exist.
    static func convert(_ source: UnsafeRawBufferPointer, dtype: SafeTensorsDType,
                        into destination: UnsafeMutablePointer<Float>, count: Int) {
        precondition(source.count == count * dtype.byteSize, "byte count does not match element count")
        guard count > 0, let base = source.baseAddress else { return }
        switch dtype {
        case .f32:
            #if _endian(little)
            UnsafeMutableRawPointer(destination).copyMemory(from: base, byteCount: count * 4)
            #else
            map(base, destination, count, UInt32.self) { Float(bitPattern: $0) }
            #endif
        case .f64: map(base, destination, count, UInt64.self) { Float(Double(bitPattern: $0)) }
        case .f16: lookup(base, destination, count, UInt16.self, f16Table)
        case .bf16: map(base, destination, count, UInt16.self) { HalfPrecision.float(fromBF16: $0) }
        case .f8e4m3: lookup(base, destination, count, UInt8.self, f8e4m3Table)
        case .f8e5m2: lookup(base, destination, count, UInt8.self, f8e5m2Table)
        case .i64: map(base, destination, count, Int64.self) { Float($0) }
        case .i32: map(base, destination, count, Int32.self) { Float($0) }
        case .i16: map(base, destination, count, Int16.self) { Float($0) }
        case .i8: map(base, destination, count, Int8.self) { Float($0) }
        case .u64: map(base, destination, count, UInt64.self) { Float($0) }
        case .u32: map(base, destination, count, UInt32.self) { Float($0) }
        case .u16: map(base, destination, count, UInt16.self) { Float($0) }
        case .u8: map(base, destination, count, UInt8.self) { Float($0) }
        case .bool: map(base, destination, count, UInt8.self) { $0 == 0 ? 0 : 1 }
        }
    }

    @inline(__always)
    private static func map<T: FixedWidthInteger>(
        _ base: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ count: Int,
        _: T.Type, _ transform: (T) -> Float
    ) {
        let stride = MemoryLayout<T>.size
        for i in 0..<count {
            let raw = base.loadUnaligned(fromByteOffset: i * stride, as: T.self)
            destination[i] = transform(T(littleEndian: raw))
        }
    }

    /// Table lookup by bit pattern. For F16 this beats the compiler-rt call
    /// that x86 without F16C uses per element, which matters when loading
    /// multi-gigabyte fp16 checkpoints.
    @inline(__always)
    private static func lookup<T: FixedWidthInteger & UnsignedInteger>(
        _ base: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ count: Int,
        _: T.Type, _ table: [Float]
    ) {
        table.withUnsafeBufferPointer { table in
            map(base, destination, count, T.self) { table[Int($0)] }
        }
    }

    /// All 65536 F16 values as Float (256 KiB, built once on first use).
    static let f16Table: [Float] = (0...0xFFFF).map { HalfPrecision.float(fromF16: UInt16($0)) }

    /// F8_E5M2 is the upper byte of an F16 with the same exponent bias.
    static let f8e5m2Table: [Float] = (0...0xFF).map { HalfPrecision.float(fromF16: UInt16($0) << 8) }

    /// F8_E4M3 "fn" (as in PyTorch float8_e4m3fn): bias 7, no infinities, and
    /// only S.1111.111 is NaN, so the top exponent still holds finite values.
    static let f8e4m3Table: [Float] = (0...0xFF).map { bits -> Float in
        let sign: Float = bits & 0x80 != 0 ? -1 : 1
        let exponent = (bits >> 3) & 0xF
        let mantissa = bits & 0x7
        if exponent == 0xF && mantissa == 0x7 { return .nan }
        if exponent == 0 { return sign * Float(mantissa) * 0x1p-9 }  // subnormal: m/8 * 2^-6
        return sign * (1 + Float(mantissa) / 8) * Float(sign: .plus, exponent: exponent - 7, significand: 1)
    }
}
