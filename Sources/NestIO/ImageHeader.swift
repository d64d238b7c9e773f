import CImageCodecs
import Foundation

/// What an image file says about itself without decoding its pixels: format,
/// size, alpha and (PNG) text chunks. `nest inspect` reports this, and it costs
/// the same for a 20000×20000 image as for a thumbnail.
public struct ImageInfo: Sendable, Equatable {
    public var format: String
    public var width: Int
    public var height: Int
    /// PNG with an alpha channel or a tRNS chunk; always false for JPEG.
    public var hasAlpha: Bool
    /// PNG tEXt, zTXt and iTXt chunks in file order, keys and values as stored.
    public var texts: [Text]

    public struct Text: Sendable, Equatable {
        public var key: String
        public var value: String
        public init(key: String, value: String) { self.key = key; self.value = value }
    }

    /// Why the image would be refused by `ImageFile.decode`, or nil.
    public var sizeRefusal: String? { ImageLimits.refusal(width: width, height: height) }
}

extension ImageFile {
    /// Reads the header (and PNG text chunks) of the image at `path`.
    public static func info(path: String) throws -> ImageInfo {
        try info(data: ImageFileIO.readFile(path: path), name: path)
    }

    public static func info(data: Data, name: String) throws -> ImageInfo {
        let bytes = [UInt8](data)
        switch try sniff(data, name: name) {
        case .png: return try PNGChunks.info(bytes, name: name)
        case .jpeg: return try JPEGMarkers.info(bytes, name: name)
        }
    }
}

/// A walk over PNG chunks that skips pixel data (IDAT) without inflating it.
enum PNGChunks {
    static func info(_ b: [UInt8], name: String) throws -> ImageInfo {
        func fail(_ kind: ImageError.Kind, _ reason: String) -> ImageError { ImageError(kind, file: name, reason: reason) }
        var offset = 8
        var result = ImageInfo(format: "PNG", width: 0, height: 0, hasAlpha: false, texts: [])
        var sawHeader = false
        while true {
            guard offset + 8 <= b.count else { throw fail(.truncated, "truncated PNG (no IEND chunk)") }
            let length = Int(bigEndian32(b, offset))
            let type = String(decoding: b[(offset + 4)..<(offset + 8)], as: UTF8.self)
            guard length <= 0x7FFF_FFFF else { throw fail(.corrupt, "corrupt PNG (chunk length \(length) out of range)") }
            let start = offset + 8
            guard start + length + 4 <= b.count else { throw fail(.truncated, "truncated PNG (\(Escaped.text(type)) chunk ends past the file)") }
            let body = Array(b[start..<(start + length)])
            if !sawHeader {
                guard type == "IHDR", length == 13 else { throw fail(.corrupt, "corrupt PNG (first chunk is not IHDR)") }
                result.width = Int(bigEndian32(body, 0))
                result.height = Int(bigEndian32(body, 4))
                guard result.width > 0, result.height > 0 else { throw fail(.corrupt, "corrupt PNG (zero width or height)") }
                result.hasAlpha = body[9] == 4 || body[9] == 6
                sawHeader = true
            }
            switch type {
            case "tRNS": result.hasAlpha = true
            case "tEXt", "zTXt", "iTXt":
                if let text = try text(type, body, name: name) { result.texts.append(text) }
            case "IEND": return result
            default: break
            }
            offset = start + length + 4
        }
    }

    static func bigEndian32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }

    /// One text chunk; a damaged one is skipped, as libpng does with a bad ancillary chunk.
    static func text(_ type: String, _ body: [UInt8], name: String) throws -> ImageInfo.Text? {
        guard let keyEnd = body.firstIndex(of: 0), keyEnd > 0 else { return nil }
        let key = latin1(body[0..<keyEnd])
        var rest = Array(body[(keyEnd + 1)...])
        switch type {
        case "tEXt": return .init(key: key, value: latin1(rest[...]))
        case "zTXt":
            guard !rest.isEmpty else { return nil }
            return .init(key: key, value: latin1(try inflate(Array(rest.dropFirst()), name: name)[...]))
        default:  // iTXt: compression flag, method, language\0, translated keyword\0, text
            guard rest.count >= 2 else { return nil }
            let compressed = rest[0] != 0
            rest.removeFirst(2)
            for _ in 0..<2 {
                guard let end = rest.firstIndex(of: 0) else { return nil }
                rest.removeSubrange(...end)
            }
            let utf8 = compressed ? try inflate(rest, name: name) : rest
            return .init(key: key, value: String(decoding: utf8, as: UTF8.self))
        }
    }

    static func latin1(_ bytes: ArraySlice<UInt8>) -> String {
        String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
    }

    static func inflate(_ compressed: [UInt8], name: String) throws -> [UInt8] {
        var out = nest_buffer()
        defer { nest_buffer_free(&out) }
        let (status, message) = compressed.withUnsafeBufferPointer { input in
            withCodecMessage { nest_inflate_text(input.baseAddress, input.count, ImageLimits.maxTextBytes, &out, $0, $1) }
        }
        guard status == Int32(NEST_IMG_OK.rawValue) else {
            throw ImageError(codecStatus: status, message: message, format: "PNG", file: name)
        }
        return out.data.map { Array(UnsafeBufferPointer(start: $0, count: out.length)) } ?? []
    }
}

/// A walk over JPEG markers up to the frame header (SOF), which holds the size.
enum JPEGMarkers {
    static func info(_ b: [UInt8], name: String) throws -> ImageInfo {
        func fail(_ kind: ImageError.Kind, _ reason: String) -> ImageError { ImageError(kind, file: name, reason: reason) }
        var offset = 2
        while true {
            while offset < b.count, b[offset] == 0xFF, offset + 1 < b.count, b[offset + 1] == 0xFF { offset += 1 }
            guard offset + 2 <= b.count else { throw fail(.truncated, "truncated JPEG (no frame header)") }
            guard b[offset] == 0xFF else { throw fail(.corrupt, "corrupt JPEG (expected a marker at byte \(offset))") }
            let marker = b[offset + 1]
            offset += 2
            // Markers without a length: restart markers, TEM, stray SOI.
            if (0xD0...0xD8).contains(marker) || marker == 0x01 { continue }
            guard marker != 0xD9, marker != 0xDA else { throw fail(.corrupt, "corrupt JPEG (image data before a frame header)") }
            guard offset + 2 <= b.count else { throw fail(.truncated, "truncated JPEG (no frame header)") }
            let length = Int(b[offset]) << 8 | Int(b[offset + 1])
            guard length >= 2, offset + length <= b.count else { throw fail(.truncated, "truncated JPEG (segment ends past the file)") }
            let isFrame = (0xC0...0xCF).contains(marker) && ![0xC4, 0xC8, 0xCC].contains(marker)
            if isFrame {
                guard length >= 8 else { throw fail(.corrupt, "corrupt JPEG (short frame header)") }
                let height = Int(b[offset + 3]) << 8 | Int(b[offset + 4])
                let width = Int(b[offset + 5]) << 8 | Int(b[offset + 6])
                guard width > 0, height > 0 else { throw fail(.corrupt, "corrupt JPEG (zero width or height in the frame header)") }
                return ImageInfo(format: "JPEG", width: width, height: height, hasAlpha: false, texts: [])
            }
            offset += length
        }
    }
}
