// Core types shared by the safetensors reader, writer and shard collection.
//
// Format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// u64 N, then N bytes of UTF-8 JSON (possibly padded with trailing spaces),
// then the data section. The JSON maps tensor names to
// {"dtype", "shape", "data_offsets": [begin, end]} with offsets relative to the
// start of the data section, plus an optional "__metadata__" string map.
//
// NestIO deliberately knows nothing about tensor types: everything here hands
// out raw bytes or plain Float arrays so that any tensor library can sit on top.

/// Element types defined by the safetensors format.
///
/// Raw values are the exact strings used in file headers, so parsing and
/// writing a dtype is just `init(rawValue:)` / `rawValue`.
public enum SafeTensorsDType: String, CaseIterable, Sendable {
    case f64 = "F64"
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"
    /// 8-bit float, 4 exponent bits, 3 mantissa bits, no infinities ("fn" variant).
    case f8e4m3 = "F8_E4M3"
    /// 8-bit float, 5 exponent bits, 2 mantissa bits (the top byte of an F16).
    case f8e5m2 = "F8_E5M2"
    case i64 = "I64"
    case i32 = "I32"
    case i16 = "I16"
    case i8 = "I8"
    case u64 = "U64"
    case u32 = "U32"
    case u16 = "U16"
    case u8 = "U8"
    case bool = "BOOL"

    /// Bytes per element; used to validate that data_offsets match the shape.
    public var byteSize: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .f8e4m3, .f8e5m2, .i8, .u8, .bool: return 1
        }
    }

    /// product(shape) * byteSize, or nil on overflow (hostile headers can ask
    /// for absurd shapes). A zero dimension makes the tensor empty however
    /// large the other dimensions are.
    func byteCount(shape: [Int]) -> Int? {
        if shape.contains(0) { return 0 }
        var count = byteSize
        for dim in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            if overflow { return nil }
            count = product
        }
        return count
    }
}

/// Where one tensor lives inside a safetensors file.
public struct SafeTensorInfo: Equatable, Sendable {
    public let name: String
    public let dtype: SafeTensorsDType
    /// Dimensions, outermost first. `[]` is a scalar (one element).
    public let shape: [Int]
    /// Absolute byte range in the file (already shifted past the header), so
    /// callers can slice a mapping or pread without knowing the header size.
    public let byteRange: Range<Int>

    public init(name: String, dtype: SafeTensorsDType, shape: [Int], byteRange: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteRange = byteRange
    }

    /// Number of elements (product of the shape; 1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
}

/// Every failure of the safetensors code. `description` is always a single
/// line naming the file and, where relevant, the tensor, so it can be shown
/// to a user or logged as-is.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Broad category, so callers and tests can branch without parsing text.
    public enum Kind: Sendable, Equatable {
        /// open/read/write/rename/mmap failed at the OS level.
        case io
        /// File too short, header length past the end, or data cut short.
        case truncated
        /// Header is not UTF-8, not JSON, not an object, or has bad metadata.
        case invalidHeader
        /// A tensor entry is missing a field or a field has the wrong type.
        case invalidEntry
        case unsupportedDType
        case invalidShape
        /// begin > end, or a range beyond the data section.
        case invalidOffsets
        /// end - begin disagrees with product(shape) * dtype size.
        case sizeMismatch
        case overlappingTensors
        case tensorNotFound
        /// A caller-supplied buffer or element count is wrong.
        case countMismatch
        case fileExists
        case missingShard
        case duplicateTensor
        /// The writer was handed inconsistent tensors.
        case invalidArgument
    }

    public let kind: Kind
    /// File the problem concerns (data file, index file or write target).
    public let path: String
    /// Tensor the problem concerns, if any.
    public let tensor: String?
    /// Human-readable detail, without the path/tensor prefix.
    public let message: String

    public init(_ kind: Kind, path: String, tensor: String? = nil, _ message: String) {
        self.kind = kind
        self.path = path
        self.tensor = tensor
        self.message = message
    }

    public var description: String {
        var line = "safetensors \(path): "
        if let tensor { line += "tensor \(quoted(tensor)): " }
        line += message
        // Names come from untrusted files; never let them break the one-line promise.
        return line.replacingNewlines()
    }
}

#if canImport(Foundation)
import Foundation
extension SafeTensorsError: LocalizedError {
    public var errorDescription: String? { description }
}
#endif

/// Quotes an untrusted name for error messages (control characters escaped).
func quoted(_ s: String) -> String {
    var out = "'"
    for scalar in s.unicodeScalars {
        if scalar.value < 0x20 || scalar.value == 0x7F {
            out += "\\u{\(String(scalar.value, radix: 16))}"
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return out + "'"
}

extension String {
    fileprivate func replacingNewlines() -> String {
        guard contains(where: \.isNewline) else { return self }
        return String(map { $0.isNewline ? " " : $0 })
    }
}
