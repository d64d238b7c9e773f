import CImageCodecs
import Foundation
import Testing
@testable import NestIO

// All inputs are generated at test time: PNG variants via the C test writer,
// JPEGs via the encoder, malformed files by cutting or patching good ones.

// MARK: - Helpers

/// Deterministic bytes, so failures reproduce.
struct Noise {
    var state: UInt64
    mutating func byte() -> UInt8 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return UInt8(truncatingIfNeeded: state >> 33)
    }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in byte() } }
}

func noiseImage(width: Int, height: Int, alpha: Bool = false, seed: UInt64 = 1) throws -> RGBImage {
    var noise = Noise(state: seed)
    return try RGBImage(width: width, height: height, pixels: noise.bytes(width * height * 3),
                        alpha: alpha ? noise.bytes(width * height) : nil)
}

/// A smooth image: JPEG's home ground, so small errors mean a correct decode.
func gradientImage(width: Int = 64, height: Int = 48) throws -> RGBImage {
    var pixels: [UInt8] = []
    for y in 0..<height {
        for x in 0..<width {
            pixels += [UInt8(x * 255 / (width - 1)), UInt8(y * 255 / (height - 1)), UInt8((x + y) * 2 % 256 / 2 + 40)]
        }
    }
    return try RGBImage(width: width, height: height, pixels: pixels)
}

/// PNG in an arbitrary IHDR layout through the C test writer.
func testPNG(_ samples: [UInt16], width: Int, height: Int, colorType: Int32, bitDepth: Int32,
             interlaced: Bool = false, palette: [UInt8] = [], trns: [UInt16] = []) throws -> Data {
    var out = nest_buffer()
    defer { nest_buffer_free(&out) }
    let (status, message) = withCodecMessage { message, capacity in
        nest_test_write_png(samples, UInt32(width), UInt32(height), colorType, bitDepth, interlaced ? 1 : 0,
                            palette, UInt32(palette.count / 3), trns, UInt32(trns.count), &out, message, capacity)
    }
    guard status == 0, let data = out.data else {
        throw ImageError(.invalidArgument, file: nil, reason: "test PNG writer: \(message)")
    }
    return Data(bytes: data, count: out.length)
}

func meanAbsoluteError(_ a: [UInt8], _ b: [UInt8]) -> Double {
    zip(a, b).reduce(0.0) { $0 + Double(abs(Int($1.0) - Int($1.1))) } / Double(max(a.count, 1))
}

/// PNG chunks as (type, offset of the length field, data length).
func pngChunks(_ data: Data) -> [(type: String, offset: Int, length: Int)] {
    let bytes = [UInt8](data)
    var chunks: [(String, Int, Int)] = []
    var offset = 8
    while offset + 8 <= bytes.count {
        let length = bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
        chunks.append((String(decoding: bytes[offset + 4..<offset + 8], as: UTF8.self), offset, length))
        offset += 12 + length
    }
    return chunks
}

func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

func bigEndian(_ value: UInt32) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: value >> $0) } }

func chunk(_ type: String, _ body: [UInt8]) -> [UInt8] {
    let typed = Array(type.utf8) + body
    return bigEndian(UInt32(body.count)) + typed + bigEndian(crc32(typed))
}

