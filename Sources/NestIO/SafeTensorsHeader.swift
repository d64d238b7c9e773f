// Parsing and validation of a safetensors header.
//
// Everything that could make a later read go out of bounds or return the
// wrong bytes is checked here, once, at open time: after this, accessors can
// slice the mapping without further checks.

/// The validated content of a header.
struct SafeTensorsHeader {
    var tensors: [String: SafeTensorInfo] = [:]
    /// Tensor names in data-offset order (ties broken by name), which is the
    /// order a sequential reader touches the file.
    var names: [String] = []
    var metadata: [String: String] = [:]

    /// Parses the 8-byte length prefix and JSON header of `file` (the whole
    /// file's bytes) and validates every entry against the file size.
    init(file: UnsafeRawBufferPointer, path: String) throws {
        let size = file.count
        guard size >= 8 else {
            throw SafeTensorsError(.truncated, path: path,
                "file is \(size) bytes, shorter than the 8-byte header length prefix")
        }
        let headerLength = UInt64(littleEndian: file.loadUnaligned(as: UInt64.self))
        // Compare as UInt64: a hostile length near 2^64 must not wrap around.
        guard headerLength <= UInt64(size - 8) else {
            throw SafeTensorsError(.truncated, path: path,
                "header length \(headerLength) past the end of file (size \(size))")
        }
        let dataStart = 8 + Int(headerLength)
        let headerBytes = UnsafeRawBufferPointer(rebasing: file[8..<dataStart])
        guard String(validating: headerBytes, as: UTF8.self) != nil else {
            throw SafeTensorsError(.invalidHeader, path: path, "header is not valid UTF-8")
        }
        let json: JSONValue
        do {
            json = try JSONParser.parse(headerBytes)
        } catch let error as JSONParseError {
            throw SafeTensorsError(.invalidHeader, path: path, "header is not valid JSON: \(error.message)")
        }
        guard case .object(let members) = json else {
            throw SafeTensorsError(.invalidHeader, path: path,
                "header is JSON \(json.typeName), expected an object")
        }

        let entryParser = EntryParser(path: path, dataStart: dataStart, dataSize: size - dataStart)
        var infos: [SafeTensorInfo] = []
        for (key, value) in members {
            if key == "__metadata__" {
                metadata = try Self.parseMetadata(value, path: path)
            } else {
                infos.append(try entryParser.parse(name: key, value))
            }
        }
        infos.sort { ($0.byteRange.lowerBound, $0.byteRange.upperBound, $0.name)
                   < ($1.byteRange.lowerBound, $1.byteRange.upperBound, $1.name) }
        try Self.checkOverlaps(infos, dataStart: dataStart, path: path)
        names = infos.map(\.name)
        tensors = Dictionary(uniqueKeysWithValues: infos.map { ($0.name, $0) })
    }

    private static func parseMetadata(_ value: JSONValue, path: String) throws -> [String: String] {
        if case .null = value { return [:] }  // the reference reader accepts null
        guard case .object(let members) = value else {
            throw SafeTensorsError(.invalidHeader, path: path,
                "__metadata__ is \(value.typeName), expected an object of strings")
        }
        var metadata: [String: String] = [:]
        for (key, item) in members {
            guard case .string(let text) = item else {
                throw SafeTensorsError(.invalidHeader, path: path,
                    "__metadata__ value for key \(quoted(key)) is \(item.typeName), expected a string")
            }
            metadata[key] = text
        }
        return metadata
    }

    /// Two tensors sharing bytes means at least one of them is garbage. Gaps
    /// are tolerated (the format only needs each range to be in bounds).
    /// `infos` must be sorted by range start.
    private static func checkOverlaps(_ infos: [SafeTensorInfo], dataStart: Int, path: String) throws {
        var furthest: SafeTensorInfo?  // non-empty tensor reaching furthest so far
        for info in infos where !info.byteRange.isEmpty {
            if let previous = furthest, info.byteRange.lowerBound < previous.byteRange.upperBound {
                throw SafeTensorsError(.overlappingTensors, path: path, tensor: info.name,
                    "data_offsets \(relative(info.byteRange, dataStart)) overlap tensor "
                    + "\(quoted(previous.name)) at \(relative(previous.byteRange, dataStart))")
            }
            if info.byteRange.upperBound > (furthest?.byteRange.upperBound ?? 0) { furthest = info }
        }
    }
}

