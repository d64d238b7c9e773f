#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

// The system calls, under names that the methods below do not shadow.
private func systemOpen(_ path: String, _ flags: Int32) -> Int32 { open(path, flags) }
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, buffer, count) }

/// Why a data file could not be read, in one line naming the file.
public struct FileReadError: Error, CustomStringConvertible, LocalizedError, Equatable, Sendable {
    public let path: String
    public let reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path): \(reason)" }
    public var errorDescription: String? { description }
}

/// Data files (configs, weights, images, manifests) are read only from regular
/// files. A FIFO, a terminal or a socket would block a read forever, and a
/// device such as /dev/zero never ends; all are refused before any read.
public enum RegularFile {
    /// Opens `path` read-only and returns its descriptor and size. The open does not
    /// block (a FIFO without a writer would otherwise hang in `open` itself).
    public static func open(_ path: String) throws -> (descriptor: Int32, size: Int) {
        let fd = systemOpen(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw FileReadError(path: path, reason: "cannot open (\(String(cString: strerror(errno))))") }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = "cannot stat (\(String(cString: strerror(errno))))"
            close(fd)
            throw FileReadError(path: path, reason: reason)
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG else {
            close(fd)
            throw FileReadError(path: path, reason: "is \(describeKind(kind)), not a regular file")
        }
        // Regular files never block; clear the flag so later reads behave as usual.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return (fd, Int(info.st_size))
    }

    /// The whole content of a regular file, refused past `limit` bytes before reading.
    public static func read(_ path: String, limit: Int = Int.max) throws -> Data {
        let (fd, size) = try open(path)
        defer { close(fd) }
        guard size <= limit else {
            throw FileReadError(path: path, reason: "is \(size) bytes, more than the \(limit) bytes allowed for this kind of file")
        }
        var data = Data(count: size)
        var filled = 0
        while filled < size {
            let count = data.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress! + filled, size - filled) }
            if count == 0 { break }  // the file shrank while being read
            if count < 0 {
                if errno == EINTR { continue }
                throw FileReadError(path: path, reason: "read failed (\(String(cString: strerror(errno))))")
            }
            filled += count
        }
        if filled < size { data.removeSubrange(filled...) }
        return data
    }

    public static func read(_ url: URL, limit: Int = Int.max) throws -> Data { try read(url.path, limit: limit) }

    static func describeKind(_ kind: mode_t) -> String {
        switch kind {
        case S_IFDIR: return "a folder"
        case S_IFIFO: return "a FIFO (named pipe)"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        default: return "a special file"
        }
    }
}

/// Names a file or a user typed against the names a reader knows, for messages such as
/// `unknown key "lerning_rate" (did you mean "learning_rate"?)`.
public enum NameSuggestion {
    /// The known name closest to `name` by edit distance, when it is close enough to be a likely typo.
    public static func closest(to name: String, among known: some Sequence<String>) -> String? {
        var best: (name: String, distance: Int)?
        for candidate in known {
            let d = editDistance(name.lowercased(), candidate.lowercased())
            if d < (best?.distance ?? Int.max) { best = (candidate, d) }
        }
        guard let best, best.distance <= max(2, name.count / 3) else { return nil }
        return best.name
    }

    /// `unknown key "x"` with the nearest known name suggested when there is one.
    public static func unknown(_ what: String, _ name: String, among known: some Sequence<String>) -> String {
        let quoted = "\"\(Escaped.text(name))\""
        if let near = closest(to: name, among: known) { return "unknown \(what) \(quoted) (did you mean \"\(near)\"?)" }
        return "unknown \(what) \(quoted)"
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8), b = Array(b.utf8)
        if a.isEmpty { return b.count }
        var previous = Array(0...b.count), current = previous
        for i in 1...a.count {
            current[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}

/// Text that came from a file or a user, made safe to print on one terminal line:
/// control characters (escape sequences, newlines, NUL) become visible escapes.
public enum Escaped {
    public static func text(_ s: String, limit: Int = 200) -> String {
        var out = ""
        for scalar in s.unicodeScalars {
            if out.count >= limit { out += "…"; break }
            switch scalar.value {
            case 0x0A: out += "\\n"
            case 0x09: out += "\\t"
            case 0x0D: out += "\\r"
            case 0..<0x20, 0x7F, 0x80..<0xA0: out += String(format: "\\u{%X}", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