/// A fresh directory per test, removed afterwards.
func withTempDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("nestio-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

/// Writes `bytes` to `dir/name`, decodes it, and returns the ImageError thrown.
func decodeFailure(_ bytes: [UInt8], name: String, in directory: String) throws -> ImageError {
    let path = "\(directory)/\(name)"
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    do {
        _ = try ImageFile.decode(path: path)
    } catch let error as ImageError {
        #expect(error.file == path)
        #expect(error.description.hasPrefix("\(path): "))
        #expect(!error.description.contains("\n"))
        return error
    }
    Issue.record("\(name) decoded without error")
    return ImageError(.corrupt, file: nil, reason: "no error")
}

// MARK: - PNG round trips

@Test func pngRoundTripRGBIsExact() throws {
    let image = try noiseImage(width: 37, height: 23)
    let decoded = try ImageFile.decode(data: ImageFile.encodePNG(image), name: "rgb.png")
    #expect(decoded == image)
    #expect(decoded.alpha == nil)
}

@Test func pngRoundTripRGBAIsExactAndNotComposited() throws {
    var image = try noiseImage(width: 19, height: 31, alpha: true, seed: 7)
    image.alpha![0] = 0  // fully transparent pixel: its color must survive as stored
    let decoded = try ImageFile.decode(data: ImageFile.encodePNG(image), name: "rgba.png")
    #expect(decoded == image)
    #expect(decoded.pixels[0..<3] == image.pixels[0..<3])
}

@Test func pngTextChunksRoundTrip() throws {
    let long = String(repeating: "Steps: 30, Sampler: Euler a, CFG scale: 7, Seed: 1234567890\n", count: 4000)
    let text: [(key: String, value: String)] = [
        ("parameters", "a cat on a mat\nNegative prompt: blurry\nSteps: 20"),
        ("Comment", "café crème"),   // Latin-1 representable: stays tEXt
        ("prompt-utf8", "猫 🐈 naïve — “quotes”"),  // needs iTXt
        ("long", long),
    ]
    let png = try ImageFile.encodePNG(try noiseImage(width: 4, height: 4), text: text)
    let back = try ImageFile.readPNGText(data: png, name: "text.png")
    #expect(back.map(\.key) == text.map(\.key))
    #expect(back.map(\.value) == text.map(\.value))
    // The chunk types follow the encoding rule, and text precedes the image data.
    let types = pngChunks(png).map(\.type)
    #expect(types.filter { $0 == "tEXt" }.count == 3)
    #expect(types.filter { $0 == "iTXt" }.count == 1)
    #expect(types.lastIndex(of: "tEXt")! < types.firstIndex(of: "IDAT")!)
}

@Test func writePNGThenReadFileBack() throws {
    try withTempDirectory { directory in
        let path = "\(directory)/out.png"
        let image = try noiseImage(width: 9, height: 5, alpha: true)
        try ImageFile.writePNG(image, to: path, text: [("parameters", "seed 42")])
        #expect(try ImageFile.decode(path: path) == image)
        #expect(try ImageFile.readPNGText(path: path).map(\.value) == ["seed 42"])
        // Only the target remains: the temporary file was renamed or removed.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["out.png"])
    }
}

@Test(arguments: ["", String(repeating: "k", count: 80), "猫", " lead", "trail ", "two  spaces", "tab\tkey"])
func invalidTextKeysAreRejected(key: String) throws {
    let image = try noiseImage(width: 2, height: 2)
    let error = try #require(throws: ImageError.self) { try ImageFile.encodePNG(image, text: [(key, "v")]) }
    #expect(error.kind == .invalidArgument && error.reason.hasPrefix("PNG text key"))
}

@Test func textValueWithNulIsRejected() throws {
    let error = try #require(throws: ImageError.self) {
        try ImageFile.encodePNG(try noiseImage(width: 2, height: 2), text: [("parameters", "a\0b")])
    }
    #expect(error.kind == .invalidArgument)
}

// MARK: - PNG layouts

@Test(arguments: [false, true])
func grayscale8(interlaced: Bool) throws {
    let samples: [UInt16] = (0..<(11 * 7)).map { UInt16($0 * 3 % 256) }
    let png = try testPNG(samples, width: 11, height: 7, colorType: 0, bitDepth: 8, interlaced: interlaced)
    let image = try ImageFile.decode(data: png, name: "gray.png")
    #expect(image.pixels == samples.flatMap { [UInt8($0), UInt8($0), UInt8($0)] })
    #expect(image.alpha == nil)
}

