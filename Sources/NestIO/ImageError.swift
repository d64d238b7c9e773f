import CImageCodecs
import Foundation

/// The one error type thrown by image decoding, encoding and file writing.
///
/// `description` is a single line that names the file and says what is wrong
/// ("photo.jpg: truncated JPEG (premature end of data)"), because these
/// messages go straight to CLI users who need to know which of many inputs
/// failed. `kind` lets code react without parsing the text.
public struct ImageError: Error, CustomStringConvertible, LocalizedError, Equatable, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The file could not be opened or read (missing, permissions, directory).
        case unreadable
        case emptyFile
        /// Neither a PNG nor a JPEG signature.
        case unknownFormat
        /// Malformed data: bad CRC, bad marker, broken compressed stream.
        case corrupt
        /// The data ends before the image does.
        case truncated
        /// Dimensions beyond `ImageLimits`, or a byte count that overflows.
        case tooLarge
        /// A valid file using a feature we decline to handle.
        case unsupported
        case outOfMemory
        /// The caller passed an inconsistent image or an unusable text chunk.
        case invalidArgument
        /// A write would replace an existing file without `overwrite: true`.
        case alreadyExists
        case writeFailed
    }

    public let kind: Kind
    /// The path (or name) of the file concerned; nil for purely in-memory work.
    public let file: String?
    /// What is wrong, without the file name.
    public let reason: String

    public init(_ kind: Kind, file: String?, reason: String) {
        self.kind = kind
        self.file = file
        // Keep the promise of one line even if a library message had a newline.
        self.reason = reason.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    public var description: String {
        guard let file else { return reason }
        return "\(file): \(reason)"
    }

    public var errorDescription: String? { description }
}

extension ImageError {
    /// Maps a CImageCodecs status and message to an error worded for users.
    /// `format` is "PNG" or "JPEG"; `encoding` picks the verb for memory errors.
    init(codecStatus status: Int32, message: String, format: String, file: String?, encoding: Bool = false) {
        let detail = message.isEmpty ? "unknown error" : message
        switch status {
        case Int32(NEST_IMG_TRUNCATED.rawValue):
            self.init(.truncated, file: file, reason: "truncated \(format) (\(detail))")
        case Int32(NEST_IMG_TOO_LARGE.rawValue):
            self.init(.tooLarge, file: file, reason: "\(format) too large: \(detail)")
        case Int32(NEST_IMG_UNSUPPORTED.rawValue):
            self.init(.unsupported, file: file, reason: "unsupported \(format): \(detail)")
        case Int32(NEST_IMG_NO_MEMORY.rawValue):
            let verb = encoding ? "encoding" : "decoding"
            self.init(.outOfMemory, file: file, reason: "out of memory \(verb) \(format) (\(detail))")
        case Int32(NEST_IMG_BAD_ARGUMENT.rawValue):
            self.init(.invalidArgument, file: file, reason: "cannot encode \(format): \(detail)")
        default:
            self.init(.corrupt, file: file, reason: "corrupt \(format) (\(detail))")
        }
    }
}

/// Runs a CImageCodecs call with a message buffer and returns its status and
/// message. The buffer size bounds every C message; 512 is ample for libpng's
/// and libjpeg's one-line texts.
func withCodecMessage(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) -> (status: Int32, message: String) {
    var buffer = [CChar](repeating: 0, count: 512)
    let status = buffer.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    let message = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    return (status, message)
}
