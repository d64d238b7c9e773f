#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// POSIX file access for images. We use the system calls directly rather
/// than Foundation so that errors carry the plain strerror text and so that
/// writes can be made atomic (temp file + fsync + rename) with full control.
enum ImageFileIO {
    static func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    /// Reads a whole file. Decoders take memory buffers, so this is the only
    /// place image input touches the file system.
    static func readFile(path: String) throws -> Data {
        do { return try RegularFile.read(path, limit: ImageLimits.maxFileBytes) } catch let error as FileReadError {
            throw ImageError(.unreadable, file: path, reason: error.reason)
        }
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    static func alreadyExistsError(_ path: String) -> ImageError {
        ImageError(.alreadyExists, file: path, reason: "already exists; pass --overwrite to replace it")
    }

    /// Writes `data` so that `path` is either untouched or holds the complete
    /// new contents, never a partial file: a crash mid-generation must not
    /// leave a half-written PNG, or destroy the image it was replacing.
    ///
    /// The data goes to a hidden temporary file in the same directory (so the
    /// final rename stays on one file system), is fsynced, then renamed into
    /// place. Without `overwrite`, the publish step is link(2), which fails
    /// atomically if the target appeared meanwhile.
    static func writeAtomically(_ data: Data, to path: String, overwrite: Bool) throws {
        if !overwrite && exists(path) { throw alreadyExistsError(path) }
        let (directory, base) = split(path)
        let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let temporary = "\(directory)/.\(base).tmp-\(getpid())-\(suffix)"

        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw ImageError(.writeFailed, file: path,
                             reason: "cannot create temporary file in \(directory) (\(errnoText()))")
        }
        var published = false
        defer { if !published { unlink(temporary) } }

        do {
            try writeAll(data, to: fd, path: path)
            guard fsync(fd) == 0 else {
                throw ImageError(.writeFailed, file: path, reason: "fsync failed (\(errnoText()))")
            }
        } catch {
            close(fd)
            throw error
        }
        guard close(fd) == 0 else {
            throw ImageError(.writeFailed, file: path, reason: "close failed (\(errnoText()))")
        }

        try publish(temporary, to: path, overwrite: overwrite)
        published = true
        syncDirectory(directory)
    }

    private static func writeAll(_ data: Data, to fd: Int32, path: String) throws {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            var offset = 0
            while offset < raw.count {
                let written = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw ImageError(.writeFailed, file: path, reason: "write failed (\(errnoText()))")
                }
                offset += written
            }
        }
    }

    private static func publish(_ temporary: String, to path: String, overwrite: Bool) throws {
        if overwrite {
            guard rename(temporary, path) == 0 else {
                throw ImageError(.writeFailed, file: path, reason: "cannot rename into place (\(errnoText()))")
            }
            return
        }
        if link(temporary, path) == 0 {
            unlink(temporary)
            return
        }
        let code = errno
        if code == EEXIST { throw alreadyExistsError(path) }
        // Some file systems (FAT, certain FUSE mounts) lack hard links. Fall
        // back to check-then-rename, which is atomic for the contents but has
        // a small race on the existence check.
        guard [EPERM, ENOTSUP, EOPNOTSUPP, ENOSYS, EMLINK, EXDEV].contains(code) else {
            throw ImageError(.writeFailed, file: path, reason: "cannot link into place (\(errnoText(code)))")
        }
        if exists(path) { throw alreadyExistsError(path) }
        guard rename(temporary, path) == 0 else {
            throw ImageError(.writeFailed, file: path, reason: "cannot rename into place (\(errnoText()))")
        }
    }

    /// Makes the rename itself durable. Best effort: some file systems refuse
    /// fsync on directories, and the data is already safely written.
    private static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    /// ("dir", "name") for "dir/name"; "." for a bare name.
    static func split(_ path: String) -> (directory: String, base: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }
}