@Test(arguments: [Int32(1), 2, 4])
func lowBitGrayIsScaledToFullRange(bitDepth: Int32) throws {
    let maximum = (1 << bitDepth) - 1
    let samples: [UInt16] = (0..<(13 * 5)).map { UInt16($0 * 7 % (maximum + 1)) }  // odd width: partial bytes
    let png = try testPNG(samples, width: 13, height: 5, colorType: 0, bitDepth: bitDepth)
    let image = try ImageFile.decode(data: png, name: "gray\(bitDepth).png")
    #expect(image.pixels == samples.flatMap { s in Array(repeating: UInt8(Int(s) * 255 / maximum), count: 3) })
}

@Test(arguments: [Int32(8), 16])
func grayAlphaKeepsAlphaSeparate(bitDepth: Int32) throws {
    let scale: UInt16 = bitDepth == 16 ? 257 : 1
    let pairs: [(UInt16, UInt16)] = (0..<12).map { (UInt16($0 * 20), UInt16(255 - $0 * 20)) }
    let png = try testPNG(pairs.flatMap { [$0.0 * scale, $0.1 * scale] }, width: 4, height: 3,
                          colorType: 4, bitDepth: bitDepth)
    let image = try ImageFile.decode(data: png, name: "ga.png")
    #expect(image.pixels == pairs.flatMap { Array(repeating: UInt8($0.0), count: 3) })
    #expect(image.alpha == pairs.map { UInt8($0.1) })
}

@Test(arguments: [(Int32(8), false), (4, true), (2, false)])
func paletteWithAndWithoutTransparency(bitDepth: Int32, interlaced: Bool) throws {
    let palette: [UInt8] = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]
    let indices: [UInt16] = (0..<(9 * 6)).map { UInt16($0 % 4) }
    let opaque = try ImageFile.decode(data: try testPNG(indices, width: 9, height: 6, colorType: 3,
                                                        bitDepth: bitDepth, interlaced: interlaced, palette: palette),
                                      name: "pal.png")
    let expected = indices.flatMap { palette[Int($0) * 3..<Int($0) * 3 + 3] }
    #expect(opaque.pixels == expected)
    #expect(opaque.alpha == nil)

    // tRNS covers the first two entries; the rest are implicitly opaque.
    let png = try testPNG(indices, width: 9, height: 6, colorType: 3, bitDepth: bitDepth,
                          interlaced: interlaced, palette: palette, trns: [0, 128])
    let transparent = try ImageFile.decode(data: png, name: "pal-trns.png")
    #expect(transparent.pixels == expected)
    #expect(transparent.alpha == indices.map { [0, 128, 255, 255][Int($0)] })
}

@Test func rgbWithTransparentColor() throws {
    let samples: [UInt16] = [1, 2, 3, 4, 5, 6, 1, 2, 3, 9, 9, 9]
    let png = try testPNG(samples, width: 2, height: 2, colorType: 2, bitDepth: 8, trns: [1, 2, 3])
    let image = try ImageFile.decode(data: png, name: "trns.png")
    #expect(image.pixels == samples.map { UInt8($0) })
    #expect(image.alpha == [0, 255, 0, 255])
}

@Test(arguments: [(Int32(2), false), (6, true)])
func sixteenBitIsRoundedTo8(colorType: Int32, interlaced: Bool) throws {
    let channels = colorType == 6 ? 4 : 3
    var noise = Noise(state: 99)
    let samples: [UInt16] = (0..<(10 * 9 * channels)).map { _ in UInt16(noise.byte()) << 8 | UInt16(noise.byte()) }
    let png = try testPNG(samples, width: 10, height: 9, colorType: colorType, bitDepth: 16, interlaced: interlaced)
    let image = try ImageFile.decode(data: png, name: "deep.png")
    let expected = samples.map { UInt8((Double($0) * 255 / 65535).rounded()) }
    let pixelsExpected = stride(from: 0, to: expected.count, by: channels).flatMap { expected[$0..<$0 + 3] }
    #expect(image.pixels == pixelsExpected)
    if channels == 4 {
        #expect(image.alpha == stride(from: 3, to: expected.count, by: 4).map { expected[$0] })
    }
}

