import Foundation
import NestEngine
import NestIO
import XCTest
import NestTestSupport

/// Seeded, time-bounded fuzzing of the file readers: every mutated file gives a
/// valid result or an error whose description is one non-empty line, and never
/// a crash, a hang, a huge allocation or a file left behind. NEST_FUZZ_SCALE
/// multiplies the case counts; NEST_FUZZ_SEED replays another sequence.
final class FileFuzzTests: XCTestCase {
    var seed: UInt64 { ProcessInfo.processInfo.environment["NEST_FUZZ_SEED"].flatMap(UInt64.init) ?? 0x5AFE }
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("nest-fuzz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try FileManager.default.removeItem(at: folder) }

    func checkOneLine(_ error: Error, _ description: @autoclosure () -> String) {
        let message = String(describing: error)
        if message.isEmpty || message.contains("\n") { XCTFail("\(description()): not one line: \(message)") }
    }

    /// Truncations, bit flips, random bytes and overwritten runs.
    func mutateBytes(_ bytes: [UInt8], _ r: inout FuzzRandom, protecting prefix: Int = 0) -> [UInt8] {
        var b = bytes
        switch r.below(5) {
        case 0: b = Array(b.prefix(r.below(b.count)))
        case 1: for _ in 0...r.below(8) { let i = prefix + r.below(b.count - prefix); b[i] ^= UInt8(1 << r.below(8)) }
        case 2: for _ in 0...r.below(4) { b[prefix + r.below(b.count - prefix)] = UInt8(r.below(256)) }
        case 3:
            let start = prefix + r.below(b.count - prefix)
            for i in start..<min(b.count, start + 1 + r.below(16)) { b[i] = r.chance(0.5) ? 0xFF : 0 }
        default: b += (0..<r.below(64)).map { _ in UInt8(r.below(256)) }
        }
        return b
    }

    // MARK: - safetensors

    func baseSafeTensors() throws -> [UInt8] {
        var writer = SafeTensorsWriter(metadata: ["format": "pt"])
        writer.add("a.weight", shape: [3, 4], floats: (0..<12).map(Float.init))
        writer.add("a.bias", shape: [4], floats: [1, 2, 3, 4], as: .f16)
        writer.add("b", shape: [2, 2, 2], floats: (0..<8).map { Float($0) / 3 }, as: .bf16)
        writer.add("ids", dtype: .i64, shape: [2], bytes: [UInt8](repeating: 1, count: 16))
        let path = folder.appendingPathComponent("base.safetensors").path
        try writer.write(to: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Header text edits: absurd shapes, bad dtypes and offsets, lengths past the end.
    func mutateHeader(_ file: [UInt8], _ r: inout FuzzRandom) -> [UInt8] {
        let length = Int(UInt64(littleEndian: file.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
        var header = String(decoding: file[8..<(8 + length)], as: UTF8.self)
        let body = Array(file[(8 + length)...])
        let replacements: [(String, String)] = [
            ("[3,4]", "[\(Int.max),\(Int.max)]"), ("[3,4]", "[4294967296,4294967296]"), ("[4]", "[-4]"),
            ("\"F16\"", "\"F17\""), ("\"BF16\"", "7"), ("\"I64\"", "\"BOOL\""), ("[2]", "[2.5]"),
            ("\"data_offsets\":[0,", "\"data_offsets\":[-8,"), ("\"data_offsets\":[0,", "\"data_offsets\":[1,"),
            ("]}", "],\"x\":{}}"), ("\"shape\"", "\"shap\""), ("{", "["), ("\"format\"", "\"\\u0000\\n\""),
            ("\"a.weight\"", "\"a.bias\""), (",", ",\"z\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999]},"),
        ]
        let (from, to) = r.pick(replacements)
        if let range = header.range(of: from) { header.replaceSubrange(range, with: to) }
        var newLength = UInt64(header.utf8.count)
        switch r.below(6) {
        case 0: newLength = UInt64.max - UInt64(r.below(16))
        case 1: newLength = UInt64(file.count + r.below(100))
        default: break
        }
        return withUnsafeBytes(of: newLength.littleEndian, Array.init) + Array(header.utf8) + body
    }

    func testMutatedSafeTensors() throws {
        var r = FuzzRandom(seed: seed)
        let base = try baseSafeTensors()
        let count = fuzzCases(1000)
        var opened = 0
        let started = Date()
        let path = folder.appendingPathComponent("case.safetensors").path
        for index in 0..<count {
            let bytes = r.chance(0.5) ? mutateHeader(base, &r) : mutateBytes(base, &r)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let seed = self.seed
            func description() -> String { "seed \(seed) case \(index): \(bytes.prefix(300).map { String(format: "%02x", $0) }.joined())" }
            let (_, peak) = MemoryStats.measurePeak { () -> Void in
                do {
                    let file = try SafeTensorsFile(path: path)
                    opened += 1
                    for name in file.names { _ = try file.tensor(name) }
                } catch { checkOneLine(error, description()) }
            }
            if peak >= 1 << 20 { XCTFail("\(description()): \(peak) bytes allocated") }
        }
        try FileManager.default.removeItem(atPath: path)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), [])
        print("FileFuzzTests: \(count) mutated safetensors files (seed \(seed)), \(opened) opened, in \(Int(Date().timeIntervalSince(started) * 1000)) ms")
    }

    // MARK: - images

    func testMutatedImages() throws {
        var r = FuzzRandom(seed: seed &+ 1)
        let pixels = (0..<(24 * 16 * 3)).map { UInt8(($0 * 37) % 256) }
        let image = try RGBImage(width: 24, height: 16, pixels: pixels, alpha: (0..<(24 * 16)).map { UInt8($0 % 256) })
        let bases: [(String, Data)] = [
            ("png", try ImageFile.encodePNG(image, text: [("parameters", "seed 1"), ("Comment", "☃")])),
            ("jpeg", try ImageFile.encodeJPEG(image, quality: 80)),
            ("jpeg-progressive", try ImageFile.encodeJPEG(image, quality: 60, progressive: true)),
        ]
        let count = fuzzCases(1500)
        var decoded = 0
        let started = Date()
        for index in 0..<count {
            let (kind, base) = r.pick(bases)
            var bytes: [UInt8]
            if r.below(5) == 0 {
                let side = [UInt32(1 + r.below(70000)), UInt32.max, 0x7FFF_FFFF, 16385, 7072][r.below(5)]
                let other = UInt32(1 + r.below(20000))
                bytes = kind == "png" ? [UInt8](pngClaiming(width: side, height: other, base))
                    : [UInt8](jpegClaiming(width: UInt16(truncatingIfNeeded: side), height: UInt16(truncatingIfNeeded: other), base))
            } else {
                bytes = mutateBytes([UInt8](base), &r, protecting: r.chance(0.5) ? 8 : 0)
            }
            let data = Data(bytes)
            let seed = self.seed
            func description() -> String { "seed \(seed &+ 1) case \(index) (\(kind)): \(bytes.prefix(400).map { String(format: "%02x", $0) }.joined())" }
            let caseStart = Date()
            do {
                let result = try ImageFile.decode(data: data, name: "case.\(kind)")
                decoded += 1
                XCTAssertLessThanOrEqual(result.width * result.height, ImageLimits.maxPixels, description())
            } catch { checkOneLine(error, description()) }
            do {
                let info = try ImageFile.info(data: data, name: "case.\(kind)")
                XCTAssertTrue(info.width > 0 && info.height > 0, description())
            } catch { checkOneLine(error, description()) }
            if kind == "png" {
                do { _ = try ImageFile.readPNGText(data: data, name: "case.png") } catch { checkOneLine(error, description()) }
            }
            if Date().timeIntervalSince(caseStart) > 2 { XCTFail("\(description()): took over 2 s") }
        }
        print("FileFuzzTests: \(count) mutated PNG/JPEG files (seed \(seed &+ 1)), \(decoded) decoded, in \(Int(Date().timeIntervalSince(started) * 1000)) ms")
    }
}
