import Foundation

/// The one folder the server writes to: each result as `NNNNN-SEED.png`, attention maps
/// under `attention/NNNNN/`. Numbers continue after the highest already there, and no
/// file is ever overwritten. Files are served back only by plain names inside it.
public final class OutputFolder: @unchecked Sendable {
    public struct Entry: Sendable {
        public let name: String
        public let parameters: String
    }

    public let url: URL
    private let lock = NSLock()
    private var next: Int
    private var entries: [Entry] = []
    /// Names of the attention-map files of the last personalized job that recorded them, and their folder.
    private var lastAttention: (folder: String, files: [String])?
    /// How many results the gallery lists (the files stay on disk).
    let galleryLength = 200

    public init(url: URL) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: url, withIntermediateDirectories: true)
        var isFolder: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isFolder), isFolder.boolValue, fm.isWritableFile(atPath: url.path) else {
            throw RequestFieldError("output", "\(url.path) is not a writable folder")
        }
        self.url = url.standardizedFileURL
        let numbers = (try? fm.contentsOfDirectory(atPath: url.path))?.compactMap { Int($0.prefix { $0.isNumber }) } ?? []
        let attention = (try? fm.contentsOfDirectory(atPath: url.appendingPathComponent("attention").path))?.compactMap { Int($0) } ?? []
        next = (numbers + attention).max().map { $0 + 1 } ?? 1
    }

    /// A fresh job number; its attention folder does not exist yet.
    public func reserveNumber() -> Int {
        lock.lock(); defer { lock.unlock() }
        next += 1
        return next - 1
    }

    public func attentionFolder(job: Int) -> URL {
        url.appendingPathComponent("attention").appendingPathComponent(String(format: "%05d", job))
    }

    /// Writes one result PNG (never replacing a file) and lists it in the gallery.
    public func save(png: Data, seed: UInt64, job: Int, index: Int, parameters: String) throws -> String {
        let name = String(format: "%05d-%d-%llu.png", job, index, seed)
        try png.write(to: url.appendingPathComponent(name), options: .withoutOverwriting)
        lock.lock(); defer { lock.unlock() }
        entries.append(Entry(name: name, parameters: parameters))
        if entries.count > galleryLength { entries.removeFirst(entries.count - galleryLength) }
        return name
    }

    public func recordAttention(job: Int) {
        let folder = attentionFolder(job: job)
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".png") }.sorted()
        lock.lock(); defer { lock.unlock() }
        lastAttention = (folder.lastPathComponent, files)
    }

    /// This server's results, newest first.
    public var gallery: [Entry] {
        lock.lock(); defer { lock.unlock() }
        return entries.reversed()
    }

    /// Paths (relative to the folder) of the last recorded attention maps.
    public var attentionMaps: [String] {
        lock.lock(); defer { lock.unlock() }
        guard let lastAttention else { return [] }
        return lastAttention.files.map { "attention/\(lastAttention.folder)/\($0)" }
    }

    /// The bytes of a PNG in the folder, by path components that are plain names
    /// (letters, digits, `-`, `_`, `.`, `<`, `>`; no `..`): nil for anything else.
    public func read(_ components: [String]) -> Data? {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_.<>"))
        guard !components.isEmpty, components.count <= 3, components.last!.hasSuffix(".png") else { return nil }
        for part in components {
            guard !part.isEmpty, part != ".", part != "..", !part.hasPrefix("."),
                  part.unicodeScalars.allSatisfy({ allowed.contains($0) && $0.isASCII }) else { return nil }
        }
        let file = components.reduce(url) { $0.appendingPathComponent($1) }.standardizedFileURL
        guard file.path.hasPrefix(url.path + "/") else { return nil }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: file.path, isDirectory: &isFolder), !isFolder.boolValue else { return nil }
        // Symbolic links could point outside the folder.
        guard file.resolvingSymlinksInPath().path.hasPrefix(url.resolvingSymlinksInPath().path + "/") else { return nil }
        return try? Data(contentsOf: file)
    }
}
