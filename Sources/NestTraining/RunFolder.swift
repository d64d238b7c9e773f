import Foundation
import NestIO
import NestModels

/// A training run's output folder: whether it may be used, what this run
/// created in it, and the leftovers of earlier runs that were killed.
public struct RunFolder {
    public let url: URL
    /// The topmost folder this run created (the output or an ancestor), nil when the output existed.
    public let created: URL?

    public var checkpoint: URL { url.appendingPathComponent("checkpoint.safetensors") }

    /// Refuses an output that already holds a run (without `resume`) or has
    /// no checkpoint to resume from, or is not a folder. Writes nothing, so a
    /// bad config or a missing model leaves no folder behind.
    public static func check(_ url: URL, resume: Bool) throws {
        let path = Escaped.text(url.path)
        var isFolder: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder)
        if exists && !isFolder.boolValue { throw ModelConfigError("output \(path) exists and is not a folder") }
        let checkpoint = url.appendingPathComponent("checkpoint.safetensors")
        let hasCheckpoint = FileManager.default.fileExists(atPath: checkpoint.path)
        if hasCheckpoint && !resume {
            throw ModelConfigError("\(path) already holds a run; pass --resume to continue it (or choose another output)")
        }
        if resume && !hasCheckpoint { throw ModelConfigError("--resume: no checkpoint at \(Escaped.text(checkpoint.path))") }
    }

    /// `output/name/` holding the model folder's `name/config.json`: where a
    /// run writes a trained component in diffusers' layout (its weights go beside).
    static func componentFolder(_ name: String, model: URL, output: URL) throws -> URL {
        let folder = output.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let data = try Data(contentsOf: model.appendingPathComponent(name + "/config.json"))
        try data.write(to: folder.appendingPathComponent("config.json"), options: .atomic)
        return folder
    }

    /// Creates the folder if needed (remembering what was created) and removes
    /// the temporary files that killed writes of earlier runs left in it.
    public static func open(_ url: URL) throws -> RunFolder {
        let fm = FileManager.default
        var topmost: URL? = nil
        var candidate = url.standardizedFileURL
        while !fm.fileExists(atPath: candidate.path) && candidate.path != "/" {
            topmost = candidate
            candidate = candidate.deletingLastPathComponent()
        }
        try fm.createDirectory(at: url, withIntermediateDirectories: true)
        let folder = RunFolder(url: url, created: topmost)
        folder.removeStaleTemporaries()
        return folder
    }

    /// Removes the atomic writers' temporary files (".<name>.tmp-<pid>-<hex>")
    /// in the folder and its immediate subfolders (samples/, the written
    /// components) whose writer is gone. Nothing else is touched: other
    /// hidden files are not this run's to delete. Returns the removed paths.
    @discardableResult
    public func removeStaleTemporaries() -> [String] {
        let fm = FileManager.default
        var folders = [url]
        for name in (try? fm.contentsOfDirectory(atPath: url.path)) ?? [] {
            let sub = url.appendingPathComponent(name)
            if let values = try? sub.resourceValues(forKeys: [.isDirectoryKey, .isSymbolicLinkKey]),
               values.isDirectory == true, values.isSymbolicLink != true {
                folders.append(sub)
            }
        }
        var removed: [String] = []
        for folder in folders {
            for name in (try? fm.contentsOfDirectory(atPath: folder.path)) ?? [] {
                guard let pid = AtomicWriteTemporary.writer(of: name), !AtomicWriteTemporary.writerIsRunning(pid) else { continue }
                let file = folder.appendingPathComponent(name)
                guard (try? file.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true else { continue }
                if (try? fm.removeItem(at: file)) != nil { removed.append(file.path) }
            }
        }
        return removed
    }

    /// After a failure: removes what this run created when nothing in it is
    /// worth keeping (no checkpoint yet). A folder that existed before the
    /// run is never removed, nor anything in it.
    public func discardIfUnused() {
        guard let created, !FileManager.default.fileExists(atPath: checkpoint.path) else { return }
        try? FileManager.default.removeItem(at: created)
    }
}

/// `log.jsonl`: one JSON object per line, each with the "step" it belongs to.
/// Lines are written before the checkpoint of their step, so a run killed in
/// between leaves lines its resume will write again.
public enum TrainingLog {
    /// Opens the log for appending, first dropping every line past `step`
    /// (the checkpoint the run continues from) and an unfinished last line.
    public static func open(_ url: URL, continuingAfter step: Int) throws -> FileHandle {
        if !FileManager.default.fileExists(atPath: url.path) {
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                throw ModelConfigError("cannot create \(Escaped.text(url.path))")
            }
        }
        let data = try RegularFile.read(url)
        let handle = try FileHandle(forWritingTo: url)
        let kept = keptLength(data, through: step)
        if kept < data.count { try handle.truncate(atOffset: UInt64(kept)) }
        try handle.seekToEnd()
        return handle
    }

    /// The byte length of the log's lines up to the first line past `step`
    /// (or the first line without its newline).
    public static func keptLength(_ data: Data, through step: Int) -> Int {
        let bytes = [UInt8](data)
        var start = 0
        while start < bytes.count {
            guard let end = bytes[start...].firstIndex(of: 10) else { return start }
            let line = Data(bytes[start..<end])
            if let object = try? JSONSerialization.jsonObject(with: line) as? [String: Any],
               let lineStep = object["step"] as? Int, lineStep > step {
                return start
            }
            start = end + 1
        }
        return start
    }
}