@Test(arguments: [(Int32(2), Int32(8)), (0, 1), (3, 4), (6, 8)])
func interlacedMatchesNonInterlaced(colorType: Int32, bitDepth: Int32) throws {
    // 17x11 leaves every Adam7 pass with partial blocks at the edges.
    let perPixel = [0: 1, 2: 3, 3: 1, 6: 4][Int(colorType)]!
    let limit = colorType == 3 ? 3 : 1 << bitDepth
    var noise = Noise(state: UInt64(colorType * 100 + bitDepth))
    let samples = (0..<(17 * 11 * perPixel)).map { _ in UInt16(Int(noise.byte()) % limit) }
    let palette: [UInt8] = colorType == 3 ? [9, 8, 7, 100, 110, 120, 250, 240, 230] : []
    func decode(_ interlaced: Bool) throws -> RGBImage {
        let png = try testPNG(samples, width: 17, height: 11, colorType: colorType, bitDepth: bitDepth,
                              interlaced: interlaced, palette: palette)
        if interlaced { #expect(png[png.startIndex + 28] == 1) }  // IHDR interlace byte really set
        return try ImageFile.decode(data: png, name: "adam7.png")
    }
    let progressive = try decode(true)
    #expect(progressive == (try decode(false)))
    #expect(progressive.width == 17 && progressive.height == 11)
}

// MARK: - JPEG

@Test(arguments: [false, true])
func jpegColorDecodesCloseToSource(progressive: Bool) throws {
    let image = try gradientImage()
    let jpeg = try ImageFile.encodeJPEG(image, quality: 95, progressive: progressive)
    // SOF2 marks a progressive frame, SOF0 a baseline one.
    let sof: [UInt8] = progressive ? [0xFF, 0xC2] : [0xFF, 0xC0]
    #expect([UInt8](jpeg).firstRange(of: sof) != nil)
    let decoded = try ImageFile.decode(data: jpeg, name: "photo.jpg")
    #expect(decoded.width == image.width && decoded.height == image.height && decoded.alpha == nil)
    #expect(meanAbsoluteError(decoded.pixels, image.pixels) < 2.5)
}

@Test func jpegGrayscaleExpandsToRGB() throws {
    let image = try gradientImage()
    let decoded = try ImageFile.decode(data: ImageFile.encodeJPEG(image, quality: 95, grayscale: true), name: "g.jpg")
    let red = stride(from: 0, to: decoded.pixels.count, by: 3).map { decoded.pixels[$0] }
    #expect(decoded.pixels == red.flatMap { [$0, $0, $0] })
    let luma = stride(from: 0, to: image.pixels.count, by: 3).map { i -> UInt8 in
        let (r, g, b) = (Double(image.pixels[i]), Double(image.pixels[i + 1]), Double(image.pixels[i + 2]))
        let y: Double = 0.299 * r + 0.587 * g + 0.114 * b
        return UInt8(y.rounded())
    }
    #expect(meanAbsoluteError(red, luma) < 2)
}

@Test func jpegAdobeCMYKIsConvertedToRGB() throws {
    // Photoshop-style inverted CMYK: stored C' = 1 - C, K' = 1 - K, so R = C' * K'.
    let image = try gradientImage()
    let cmyk = stride(from: 0, to: image.pixels.count, by: 3).flatMap { i -> [UInt8] in
        let rgb = image.pixels[i..<i + 3].map(Int.init)
        let k = max(rgb.max()!, 1)
        return rgb.map { UInt8($0 * 255 / k) } + [UInt8(k)]
    }
    let jpeg = try ImageFile.encodeJPEGSamples(cmyk, width: image.width, height: image.height, components: 4,
                                               quality: 95, progressive: false)
    #expect([UInt8](jpeg).firstRange(of: Array("Adobe".utf8)) != nil)
    let decoded = try ImageFile.decode(data: jpeg, name: "cmyk.jpg")
    #expect(meanAbsoluteError(decoded.pixels, image.pixels) < 3)
}

// MARK: - Malformed input

@Test func malformedFilesThrowErrorsNamingTheFile() throws {
    try withTempDirectory { dir in
        #expect(try decodeFailure([], name: "empty.png", in: dir).kind == .emptyFile)

        var noise = Noise(state: 5)
        let random = [0x42] + noise.bytes(1000)
        let unknown = try decodeFailure(random, name: "random.png", in: dir)
        #expect(unknown.kind == .unknownFormat && unknown.reason.contains("not a PNG or JPEG"))
        let gif = try decodeFailure(Array("GIF89a".utf8) + noise.bytes(20), name: "anim.png", in: dir)
        #expect(gif.reason.contains("GIF"))

        let png = [UInt8](try ImageFile.encodePNG(try noiseImage(width: 64, height: 64)))
        let idat = try #require(pngChunks(Data(png)).first { $0.type == "IDAT" })
        let cut = try decodeFailure(Array(png[..<(idat.offset + 8 + idat.length / 2)]), name: "cut.png", in: dir)
        #expect(cut.kind == .truncated && cut.reason.hasPrefix("truncated PNG"))

        var badCRC = png
        badCRC[idat.offset + 8 + idat.length + 1] ^= 0xFF  // a byte of the IDAT CRC
        let crc = try decodeFailure(badCRC, name: "crc.png", in: dir)
        #expect(crc.kind == .corrupt && crc.reason.contains("CRC"))

        let jpeg = [UInt8](try ImageFile.encodeJPEG(try gradientImage(), quality: 90))
        let truncated = try decodeFailure(Array(jpeg[..<(jpeg.count * 6 / 10)]), name: "photo.jpg", in: dir)
        #expect(truncated.kind == .truncated)
        #expect(truncated.reason == "truncated JPEG (premature end of data)")

        let progressive = [UInt8](try ImageFile.encodeJPEG(try gradientImage(), progressive: true))
        let cutProgressive = try decodeFailure(Array(progressive[..<(progressive.count / 2)]), name: "p.jpg", in: dir)
        #expect(cutProgressive.kind == .truncated)
    }
}

@Test func absurdDimensionsAreRefusedBeforeAllocating() throws {
    try withTempDirectory { dir in
        // A valid IHDR (correct CRC) claiming 100000 x 100000 RGBA.
        let header = bigEndian(100_000) + bigEndian(100_000) + [8, 6, 0, 0, 0]
        let png = ImageFile.pngSignature + chunk("IHDR", header) + chunk("IDAT", [0x78, 0x9C, 0x03, 0x00])
            + chunk("IEND", [])
        let huge = try decodeFailure(png, name: "huge.png", in: dir)
        #expect(huge.kind == .tooLarge && huge.reason.contains("100000x100000"))

        // Patch a real JPEG's SOF0 to 40000 x 40000.
        var jpeg = [UInt8](try ImageFile.encodeJPEG(try gradientImage()))
        let sof = try #require(jpeg.firstRange(of: [0xFF, 0xC0])).lowerBound
        jpeg.replaceSubrange(sof + 5..<sof + 9, with: [0x9C, 0x40, 0x9C, 0x40])
        #expect(try decodeFailure(jpeg, name: "huge.jpg", in: dir).kind == .tooLarge)
    }
}

@Test func missingFileAndNonPNGTextRequestsFailClearly() throws {
    try withTempDirectory { dir in
        let path = "\(dir)/does-not-exist.png"
        let error = try #require(throws: ImageError.self) { try ImageFile.decode(path: path) }
        #expect(error.kind == .unreadable && error.description.hasPrefix(path))
        let jpeg = try ImageFile.encodeJPEG(try gradientImage())
        let notPNG = try #require(throws: ImageError.self) { try ImageFile.readPNGText(data: jpeg, name: "a.jpg") }
        #expect(notPNG.kind == .unknownFormat && notPNG.description.hasPrefix("a.jpg: "))
    }
}

@Test func formatIsSniffedNotTakenFromExtension() throws {
    try withTempDirectory { dir in
        let image = try gradientImage(width: 8, height: 8)
        try ImageFile.encodePNG(image).write(to: URL(fileURLWithPath: "\(dir)/really-png.jpg"))
        #expect(try ImageFile.decode(path: "\(dir)/really-png.jpg") == image)
        try ImageFile.encodeJPEG(image).write(to: URL(fileURLWithPath: "\(dir)/really-jpeg.png"))
        #expect(try ImageFile.decode(path: "\(dir)/really-jpeg.png").width == 8)
    }
}

// MARK: - Atomic writes

@Test func overwriteIsRefusedByDefaultAndReplacesWhenAsked() throws {
    try withTempDirectory { dir in
        let path = "\(dir)/result.png"
        let first = try noiseImage(width: 6, height: 6, seed: 1)
        let second = try noiseImage(width: 3, height: 8, alpha: true, seed: 2)
        try ImageFile.writePNG(first, to: path)
        let original = try Data(contentsOf: URL(fileURLWithPath: path))

        let error = try #require(throws: ImageError.self) { try ImageFile.writePNG(second, to: path) }
        #expect(error.kind == .alreadyExists)
        #expect(error.description == "\(path): already exists; pass --overwrite to replace it")
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == original)

        try ImageFile.writePNG(second, to: path, overwrite: true)
        #expect(try ImageFile.decode(path: path) == second)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["result.png"])
    }
}

