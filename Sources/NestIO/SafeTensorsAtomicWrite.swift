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
    let temporary = "\(directory)/\(AtomicWriteTemporary.name(for: filename))"
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

/// The names of the atomic writers' temporary files, ".<name>.tmp-<pid>-<hex>"
/// (the image writer uses the same form). A process killed between creating
/// one and renaming it leaves it behind; whoever owns the folder can find it
/// by this name and remove it.
public enum AtomicWriteTemporary {
    static func name(for filename: String) -> String {
        ".\(filename).tmp-\(getpid())-\(String(UInt32.random(in: .min ... .max), radix: 16))"
    }

    /// The process that created the temporary file `name`, or nil when
    /// `name` is not a temporary file's name.
    public static func writer(of name: String) -> Int32? {
        guard name.hasPrefix("."), let marker = name.range(of: ".tmp-", options: .backwards),
              marker.lowerBound > name.index(after: name.startIndex) else { return nil }
        let parts = name[marker.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].allSatisfy({ ("0"..."9").contains($0) }), let pid = Int32(parts[0]), pid > 0,
              !parts[1].isEmpty, parts[1].allSatisfy({ ("0"..."9").contains($0) || ("a"..."f").contains($0) }) else { return nil }
        return pid
    }

    /// Whether the writer of a temporary file may still be writing it: its
    /// process is alive and is not this one (this process writes nothing
    /// while it looks for leftovers, and a restarted container may well give
    /// the new run the dead run's process id).
    public static func writerIsRunning(_ pid: Int32) -> Bool {
        if pid == getpid() { return false }
        return kill(pid, 0) == 0 || errno == EPERM
    }
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
