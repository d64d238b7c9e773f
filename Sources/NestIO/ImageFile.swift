import CImageCodecs
import Foundation

/// Reading and writing image files: PNG and JPEG in, PNG (and JPEG) out.
///
/// Formats are recognized by their magic bytes, never by extension, because
/// downloaded and renamed files routinely carry the wrong one. Every failure
/// is an `ImageError` whose message names the file.
public enum ImageFile {
    /// Largest accepted width or height (see `ImageLimits`).
    public static var maxSide: Int { ImageLimits.maxSide }

    enum Format: String {
        case png = "PNG"
        case jpeg = "JPEG"
    }

    /// Decodes the PNG or JPEG at `path` to 8-bit RGB (+ alpha if present).
    public static func decode(path: String) throws -> RGBImage {
        try decode(data: ImageFileIO.readFile(path: path), name: path)
    }

    /// Decodes PNG or JPEG bytes. `name` is only used in error messages.
    public static func decode(data: Data, name: String) throws -> RGBImage {
        switch try sniff(data, name: name) {
        case .png: return try decodePNG(data, name: name, wantText: false).image
        case .jpeg: return try decodeJPEG(data, name: name)
        }
    }

    /// The text chunks (tEXt, zTXt, iTXt) of the PNG at `path`, in file order,
    /// e.g. the "parameters" chunk holding generation settings.
    public static func readPNGText(path: String) throws -> [(key: String, value: String)] {
        try readPNGText(data: ImageFileIO.readFile(path: path), name: path)
    }

    /// The text chunks of in-memory PNG bytes. `name` is used in error messages.
    public static func readPNGText(data: Data, name: String) throws -> [(key: String, value: String)] {
        guard try sniff(data, name: name) == .png else {
            throw ImageError(.unknownFormat, file: name, reason: "not a PNG file (text chunks exist only in PNG)")
        }
        // The whole image is decoded because text may follow IDAT, and so
        // that a damaged file is reported rather than half-read.
        return try decodePNG(data, name: name, wantText: true).text
    }

    // MARK: - Format detection

    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    static func sniff(_ data: Data, name: String) throws -> Format {
        guard !data.isEmpty else {
            throw ImageError(.emptyFile, file: name, reason: "empty file (0 bytes)")
        }
        let head = [UInt8](data.prefix(12))
        if head.starts(with: pngSignature) { return .png }
        if head.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        var reason = "not a PNG or JPEG file"
        if let other = otherFormatName(head) { reason += " (looks like \(other))" }
        throw ImageError(.unknownFormat, file: name, reason: reason)
    }

    /// Names a few formats people commonly feed in by mistake, so the error
    /// says what the file actually is.
    private static func otherFormatName(_ head: [UInt8]) -> String? {
        func ascii(_ range: Range<Int>) -> String? {
            guard head.count >= range.upperBound else { return nil }
            return String(bytes: head[range], encoding: .ascii)
        }
        if ascii(0..<4) == "GIF8" { return "GIF" }
        if ascii(0..<4) == "RIFF", ascii(8..<12) == "WEBP" { return "WebP" }
        if head.starts(with: [0x49, 0x49, 0x2A, 0x00]) || head.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) { return "TIFF" }
        if ascii(4..<8) == "ftyp" { return "HEIF/AVIF" }
        return nil
    }

    // MARK: - Decoding through CImageCodecs

    static func decodePNG(_ data: Data, name: String, wantText: Bool)
        throws -> (image: RGBImage, text: [(key: String, value: String)]) {
        try decodeWithCodec(data, name: name, format: .png) { bytes, count, image, message, capacity in
            nest_png_decode(bytes, count, UInt32(ImageLimits.maxSide), UInt64(ImageLimits.maxPixels), wantText ? 1 : 0, image, message, capacity)
        }
    }

    static func decodeJPEG(_ data: Data, name: String) throws -> RGBImage {
        try decodeWithCodec(data, name: name, format: .jpeg) { bytes, count, image, message, capacity in
            nest_jpeg_decode(bytes, count, UInt32(ImageLimits.maxSide), UInt64(ImageLimits.maxPixels), image, message, capacity)
        }.image
    }

    private typealias DecodeCall = (UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<nest_decoded_image>,
                                    UnsafeMutablePointer<CChar>, Int) -> Int32

    /// Runs a C decoder and copies its malloc'd result into Swift arrays,
    /// freeing the C buffers on every path.
    private static func decodeWithCodec(_ data: Data, name: String, format: Format, _ call: DecodeCall)
        throws -> (image: RGBImage, text: [(key: String, value: String)]) {
        var decoded = nest_decoded_image()
        defer { nest_image_free(&decoded) }
        let (status, message) = data.withUnsafeBytes { raw in
            withCodecMessage { message, capacity in
                call(raw.bindMemory(to: UInt8.self).baseAddress, raw.count, &decoded, message, capacity)
            }
        }
        guard status == Int32(NEST_IMG_OK.rawValue), let source = decoded.pixels else {
            throw ImageError(codecStatus: status, message: message, format: format.rawValue, file: name)
        }
        let width = Int(decoded.width), height = Int(decoded.height)
        let (rgb, alpha) = splitChannels(source, pixelCount: width * height, channels: Int(decoded.channels))
        let image = try RGBImage(width: width, height: height, pixels: rgb, alpha: alpha)
        return (image, copyTexts(decoded))
    }

    /// RGB or RGBA interleaved -> RGB plus separate alpha.
    private static func splitChannels(_ source: UnsafePointer<UInt8>, pixelCount: Int, channels: Int)
        -> ([UInt8], [UInt8]?) {
        if channels == 3 {
            return (Array(UnsafeBufferPointer(start: source, count: pixelCount * 3)), nil)
        }
        var alpha = [UInt8](repeating: 0, count: pixelCount)
        let rgb = [UInt8](unsafeUninitializedCapacity: pixelCount * 3) { buffer, initialized in
            alpha.withUnsafeMutableBufferPointer { alpha in
                for i in 0..<pixelCount {
                    buffer[3 * i] = source[4 * i]
                    buffer[3 * i + 1] = source[4 * i + 1]
                    buffer[3 * i + 2] = source[4 * i + 2]
                    alpha[i] = source[4 * i + 3]
                }
            }
            initialized = pixelCount * 3
        }
        return (rgb, alpha)
    }

    private static func copyTexts(_ decoded: nest_decoded_image) -> [(key: String, value: String)] {
        guard let texts = decoded.texts else { return [] }
        return (0..<Int(decoded.text_count)).map { i in
            let entry = texts[i]
            let key = latin1String(UnsafeRawPointer(entry.key!).assumingMemoryBound(to: UInt8.self),
                                   count: strlen(entry.key!))
            let bytes = UnsafeRawPointer(entry.value!).assumingMemoryBound(to: UInt8.self)
            let value = entry.is_utf8 != 0
                ? String(decoding: UnsafeBufferPointer(start: bytes, count: entry.value_len), as: UTF8.self)
                : latin1String(bytes, count: entry.value_len)
            return (key, value)
        }
    }

    /// tEXt keys and values are Latin-1: each byte is the Unicode scalar of
    /// the same number.
    static func latin1String(_ bytes: UnsafePointer<UInt8>, count: Int) -> String {
        var scalars = String.UnicodeScalarView()
        for byte in UnsafeBufferPointer(start: bytes, count: count) { scalars.append(Unicode.Scalar(byte)) }
        return String(scalars)
    }
}