@Test func writeIntoMissingDirectoryFailsWithPath() throws {
    let path = "/nonexistent-\(UUID().uuidString)/out.png"
    let image = try noiseImage(width: 2, height: 2)
    let error = try #require(throws: ImageError.self) { try ImageFile.writePNG(image, to: path) }
    #expect(error.kind == .writeFailed && error.description.hasPrefix(path))
}

// MARK: - RGBImage

@Test func floatConversionsRoundTripAndClamp() throws {
    let image = try noiseImage(width: 5, height: 4)
    for range: ClosedRange<Float> in [0...1, -1...1] {
        let floats = image.floats(range: range)
        #expect(floats.count == 60)
        #expect(floats.allSatisfy { range.contains($0) })
        #expect(try RGBImage(width: 5, height: 4, floats: floats, range: range) == image)
    }
    let mid = Float(128) / 255 * 2 - 1
    #expect(try RGBImage(width: 1, height: 1, pixels: [0, 128, 255]).floats(range: -1...1) == [-1, mid, 1])
    let clamped = try RGBImage(width: 1, height: 2, floats: [-3, 2, .nan, 0.5, 0.25, 1], range: 0...1)
    #expect(clamped.pixels == [0, 255, 0, 128, 64, 255])
}

@Test func invalidImagesAreRejected() throws {
    #expect(throws: ImageError.self) { try RGBImage(width: 2, height: 2, pixels: [0, 0, 0]) }
    #expect(throws: ImageError.self) { try RGBImage(width: 1, height: 1, pixels: [0, 0, 0], alpha: [1, 2]) }
    #expect(throws: ImageError.self) { try RGBImage(width: 0, height: 5, pixels: []) }
    #expect(throws: ImageError.self) { try RGBImage(width: 1, height: 1, floats: [0, 0, 0], range: 1...1) }
    var image = try noiseImage(width: 2, height: 2)
    image.width = 3  // fields are mutable, so encoders must re-check
    let error = try #require(throws: ImageError.self) { try ImageFile.encodePNG(image) }
    #expect(error.kind == .invalidArgument)
}
