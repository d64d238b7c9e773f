// Crash-safe file replacement: write a temporary file next to the target,
// fsync it, then move it into place with one atomic directory operation.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sequential writer handed to the body of `writeAtomically`.
struct FileSink {
    fileprivate let fd: Int32
    fileprivate let path: String

    /// Writes all bytes, retrying short writes and EINTR (a single write(2)
    /// call transfers at most ~2 GiB on Linux, and tensors can be larger).
    func append(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { buffer in
            var done = 0
            while done < buffer.count {
                let n = write(fd, buffer.baseAddress! + done, buffer.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SafeTensorsError(.io, path: path, "write failed: \(errnoText())")
                }
                done += n
            }
        }
    }
}

/// Produces `path` via a temporary file in the same directory (so rename
/// stays within one filesystem and is atomic). A crash at any point leaves
/// either the previous file or the complete new one at `path`; at worst a
/// hidden ".<name>.tmp-*" file remains next to it.
///
/// Without `overwrite`, the final step uses link(2), which fails if the target
/// appeared in the meantime, so a concurrent writer's file is never clobbered.
func writeAtomically(path: String, overwrite: Bool, _ body: (FileSink) throws -> Void) throws {
    // Fail before doing any work if the answer is already known.
    if !overwrite, fileExists(path) {
        throw SafeTensorsError(.fileExists, path: path, "file already exists (pass overwrite: true to replace it)")
    }
    let (directory, filename) = splitPath(path)
    let temporary = "\(directory)/.\(filename).tmp-\(getpid())-\(String(UInt32.random(in: .min ... .max), radix: 16))"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else {
        throw SafeTensorsError(.io, path: path, "cannot create temporary file in \(directory): \(errnoText())")
    }
    var open = true
    var committed = false
    defer {
        if open { close(fd) }
        if !committed { unlink(temporary) }
    }

    try body(FileSink(fd: fd, path: path))
    // Data must be on disk before the rename is, or a power cut could leave
    // a complete-looking but empty file at the target.
    guard fsync(fd) == 0 else { throw SafeTensorsError(.io, path: path, "fsync failed: \(errnoText())") }
    open = false
    guard close(fd) == 0 else { throw SafeTensorsError(.io, path: path, "close failed: \(errnoText())") }

    if overwrite {
        guard rename(temporary, path) == 0 else {
            throw SafeTensorsError(.io, path: path, "rename failed: \(errnoText())")
        }
    } else {
        try linkWithoutReplacing(temporary, path)
        unlink(temporary)
    }
    committed = true
    syncDirectory(directory)
}

/// Atomic "create if absent". Falls back to check-then-rename on
/// filesystems without hard links (still never leaves a partial file).
private func linkWithoutReplacing(_ source: String, _ target: String) throws {
    if link(source, target) == 0 { return }
    let linkError = errno
    if linkError == EEXIST {
        throw SafeTensorsError(.fileExists, path: target, "file already exists (pass overwrite: true to replace it)")
    }
    guard [EPERM, EOPNOTSUPP, ENOSYS, EMLINK].contains(linkError) else {
        throw SafeTensorsError(.io, path: target, "link failed: \(String(cString: strerror(linkError)))")
    }
    if fileExists(target) {
        throw SafeTensorsError(.fileExists, path: target, "file already exists (pass overwrite: true to replace it)")
    }
    guard rename(source, target) == 0 else {
        throw SafeTensorsError(.io, path: target, "rename failed: \(errnoText())")
    }
}

/// Makes the rename itself durable. Best effort: some filesystems refuse to
/// fsync directories, and the file content is already safe by then.
private func syncDirectory(_ directory: String) {
    let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = fsync(fd)
    close(fd)
}

private func fileExists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0  // a dangling symlink still counts: do not replace it silently
}

/// ("dir", "name") for "dir/name"; "." for a bare file name.
func splitPath(_ path: String) -> (directory: String, filename: String) {
    guard let slash = path.lastIndex(of: "/") else { return (".", path) }
    let directory = String(path[..<slash])
    return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
}