/// Formats an absolute range the way the header wrote it, for error messages.
private func relative(_ range: Range<Int>, _ dataStart: Int) -> String {
    "[\(range.lowerBound - dataStart), \(range.upperBound - dataStart)]"
}

/// Validates one `name: {dtype, shape, data_offsets}` entry.
private struct EntryParser {
    let path: String
    let dataStart: Int
    let dataSize: Int

    func parse(name: String, _ value: JSONValue) throws -> SafeTensorInfo {
        func fail(_ kind: SafeTensorsError.Kind, _ message: String) -> SafeTensorsError {
            SafeTensorsError(kind, path: path, tensor: name, message)
        }
        guard case .object(let fields) = value else {
            throw fail(.invalidEntry, "entry is \(value.typeName), expected an object")
        }
        func field(_ key: String) throws -> JSONValue {
            guard let found = fields.first(where: { $0.key == key }) else {
                throw fail(.invalidEntry, "entry is missing \"\(key)\"")
            }
            return found.value
        }

        let dtypeValue = try field("dtype")
        guard case .string(let dtypeName) = dtypeValue else {
            throw fail(.invalidEntry, "\"dtype\" is \(dtypeValue.typeName), expected a string")
        }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw fail(.unsupportedDType, "unsupported dtype \(quoted(dtypeName))")
        }

        let shape = try integers(try field("shape"), "shape", fail)
        if let negative = shape.first(where: { $0 < 0 }) {
            throw fail(.invalidShape, "shape \(shape) has negative dimension \(negative)")
        }
        let offsets = try integers(try field("data_offsets"), "data_offsets", fail)
        guard offsets.count == 2 else {
            throw fail(.invalidEntry, "\"data_offsets\" has \(offsets.count) elements, expected [begin, end]")
        }
        let (begin, end) = (offsets[0], offsets[1])
        guard begin >= 0, begin <= end else {
            throw fail(.invalidOffsets, "data_offsets [\(begin), \(end)] are invalid (need 0 <= begin <= end)")
        }
        guard end <= dataSize else {
            throw fail(.truncated, "data_offsets [\(begin), \(end)] end past the data section "
                + "(\(dataSize) bytes); the file may be truncated")
        }

        guard let byteCount = dtype.byteCount(shape: shape) else {
            throw fail(.invalidShape, "shape \(shape) is too large to address")
        }
        guard end - begin == byteCount else {
            throw fail(.sizeMismatch, "data_offsets [\(begin), \(end)] span \(end - begin) bytes "
                + "but shape \(shape) of \(dtype.rawValue) needs \(byteCount)")
        }
        return SafeTensorInfo(name: name, dtype: dtype, shape: shape,
                              byteRange: (dataStart + begin)..<(dataStart + end))
    }

    /// Reads a JSON array of integers, rejecting floats, booleans and values
    /// that do not fit in Int (offsets in multi-GB files are legitimately large).
    private func integers(_ value: JSONValue, _ key: String,
                          _ fail: (SafeTensorsError.Kind, String) -> SafeTensorsError) throws -> [Int] {
        guard case .array(let items) = value else {
            throw fail(.invalidEntry, "\"\(key)\" is \(value.typeName), expected an array of integers")
        }
        return try items.map { item in
            guard case .number(let text, let int) = item else {
                throw fail(.invalidEntry, "\"\(key)\" contains \(item.typeName), expected integers")
            }
            guard let int else {
                let isFraction = text.contains { $0 == "." || $0 == "e" || $0 == "E" }
                throw fail(.invalidEntry, "\"\(key)\" contains \(text), "
                    + (isFraction ? "expected integers" : "which does not fit in 64 bits"))
            }
            return int
        }
    }
}
