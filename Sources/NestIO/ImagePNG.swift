import CImageCodecs
import Foundation

extension ImageFile {
    /// Encodes `image` as an 8-bit PNG: RGB, or RGBA when it has alpha.
    ///
    /// `text` becomes one chunk per entry, in order, placed before the image
    /// data. A value that Latin-1 can represent is written as tEXt (what
    /// every reader, including the popular web UIs reading "parameters",
    /// expects); any other value is written as iTXt so its UTF-8 survives
    /// intact. Keys must be 1-79 printable Latin-1 characters without
    /// leading, trailing or doubled spaces (the PNG keyword rules).
    public static func encodePNG(_ image: RGBImage, text: [(key: String, value: String)] = []) throws -> Data {
        try encodePNG(image, text: text, name: nil)
    }

    /// Encodes `image` like `encodePNG` and writes it atomically to `path`
    /// (temporary file in the same directory, fsync, rename), so `path` ends
    /// up either untouched or complete.
    ///
    /// An existing file is replaced only with `overwrite: true`; otherwise
    /// this throws `ImageError` (`.alreadyExists`) and leaves it untouched.
    public static func writePNG(_ image: RGBImage, to path: String, text: [(key: String, value: String)] = [],
                                overwrite: Bool = false) throws {
        // Fail before the (possibly slow) encode when the answer is known.
        if !overwrite && ImageFileIO.exists(path) { throw ImageFileIO.alreadyExistsError(path) }
        let data = try encodePNG(image, text: text, name: path)
        try ImageFileIO.writeAtomically(data, to: path, overwrite: overwrite)
    }

    static func encodePNG(_ image: RGBImage, text: [(key: String, value: String)], name: String?) throws -> Data {
        try image.validate(file: name)
        let chunks = try text.map { try TextChunk(key: $0.key, value: $0.value, file: name) }
        let interleaved = interleave(image)
        let channels: UInt32 = image.alpha == nil ? 3 : 4

        var output = nest_buffer()
        defer { nest_buffer_free(&output) }
        let (status, message) = withTextInputs(chunks) { inputs in
            interleaved.withUnsafeBufferPointer { pixels in
                withCodecMessage { message, capacity in
                    nest_png_encode(pixels.baseAddress, UInt32(image.width), UInt32(image.height), channels,
                                    inputs.baseAddress, UInt32(inputs.count), &output, message, capacity)
                }
            }
        }
        guard status == Int32(NEST_IMG_OK.rawValue), let bytes = output.data else {
            throw ImageError(codecStatus: status, message: message, format: "PNG", file: name, encoding: true)
        }
        return Data(bytes: bytes, count: output.length)
    }

    /// RGB as is, or RGBA interleaved when there is alpha (libpng wants one buffer).
    private static func interleave(_ image: RGBImage) -> [UInt8] {
        guard let alpha = image.alpha else { return image.pixels }
        let count = image.width * image.height
        return [UInt8](unsafeUninitializedCapacity: count * 4) { buffer, initialized in
            image.pixels.withUnsafeBufferPointer { rgb in
                for i in 0..<count {
                    buffer[4 * i] = rgb[3 * i]
                    buffer[4 * i + 1] = rgb[3 * i + 1]
                    buffer[4 * i + 2] = rgb[3 * i + 2]
                    buffer[4 * i + 3] = alpha[i]
                }
            }
            initialized = count * 4
        }
    }

    /// Hands C a nest_text_input array whose strings live for the call.
    private static func withTextInputs<T>(_ chunks: [TextChunk],
                                          _ body: (UnsafeBufferPointer<nest_text_input>) -> T) -> T {
        // Manually allocated so every pointer stays valid at once; nesting
        // withUnsafeBufferPointer calls cannot do that for a variable count.
        let strings = chunks.flatMap { [$0.keyBytes, $0.valueBytes] }.map { bytes -> UnsafeMutablePointer<CChar> in
            let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
            for (i, byte) in bytes.enumerated() { pointer[i] = CChar(bitPattern: byte) }
            pointer[bytes.count] = 0
            return pointer
        }
        defer { strings.forEach { $0.deallocate() } }
        let inputs = chunks.indices.map { i in
            nest_text_input(key: strings[2 * i], value: strings[2 * i + 1], is_utf8: chunks[i].isUTF8 ? 1 : 0)
        }
        return inputs.withUnsafeBufferPointer(body)
    }
}

/// One validated text chunk, already in its on-disk encoding.
struct TextChunk {
    let keyBytes: [UInt8]
    let valueBytes: [UInt8]
    let isUTF8: Bool

    init(key: String, value: String, file: String?) throws {
        func invalid(_ why: String) -> ImageError {
            ImageError(.invalidArgument, file: file, reason: "PNG text key \"\(key)\" \(why)")
        }
        // PNG keywords: Latin-1 printable (32-126, 161-255), 1-79 bytes, no
        // leading/trailing/double spaces. libpng would silently rewrite a bad
        // key, so we reject it with a clear message instead.
        guard let latin1 = Self.latin1Bytes(key) else { throw invalid("is not Latin-1") }
        guard (1...79).contains(latin1.count) else { throw invalid("must be 1 to 79 characters") }
        guard latin1.allSatisfy({ (32...126).contains($0) || (161...255).contains($0) }) else {
            throw invalid("contains a control or non-printable character")
        }
        guard latin1.first != 32, latin1.last != 32, !key.contains("  ") else {
            throw invalid("has leading, trailing or consecutive spaces")
        }
        // Chunk values are C strings on the way through libpng.
        guard !value.unicodeScalars.contains("\0") else {
            throw ImageError(.invalidArgument, file: file,
                             reason: "PNG text value for \"\(key)\" contains a NUL character")
        }
        keyBytes = latin1
        if let latin1Value = Self.latin1Bytes(value) {
            valueBytes = latin1Value
            isUTF8 = false
        } else {
            valueBytes = Array(value.utf8)
            isUTF8 = true
        }
    }

    /// The Latin-1 bytes of `text`, or nil if some character is outside U+0000...U+00FF.
    static func latin1Bytes(_ text: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            guard scalar.value <= 0xFF else { return nil }
            bytes.append(UInt8(scalar.value))
        }
        return bytes
    }
}
