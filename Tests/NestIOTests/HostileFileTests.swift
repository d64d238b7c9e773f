import Foundation
import NestIO
import XCTest

/// Special files and images whose headers claim absurd sizes fail at once, in one line.
final class HostileFileTests: XCTestCase {
    func testFIFOsAreRefusedWithoutBlocking() throws {
        for name in ["subject.png", "weights.safetensors", "model.safetensors.index.json"] {
            let (fifo, cleanup) = try makeFIFO(named: name)
            defer { cleanup() }
            let started = Date()
            let message = errorWithin(5, unblocking: fifo) {
                if name.hasSuffix(".png") { _ = try ImageFile.decode(path: fifo) }
                else { _ = try SafeTensorsCollection(path: fifo) }
            }
            assertOneLine(message, mentions: "FIFO")
            XCTAssertLessThan(Date().timeIntervalSince(started), 1, name)
        }
        let (fifo, cleanup) = try makeFIFO(named: "header.png")
        defer { cleanup() }
        assertOneLine(errorWithin(5, unblocking: fifo) { _ = try ImageFile.info(path: fifo) }, mentions: fifo)
    }

    func testAFolderIsNotAWeightsFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nest-dir-\(UUID().uuidString).safetensors")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        XCTAssertThrowsError(try SafeTensorsFile(path: folder.path)) { error in
            assertOneLine(String(describing: error), mentions: "a folder")
        }
    }

    func small() throws -> RGBImage {
        try RGBImage(width: 8, height: 6, pixels: (0..<(8 * 6 * 3)).map { UInt8($0 % 251) })
    }

    func testHugePNGIsRefusedFromItsHeader() throws {
        let png = try ImageFile.encodePNG(try small(), text: [("parameters", "seed 1")])
        for (w, h) in [(20000, 20000), (10000, 6000)] {
            let forged = pngClaiming(width: UInt32(w), height: UInt32(h), png)
            let started = Date()
            XCTAssertThrowsError(try ImageFile.decode(data: forged, name: "huge.png")) { error in
                XCTAssertEqual((error as? ImageError)?.kind, .tooLarge, "\(error)")
                assertOneLine(String(describing: error), mentions: "huge.png")
            }
            XCTAssertLessThan(Date().timeIntervalSince(started), 1)
            let info = try ImageFile.info(data: forged, name: "huge.png")
            XCTAssertEqual([info.width, info.height], [w, h])
            XCTAssertNotNil(info.sizeRefusal)
            XCTAssertEqual(info.texts, [ImageInfo.Text(key: "parameters", value: "seed 1")])
        }
        // Within the limits the same forgery is simply a broken file, not a size problem.
        let modest = pngClaiming(width: 4000, height: 3000, png)
        XCTAssertThrowsError(try ImageFile.decode(data: modest, name: "m.png")) { error in
            XCTAssertNotEqual((error as? ImageError)?.kind, .tooLarge)
        }
        XCTAssertNil(try ImageFile.info(data: modest, name: "m.png").sizeRefusal)
    }

    func testHugeJPEGIsRefusedFromItsHeader() throws {
        let jpeg = try ImageFile.encodeJPEG(try small(), quality: 90)
        let forged = jpegClaiming(width: 60000, height: 60000, jpeg)
        XCTAssertThrowsError(try ImageFile.decode(data: forged, name: "huge.jpg")) { error in
            XCTAssertEqual((error as? ImageError)?.kind, .tooLarge, "\(error)")
        }
        let info = try ImageFile.info(data: forged, name: "huge.jpg")
        XCTAssertEqual([info.width, info.height, info.hasAlpha ? 1 : 0], [60000, 60000, 0])
        let real = try ImageFile.info(data: jpeg, name: "small.jpg")
        XCTAssertEqual([real.width, real.height], [8, 6])
        XCTAssertEqual(real.format, "JPEG")
    }

    func testInfoMatchesTheDecoderAndKeepsTextAsStored() throws {
        let alpha = try RGBImage(width: 8, height: 6, pixels: try small().pixels, alpha: [UInt8](repeating: 9, count: 48))
        let text = [("Title", "line one\nline\u{1B}[31m two"), ("Comment", "snow ☃")]
        let info = try ImageFile.info(data: try ImageFile.encodePNG(alpha, text: text), name: "t.png")
        XCTAssertEqual([info.width, info.height], [8, 6])
        XCTAssertTrue(info.hasAlpha)
        XCTAssertEqual(info.texts.map(\.key), ["Title", "Comment"])
        XCTAssertEqual(info.texts.map(\.value), ["line one\nline\u{1B}[31m two", "snow ☃"])
        XCTAssertEqual(Escaped.text(info.texts[0].value), "line one\\nline\\u{1B}[31m two")
    }
}
