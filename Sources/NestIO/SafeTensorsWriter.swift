// Writing safetensors files, byte-compatible with the reference library's
// layout, and always atomically (temporary file + fsync + rename).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Collects tensors and writes them as one safetensors file.
///
/// Layout follows the reference Python/Rust library: data sorted by element
/// size (largest first) then name, packed without gaps, and the JSON header
/// padded with spaces to a multiple of 8 bytes. Because the data section then
/// starts 8-byte aligned and sizes only shrink along the way, every tensor is
/// naturally aligned for its dtype, which lets readers map it in place.
public struct SafeTensorsWriter {
    public struct Entry {
        public var name: String
        public var dtype: SafeTensorsDType
        public var shape: [Int]
        /// Little-endian element bytes; must be product(shape) * dtype.byteSize long.
        public var bytes: [UInt8]
    }

    public private(set) var entries: [Entry] = []
    /// Stored as the header's "__metadata__" (omitted when empty).
    public var metadata: [String: String]

    public init(metadata: [String: String] = [:]) {
        self.metadata = metadata
    }

    /// Adds raw little-endian bytes. Consistency is checked by `write`, so a
    /// bad entry is reported together with the target path.
    public mutating func add(_ name: String, dtype: SafeTensorsDType, shape: [Int], bytes: [UInt8]) {
        entries.append(Entry(name: name, dtype: dtype, shape: shape, bytes: bytes))
    }

    /// Adds Float values stored as F32, F16 or BF16 (rounded to nearest even).
    /// Other dtypes are a programming error and trap.
    public mutating func add(_ name: String, shape: [Int], floats: [Float], as dtype: SafeTensorsDType = .f32) {
        guard let bytes = HalfPrecision.encode(floats, as: dtype) else {
            preconditionFailure("SafeTensorsWriter can only encode Float as F32, F16 or BF16, not \(dtype.rawValue)")
        }
        add(name, dtype: dtype, shape: shape, bytes: bytes)
    }

    /// Writes the file atomically: readers see either the old file or the
    /// complete new one, never a partial write, even if the process dies.
    /// With `overwrite == false` an existing file is left untouched and
    /// `.fileExists` is thrown.
    public func write(to path: String, overwrite: Bool = false) throws {
        let layout = try layoutEntries(path: path)
        let header = headerBytes(layout)
        try writeAtomically(path: path, overwrite: overwrite) { sink in
            try sink.append(header)
            for (entry, _) in layout { try sink.append(entry.bytes) }
        }
    }

    /// Validates entries and assigns data offsets in the reference order.
    private func layoutEntries(path: String) throws -> [(Entry, Range<Int>)] {
        var seen = Set<String>()
        for entry in entries {
            func fail(_ kind: SafeTensorsError.Kind, _ message: String) -> SafeTensorsError {
                SafeTensorsError(kind, path: path, tensor: entry.name, message)
            }
            guard entry.name != "__metadata__" else { throw fail(.invalidArgument, "name is reserved") }
            guard seen.insert(entry.name).inserted else { throw fail(.duplicateTensor, "added twice") }
            guard entry.shape.allSatisfy({ $0 >= 0 }) else {
                throw fail(.invalidShape, "shape \(entry.shape) has a negative dimension")
            }
            guard let expected = entry.dtype.byteCount(shape: entry.shape) else {
                throw fail(.invalidShape, "shape \(entry.shape) is too large")
            }
            guard entry.bytes.count == expected else {
                throw fail(.sizeMismatch, "\(entry.bytes.count) bytes given but shape \(entry.shape) "
                    + "of \(entry.dtype.rawValue) needs \(expected)")
            }
        }
        let ordered = entries.sorted { a, b in
            a.dtype.byteSize != b.dtype.byteSize ? a.dtype.byteSize > b.dtype.byteSize : a.name < b.name
        }
        var offset = 0
        return ordered.map { entry in
            defer { offset += entry.bytes.count }
            return (entry, offset..<(offset + entry.bytes.count))
        }
    }

    /// Compact JSON with keys sorted ("__metadata__" sorts first anyway),
    /// prefixed by its little-endian length and padded to a multiple of 8.
    private func headerBytes(_ layout: [(Entry, Range<Int>)]) -> [UInt8] {
        var fields: [(String, String)] = layout.map { entry, range in
            let shape = entry.shape.map(String.init).joined(separator: ",")
            return (entry.name, "{\"dtype\":\"\(entry.dtype.rawValue)\",\"shape\":[\(shape)],"
                + "\"data_offsets\":[\(range.lowerBound),\(range.upperBound)]}")
        }
        if !metadata.isEmpty {
            let items = metadata.sorted { $0.key < $1.key }
                .map { "\(jsonQuoted($0.key)):\(jsonQuoted($0.value))" }
            fields.append(("__metadata__", "{" + items.joined(separator: ",") + "}"))
        }
        fields.sort { $0.0 < $1.0 }
        var json = Array(("{" + fields.map { "\(jsonQuoted($0)):\($1)" }.joined(separator: ",") + "}").utf8)
        json += repeatElement(UInt8(ascii: " "), count: (8 - json.count % 8) % 8)
        return withUnsafeBytes(of: UInt64(json.count).littleEndian, Array.init) + json
    }
}

/// Writes F32 tensors from Float arrays (the common case for tests and
/// debugging dumps) or F16/BF16 via `dtype`.
public func writeSafeTensors(
    path: String, floatTensors: [(name: String, shape: [Int], values: [Float])],
    dtype: SafeTensorsDType = .f32, metadata: [String: String]? = nil, overwrite: Bool = false
) throws {
    var writer = SafeTensorsWriter(metadata: metadata ?? [:])
    for tensor in floatTensors { writer.add(tensor.name, shape: tensor.shape, floats: tensor.values, as: dtype) }
    try writer.write(to: path, overwrite: overwrite)
}

/// Writes tensors given as raw little-endian bytes of any dtype.
public func writeSafeTensors(
    path: String, tensors: [(name: String, dtype: SafeTensorsDType, shape: [Int], bytes: [UInt8])],
    metadata: [String: String]? = nil, overwrite: Bool = false
) throws {
    var writer = SafeTensorsWriter(metadata: metadata ?? [:])
    for tensor in tensors { writer.add(tensor.name, dtype: tensor.dtype, shape: tensor.shape, bytes: tensor.bytes) }
    try writer.write(to: path, overwrite: overwrite)
}
