import Foundation
import Testing
@testable import NestIO

// MARK: - Helpers

/// A private temporary directory per test, removed when the test ends.
final class TempDir {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "nestio-safetensors-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        try Data(bytes).write(to: URL(fileURLWithPath: file(name)))
        return file(name)
    }

    func read(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: file(name)))) }
    func listing() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: path).sorted() }
}

/// A safetensors file built byte by byte, independent of the writer under
/// test: little-endian u64 header length, header bytes, data.
func rawFile(header: [UInt8], data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
    let length = declaredLength ?? UInt64(header.count)
    return (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) } + header + data
}

func rawFile(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
    rawFile(header: Array(header.utf8), data: data, declaredLength: declaredLength)
}

func littleEndian<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { v in (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}

func f32Bytes(_ values: [Float]) -> [UInt8] { littleEndian(values.map(\.bitPattern)) }

/// Runs `body` and returns the SafeTensorsError it throws (nil if none).
func captureError(_ body: () throws -> Void) -> SafeTensorsError? {
    do { try body() } catch let error as SafeTensorsError { return error } catch {
        Issue.record("unexpected error type: \(error)")
    }
    return nil
}

func sameBits(_ a: [Float], _ b: [Float]) -> Bool { a.map(\.bitPattern) == b.map(\.bitPattern) }

// MARK: - Round trips and format compatibility

@Test func roundTripMixedDtypesScalarEmptyAndMetadata() throws {
    let dir = try TempDir()
    let big = (0..<105).map { Float($0) * 0.37 - 5 }
    let halves = (0..<6).map { (Float($0) - 3) * 0.25 }  // exactly representable in F16
    let brains: [Float] = [1.5, -2, 0.0078125, 0x1p127, -0.0]  // exactly representable in BF16
    let metadata = ["format": "pt", "note": "ünïcode \"quoted\"\nsecond line"]
    let oddName = "layer.0/\"weird\" ü 😀"

    var writer = SafeTensorsWriter(metadata: metadata)
    writer.add("big", shape: [3, 5, 7], floats: big)
    writer.add("half", shape: [2, 3, 1], floats: halves, as: .f16)
    writer.add("brain", shape: [5], floats: brains, as: .bf16)
    writer.add("scalar", shape: [], floats: [42.5])
    writer.add("empty", shape: [0, 4], floats: [], as: .f16)
    writer.add("ints", dtype: .i32, shape: [4], bytes: littleEndian([Int32(-7), 0, 1 << 30, 3]))
    writer.add(oddName, dtype: .u8, shape: [3], bytes: [0, 128, 255])
    try writer.write(to: dir.file("model.safetensors"))

    let file = try SafeTensorsFile(path: dir.file("model.safetensors"))
    #expect(file.metadata == metadata)
    #expect(Set(file.names) == ["big", "half", "brain", "scalar", "empty", "ints", oddName])
    #expect(sameBits(try file.floats("big"), big))
    #expect(sameBits(try file.floats("half"), halves))
    #expect(sameBits(try file.floats("brain"), brains))
    #expect(try file.floats("scalar") == [42.5])
    #expect(try file.floats("empty").isEmpty)
    #expect(try file.floats("ints") == [-7, 0, Float(1 << 30), 3])
    #expect(try file.floats(oddName) == [0, 128, 255])
    #expect(try file.info("scalar").shape == [] && file.info("scalar").elementCount == 1)
    #expect(try file.info("empty").shape == [0, 4] && file.info("empty").byteRange.isEmpty)
    #expect(try file.info("half").dtype == .f16 && file.info("brain").dtype == .bf16)
    #expect(Array(try file.rawBytes("ints")) == littleEndian([Int32(-7), 0, 1 << 30, 3]))
    #expect(Array(try file.rawBytes("big")) == f32Bytes(big))
}

@Test func writerLayoutMatchesReferenceConventions() throws {
    let dir = try TempDir()
    var writer = SafeTensorsWriter(metadata: ["k": "v"])
    writer.add("z_bytes", dtype: .u8, shape: [3], bytes: [1, 2, 3])
    writer.add("m_half", shape: [3], floats: [1, 2, 3], as: .f16)
    writer.add("a_f64", dtype: .f64, shape: [1], bytes: littleEndian([(1.0 as Double).bitPattern]))
    writer.add("b_f32", shape: [1], floats: [1])
    try writer.write(to: dir.file("layout.safetensors"))

    let bytes = try dir.read("layout.safetensors")
    let headerLength = Int(bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    #expect(headerLength % 8 == 0)
    let header = String(decoding: bytes[8..<(8 + headerLength)], as: UTF8.self)
    #expect(header.hasPrefix("{\"__metadata__\":{\"k\":\"v\"},\"a_f64\":"))
    #expect(header.hasSuffix("}") || header.last == " ")
    let keyOrder = ["\"a_f64\"", "\"b_f32\"", "\"m_half\"", "\"z_bytes\""].map { header.range(of: $0)!.lowerBound }
    #expect(keyOrder == keyOrder.sorted())

    // Data packed without gaps, largest elements first, each naturally aligned.
    let file = try SafeTensorsFile(path: dir.file("layout.safetensors"))
    #expect(file.names == ["a_f64", "b_f32", "m_half", "z_bytes"])
    #expect(file.names.compactMap { file.tensors[$0]?.byteRange.lowerBound } == [8 + headerLength, 16 + headerLength, 20 + headerLength, 26 + headerLength])
    for info in file.tensors.values { #expect(info.byteRange.lowerBound % info.dtype.byteSize == 0) }
    #expect(bytes.count == 29 + headerLength)
}

@Test func handBuiltReferenceFileReadsBack() throws {
    let dir = try TempDir()
    // Listed out of offset order, with escapes, metadata and space padding.
    var header = #"{"b\u00fc\ud83d\ude00":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]},"#
        + #""__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
    header += String(repeating: " ", count: 5)
    let data = f32Bytes([1.5, -2.25]) + [0x80, 0x3F, 0x40, 0xC0]  // bf16 1.0, -3.0
    let path = try dir.write("hand.safetensors", rawFile(header: header, data: data))

    let file = try SafeTensorsFile(path: path)
    let headerLength = Array(header.utf8).count
    #expect(file.names == ["a", "bü😀"])
    #expect(file.metadata == ["format": "pt"])
    #expect(try file.floats("a") == [1.5, -2.25])
    #expect(try file.floats("bü😀") == [1.0, -3.0])
    #expect(try file.info("a").byteRange == (8 + headerLength)..<(16 + headerLength))
    #expect(try file.info("bü😀").byteRange == (16 + headerLength)..<(20 + headerLength))
    #expect(try file.info("bü😀").shape == [1, 2])
}

@Test func gapsAndUnusedTrailingBytesAreAccepted() throws {
    let dir = try TempDir()
    let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#
    let data = f32Bytes([1, 99, 99, 2, 99])
    let file = try SafeTensorsFile(path: try dir.write("gap.safetensors", rawFile(header: header, data: data)))
    #expect(try file.floats("a") == [1])
    #expect(try file.floats("b") == [2])
}

// MARK: - Conversions

@Test func f16SpecialValuesDecodeExactly() throws {
    let cases: [(UInt16, Float)] = [
        (0x0001, 0x1p-24), (0x03FF, 1023 * 0x1p-24), (0x0400, 0x1p-14), (0x3C00, 1), (0x7BFF, 65504),
        (0x7C00, .infinity), (0xFC00, -.infinity), (0xC000, -2), (0x0000, 0),
    ]
    for (bits, value) in cases { #expect(HalfPrecision.float(fromF16: bits) == value) }
    #expect(HalfPrecision.float(fromF16: 0x8000).bitPattern == (-0.0 as Float).bitPattern)
    #expect(HalfPrecision.float(fromF16: 0x7E00).isNaN && HalfPrecision.float(fromF16: 0xFD01).isNaN)

    // The same values through the file reader (table-driven path).
    let dir = try TempDir()
    let all = cases.map(\.0) + [0x8000, 0x7E00]
    try writeSafeTensors(path: dir.file("h.safetensors"),
                         tensors: [("h", .f16, [all.count], littleEndian(all))])
    let read = try SafeTensorsFile(path: dir.file("h.safetensors")).floats("h")
    #expect(Array(read.prefix(cases.count)) == cases.map(\.1))
    #expect(read[cases.count].sign == .minus && read[cases.count] == 0 && read.last!.isNaN)
}

@Test func f16DecodingMatchesDefinitionForAllBitPatterns() {
    for bits in 0...0xFFFF {
        let sign: Float = bits & 0x8000 != 0 ? -1 : 1
        let exponent = (bits >> 10) & 0x1F, mantissa = Float(bits & 0x3FF)
        let decoded = HalfPrecision.float(fromF16: UInt16(bits))
        let table = FloatConversion.f16Table[bits]
        switch exponent {
        case 0x1F where mantissa == 0: #expect(decoded == sign * .infinity)
        case 0x1F: #expect(decoded.isNaN && table.isNaN)
        case 0: #expect(decoded == sign * mantissa * 0x1p-24)
        default: #expect(decoded == sign * (1 + mantissa / 1024) * Float(sign: .plus, exponent: exponent - 15, significand: 1))
        }
        if !decoded.isNaN {
            #expect(table.bitPattern == decoded.bitPattern)
            #expect(HalfPrecision.f16(from: decoded) == UInt16(bits))
        }
    }
}

@Test func f16EncodingRoundsToNearestEven() {
    #expect(HalfPrecision.f16(from: 65519) == 0x7BFF)      // below the halfway point to 65536
    #expect(HalfPrecision.f16(from: 65520) == 0x7C00)      // tie rounds to even = infinity
    #expect(HalfPrecision.f16(from: 1 + 0x1p-11) == 0x3C00)  // tie, keep even mantissa
    #expect(HalfPrecision.f16(from: 1 + 3 * 0x1p-11) == 0x3C02)
    #expect(HalfPrecision.f16(from: 0x1p-25) == 0x0000)    // tie between 0 and the smallest subnormal
    #expect(HalfPrecision.f16(from: 1.5 * 0x1p-25) == 0x0001)
    #expect(HalfPrecision.f16(from: -0.0) == 0x8000)
    #expect(HalfPrecision.f16(from: .nan) & 0x7C00 == 0x7C00 && HalfPrecision.f16(from: .nan) & 0x3FF != 0)
}

@Test func bf16RoundsToNearestEvenAndReadsBack() throws {
    #expect(HalfPrecision.bf16(from: 1) == 0x3F80)
    #expect(HalfPrecision.bf16(from: 1 + 0x1p-8) == 0x3F80)            // tie, even stays
    #expect(HalfPrecision.bf16(from: 1 + 3 * 0x1p-8) == 0x3F82)        // tie, odd rounds up
    #expect(HalfPrecision.bf16(from: 1 + 0x1p-8 + 0x1p-20) == 0x3F81)  // just above the tie
    #expect(HalfPrecision.bf16(from: 1 + 0x1p-8 - 0x1p-20) == 0x3F80)  // just below the tie
    #expect(HalfPrecision.bf16(from: .greatestFiniteMagnitude) == 0x7F80)  // overflows to inf
    #expect(HalfPrecision.bf16(from: -0.0) == 0x8000)
    #expect(HalfPrecision.bf16(from: 0x1p-130) == 0x0008)              // Float subnormal stays exact
    let nan = HalfPrecision.bf16(from: Float(nan: 1, signaling: true))
    #expect(HalfPrecision.float(fromBF16: nan).isNaN)
    #expect(HalfPrecision.float(fromBF16: 0xC040) == -3)

    let dir = try TempDir()
    try writeSafeTensors(path: dir.file("b.safetensors"),
                         floatTensors: [("w", [3], [1 + 0x1p-8, 1 + 3 * 0x1p-8, .infinity])], dtype: .bf16)
    #expect(try SafeTensorsFile(path: dir.file("b.safetensors")).floats("w") == [1, 1 + 0x1p-6, .infinity])
}

@Test func integerBoolF64AndF8ConvertToFloat() throws {
    let dir = try TempDir()
    try writeSafeTensors(path: dir.file("m.safetensors"), tensors: [
        ("i64", .i64, [2], littleEndian([Int64(-3), 1 << 40])),
        ("i16", .i16, [2], littleEndian([Int16.min, Int16.max])),
        ("i8", .i8, [1], [0x80]),
        ("u16", .u16, [1], littleEndian([UInt16.max])),
        ("u32", .u32, [1], littleEndian([UInt32(1) << 31])),
        ("u64", .u64, [1], littleEndian([UInt64(1) << 63])),
        ("bool", .bool, [3], [0, 1, 2]),
        ("f64", .f64, [2], littleEndian([(0.001 as Double).bitPattern, (-1e300 as Double).bitPattern])),
        ("e4m3", .f8e4m3, [6], [0x38, 0x7E, 0x7F, 0x01, 0x80, 0xB0]),
        ("e5m2", .f8e5m2, [4], [0x3C, 0x7C, 0x01, 0xC0]),
    ], metadata: nil)
    let file = try SafeTensorsFile(path: dir.file("m.safetensors"))
    #expect(try file.floats("i64") == [-3, 0x1p40])
    #expect(try file.floats("i16") == [-32768, 32767])
    #expect(try file.floats("i8") == [-128])
    #expect(try file.floats("u16") == [65535])
    #expect(try file.floats("u32") == [0x1p31])
    #expect(try file.floats("u64") == [0x1p63])
    #expect(try file.floats("bool") == [0, 1, 1])
    #expect(try file.floats("f64") == [Float(0.001), -.infinity])
    let e4m3 = try file.floats("e4m3")
    #expect(e4m3[0] == 1 && e4m3[1] == 448 && e4m3[2].isNaN && e4m3[3] == 0x1p-9)
    #expect(e4m3[4] == 0 && e4m3[4].sign == .minus && e4m3[5] == -0.5)
    #expect(sameBits(try file.floats("e5m2"), [1, .infinity, 0x1p-16, -2]))
}

// MARK: - Lookups

@Test func lookupErrorsNameTensorAndFile() throws {
    let dir = try TempDir()
    try writeSafeTensors(path: dir.file("l.safetensors"), floatTensors: [("w", [2, 2], [1, 2, 3, 4])])
    let file = try SafeTensorsFile(path: dir.file("l.safetensors"))

    let missing = captureError { _ = try file.floats("nope") }
    #expect(missing?.kind == .tensorNotFound)
    #expect(missing?.description.contains("'nope'") == true && missing?.description.contains("l.safetensors") == true)

    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 5)
    defer { buffer.deallocate() }
    #expect(captureError { try file.copyFloats("w", into: buffer, count: 5) }?.kind == .countMismatch)
    try file.copyFloats("w", into: buffer, count: 4)
    #expect(Array(UnsafeBufferPointer(start: buffer, count: 4)) == [1, 2, 3, 4])
    #expect(captureError { _ = try SafeTensorsFile(path: dir.file("absent.safetensors")) }?.kind == .io)
}

// MARK: - Malformed files

struct MalformedCase: CustomTestStringConvertible, Sendable {
    let label: String
    let bytes: [UInt8]
    let kind: SafeTensorsError.Kind
    let tensor: String?
    let phrase: String
    var testDescription: String { label }
}

/// One tensor entry as header JSON, with overridable fields.
func entry(_ name: String = "w", dtype: String = #""F32""#, shape: String = "[2]", offsets: String = "[0,8]") -> String {
    #""\#(name)":{"dtype":\#(dtype),"shape":\#(shape),"data_offsets":\#(offsets)}"#
}

func malformed(_ label: String, _ header: String, data: [UInt8] = Array(repeating: 0, count: 8),
               _ kind: SafeTensorsError.Kind, tensor: String? = "w", _ phrase: String) -> MalformedCase {
    MalformedCase(label: label, bytes: rawFile(header: header, data: data), kind: kind, tensor: tensor, phrase: phrase)
}

let malformedCases: [MalformedCase] = [
    MalformedCase(label: "empty file", bytes: [], kind: .truncated, tensor: nil, phrase: "shorter than the 8-byte"),
    MalformedCase(label: "5-byte file", bytes: [1, 2, 3, 4, 5], kind: .truncated, tensor: nil, phrase: "file is 5 bytes"),
    MalformedCase(label: "header past end", bytes: rawFile(header: "{}", declaredLength: 1000), kind: .truncated,
                  tensor: nil, phrase: "header length 1000 past the end of file (size 10)"),
    MalformedCase(label: "header length 2^64-1", bytes: rawFile(header: "{}", declaredLength: .max), kind: .truncated,
                  tensor: nil, phrase: "header length 18446744073709551615 past the end"),
    MalformedCase(label: "invalid UTF-8", bytes: rawFile(header: [0x7B, 0x22, 0xFF, 0x22, 0x7D]), kind: .invalidHeader,
                  tensor: nil, phrase: "not valid UTF-8"),
    malformed("truncated JSON", #"{"w": "#, .invalidHeader, tensor: nil, "not valid JSON"),
    malformed("trailing garbage", "{} x", .invalidHeader, tensor: nil, "trailing data"),
    malformed("header is an array", "[1,2]", .invalidHeader, tensor: nil, "expected an object"),
    malformed("deep nesting", #"{"w":"# + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "}",
              .invalidHeader, tensor: nil, "nesting deeper"),
    malformed("duplicate tensor", "{" + entry() + "," + entry() + "}", .invalidHeader, tensor: nil, "duplicate key 'w'"),
    malformed("metadata not strings", #"{"__metadata__":{"epoch":3}}"#, .invalidHeader, tensor: nil, "'epoch'"),
    malformed("entry is a number", #"{"w":3}"#, .invalidEntry, "expected an object"),
    malformed("missing dtype", #"{"w":{"shape":[2],"data_offsets":[0,8]}}"#, .invalidEntry, #"missing "dtype""#),
    malformed("missing shape", #"{"w":{"dtype":"F32","data_offsets":[0,8]}}"#, .invalidEntry, #"missing "shape""#),
    malformed("missing offsets", #"{"w":{"dtype":"F32","shape":[2]}}"#, .invalidEntry, #"missing "data_offsets""#),
    malformed("dtype is a number", "{" + entry(dtype: "5") + "}", .invalidEntry, "expected a string"),
    malformed("shape is a string", "{" + entry(shape: #""2""#) + "}", .invalidEntry, "expected an array"),
    malformed("shape has a float", "{" + entry(shape: "[1.5]") + "}", .invalidEntry, "contains 1.5, expected integers"),
    malformed("shape has a bool", "{" + entry(shape: "[true]") + "}", .invalidEntry, "boolean"),
    malformed("three offsets", "{" + entry(offsets: "[0,4,8]") + "}", .invalidEntry, "has 3 elements"),
    malformed("offset beyond Int", "{" + entry(offsets: "[0,99999999999999999999]") + "}", .invalidEntry,
              "does not fit in 64 bits"),
    malformed("unknown dtype", "{" + entry(dtype: #""F128""#) + "}", .unsupportedDType, "unsupported dtype 'F128'"),
    malformed("negative dimension", "{" + entry(shape: "[-2]") + "}", .invalidShape, "negative dimension -2"),
    malformed("shape overflows", "{" + entry(shape: "[4294967296,4294967296,4]") + "}", .invalidShape, "too large"),
    malformed("begin after end", "{" + entry(offsets: "[8,0]") + "}", .invalidOffsets, "[8, 0]"),
    malformed("negative begin", "{" + entry(offsets: "[-4,4]") + "}", .invalidOffsets, "need 0 <= begin"),
    malformed("end beyond data", "{" + entry(shape: "[4]", offsets: "[0,16]") + "}", .truncated, "past the data section (8 bytes)"),
    malformed("size mismatch", "{" + entry(shape: "[3]", offsets: "[0,8]") + "}", .sizeMismatch, "needs 12"),
    malformed("overlap", "{" + entry("a") + "," + entry(offsets: "[4,12]") + "}", data: Array(repeating: 0, count: 12),
              .overlappingTensors, "overlap tensor 'a'"),
]

@Test(arguments: malformedCases)
func malformedFileIsRejectedWithOneClearLine(_ testCase: MalformedCase) throws {
    let dir = try TempDir()
    let path = try dir.write("broken-file.safetensors", testCase.bytes)
    let error = captureError { _ = try SafeTensorsFile(path: path) }
    #expect(error?.kind == testCase.kind)
    let text = error?.description ?? ""
    #expect(text.contains(path))
    #expect(text.contains(testCase.phrase), "\(text)")
    if let tensor = testCase.tensor { #expect(text.contains("tensor '\(tensor)'")) }
    #expect(!text.contains("\n"))
    #expect(error?.localizedDescription == text)
}

@Test func truncatedDownloadIsReported() throws {
    let dir = try TempDir()
    try writeSafeTensors(path: dir.file("full.safetensors"),
                         floatTensors: [("first", [4], [1, 2, 3, 4]), ("second", [4], [5, 6, 7, 8])])
    let full = try dir.read("full.safetensors")
    let path = try dir.write("cut.safetensors", Array(full.dropLast(3)))
    let error = captureError { _ = try SafeTensorsFile(path: path) }
    #expect(error?.kind == .truncated)
    #expect(error?.tensor == "second")
    #expect(error?.description.contains("cut.safetensors") == true)
    #expect(error?.description.contains("truncated") == true)
}

// MARK: - Atomic writes

@Test func writeRefusesToOverwriteByDefaultAndKeepsOriginal() throws {
    let dir = try TempDir()
    let path = dir.file("ckpt.safetensors")
    try writeSafeTensors(path: path, floatTensors: [("w", [2], [1, 2])])
    let original = try dir.read("ckpt.safetensors")

    let error = captureError { try writeSafeTensors(path: path, floatTensors: [("w", [3], [7, 8, 9])]) }
    #expect(error?.kind == .fileExists)
    #expect(error?.description.contains(path) == true)
    #expect(try dir.read("ckpt.safetensors") == original)
    #expect(try dir.listing() == ["ckpt.safetensors"])  // no temporary left behind

    try writeSafeTensors(path: path, floatTensors: [("w", [3], [7, 8, 9])], overwrite: true)
    #expect(try SafeTensorsFile(path: path).floats("w") == [7, 8, 9])
    #expect(try dir.listing() == ["ckpt.safetensors"])
}

@Test func failedWriteLeavesTargetUntouchedAndNoTemporary() throws {
    struct Crash: Error {}
    let dir = try TempDir()
    let path = dir.file("ckpt.safetensors")
    try writeSafeTensors(path: path, floatTensors: [("w", [1], [1])])
    let original = try dir.read("ckpt.safetensors")

    // Dying halfway through the data: the target must still be the old file.
    #expect(throws: Crash.self) {
        try writeAtomically(path: path, overwrite: true) { sink in
            try sink.append(Array(repeating: 0xAB, count: 1000))
            throw Crash()
        }
    }
    #expect(try dir.read("ckpt.safetensors") == original)
    #expect(try dir.listing() == ["ckpt.safetensors"])

    // Invalid tensors are rejected before anything touches the disk.
    let bad = captureError { try writeSafeTensors(path: dir.file("new.safetensors"), tensors: [("w", .f32, [2], [0, 0])]) }
    #expect(bad?.kind == .sizeMismatch && bad?.tensor == "w")
    let twice = captureError {
        try writeSafeTensors(path: dir.file("new.safetensors"), floatTensors: [("w", [1], [1]), ("w", [1], [2])])
    }
    #expect(twice?.kind == .duplicateTensor)
    #expect(try dir.listing() == ["ckpt.safetensors"])
    #expect(captureError { try writeSafeTensors(path: dir.file("no/such/dir/x.safetensors"), floatTensors: []) }?.kind == .io)
}

// MARK: - Sharded checkpoints

/// Two shards plus an index in `dir`; `weightMap` overrides the default map.
func writeShardedModel(in dir: TempDir, weightMap: String? = nil) throws -> String {
    try writeSafeTensors(path: dir.file("model-00001-of-00002.safetensors"),
                         floatTensors: [("a", [2], [1, 2]), ("b", [1], [3])], overwrite: true)
    try writeSafeTensors(path: dir.file("model-00002-of-00002.safetensors"),
                         floatTensors: [("c", [2, 2], [4, 5, 6, 7])], dtype: .f16, overwrite: true)
    let map = weightMap ?? #"{"a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}"#
    let index = #"{"metadata":{"total_size":20},"weight_map":\#(map)}"#
    return try dir.write("model.safetensors.index.json", Array(index.utf8))
}

@Test func shardedIndexExposesAllTensors() throws {
    let dir = try TempDir()
    let indexPath = try writeShardedModel(in: dir)
    for opened in [indexPath, dir.path] {
        let model = try SafeTensorsCollection(path: opened)
        #expect(model.path == indexPath)
        #expect(model.names == ["a", "b", "c"])
        #expect(model.files.count == 2)
        #expect(model.metadata["total_size"] == "20")
        #expect(try model.floats("a") == [1, 2])
        #expect(try model.info("c").dtype == .f16 && model.info("c").shape == [2, 2])
        #expect(try model.file(containing: "c").path.hasSuffix("model-00002-of-00002.safetensors"))
        var out = [Float](repeating: 0, count: 4)
        try out.withUnsafeMutableBufferPointer { try model.copyFloats("c", into: $0.baseAddress!, count: 4) }
        #expect(out == [4, 5, 6, 7])
        #expect(try model.rawBytes("b").count == 4)
        #expect(captureError { _ = try model.floats("zzz") }?.description.contains("model.safetensors.index.json") == true)
    }
    let single = try SafeTensorsCollection(path: dir.file("model-00001-of-00002.safetensors"))
    #expect(single.names == ["a", "b"] && single.files.count == 1)
    #expect(try single.floats("b") == [3])
}

@Test func shardedIndexErrors() throws {
    let dir = try TempDir()
    let indexPath = try writeShardedModel(in: dir, weightMap: #"{"a":"model-00001-of-00002.safetensors","x":"model-00009.safetensors"}"#)
    let missingError = captureError { _ = try SafeTensorsCollection(path: indexPath) }
    #expect(missingError?.kind == .missingShard)
    #expect(missingError?.description.contains("model.safetensors.index.json") == true)
    #expect(missingError?.description.contains("model-00009.safetensors") == true)

    _ = try writeShardedModel(in: dir, weightMap: #"{"a":"model-00001-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}"#)
    let absent = captureError { _ = try SafeTensorsCollection(path: indexPath) }
    #expect(absent?.kind == .tensorNotFound && absent?.tensor == "c")
    #expect(absent?.description.contains("model-00001-of-00002.safetensors") == true)

    // Shard 2 also carries "a": ambiguous, whatever the weight map says.
    _ = try writeShardedModel(in: dir, weightMap: nil)
    try writeSafeTensors(path: dir.file("model-00002-of-00002.safetensors"),
                         floatTensors: [("a", [1], [9]), ("c", [1], [4])], overwrite: true)
    let duplicate = captureError { _ = try SafeTensorsCollection(path: indexPath) }
    #expect(duplicate?.kind == .duplicateTensor && duplicate?.tensor == "a")

    let escaping = try dir.write("evil.safetensors.index.json", Array(#"{"weight_map":{"a":"../x.safetensors"}}"#.utf8))
    #expect(captureError { _ = try SafeTensorsCollection(path: escaping) }?.kind == .invalidHeader)
}
