#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import NestIO

/// One training example from a JSON-lines manifest.
///
/// ```json
/// {"image": "img/0001.png", "caption": "a photo of <critter> on the beach",
///  "references": ["img/0007.png", "img/0012.png"], "mask": "mask/0001.png"}
/// ```
/// Paths are relative to the manifest's folder. Personalization samples have
/// references (other images of the same subject, not the target itself, so
/// the encoder learns identity rather than copying); base-model samples have
/// only an image and a caption.
public struct TrainingSample: Sendable, Equatable {
    public var line: Int
    public var image: URL
    public var caption: String
    public var references: [URL]
    public var mask: URL?
}

/// What to do with a record that cannot be used.
public enum BadRecordPolicy: String, Codable, Sendable { case skip, fail }

public struct ManifestProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public var description: String { "line \(line): \(message)" }
}

public struct ManifestError: Error, CustomStringConvertible {
    public let description: String
}

/// A parsed manifest: the usable samples and, for every record that was not
/// usable, its line number and why — never a silent drop.
public struct TrainingManifest {
    public let url: URL
    public let samples: [TrainingSample]
    public let problems: [ManifestProblem]

    /// Reads and checks every record. `placeholder`: captions must contain it
    /// (personalization); `requireReferences`: each sample needs references;
    /// `checkImages`: decode every image once to catch unreadable files early.
    public init(url: URL, placeholder: String? = nil, requireReferences: Bool = false,
                checkImages: Bool = true, policy: BadRecordPolicy = .skip) throws {
        self.url = url
        let data: Data
        do { data = try RegularFile.read(url, limit: Self.byteLimit) } catch let error as FileReadError {
            throw ManifestError(description: "cannot read the manifest: \(Escaped.text(error.description))")
        }
        let folder = url.deletingLastPathComponent()
        var samples: [TrainingSample] = [], problems: [ManifestProblem] = []
        var lineNumber = 0
        for raw in data.split(separator: 10, omittingEmptySubsequences: false) {
            lineNumber += 1
            do {
                guard let line = try Self.text(of: raw, number: lineNumber) else { continue }
                samples.append(try Self.parse(line, number: lineNumber, folder: folder, placeholder: placeholder,
                                              requireReferences: requireReferences, checkImages: checkImages))
            } catch let problem as ManifestProblem {
                if policy == .fail { throw ManifestError(description: "\(Escaped.text(url.path)): \(problem)") }
                problems.append(problem)
            }
        }
        if samples.isEmpty {
            throw ManifestError(description: "\(Escaped.text(url.path)): no usable samples" + (problems.isEmpty ? "" : " (\(problems.count) bad records, first: \(problems[0]))"))
        }
        self.samples = samples
        self.problems = problems
    }

    /// Manifests of millions of records stay far below this; it keeps a
    /// wrong file (a dataset archive given as the manifest) from filling memory.
    public static let byteLimit = 1 << 30
    /// A record names a few paths and a caption; a longer line is not one.
    public static let lineLimit = 1 << 16

    /// A line's text without surrounding whitespace, nil for blank lines and comments.
    static func text(of raw: Data, number: Int) throws -> String? {
        guard raw.count <= lineLimit else {
            throw ManifestProblem(line: number, message: "line is \(raw.count) bytes, more than the \(lineLimit) a record may have")
        }
        guard let decoded = String(data: raw, encoding: .utf8) else {
            throw ManifestProblem(line: number, message: "not valid UTF-8 text")
        }
        let line = decoded.trimmingCharacters(in: .whitespacesAndNewlines)
        return line.isEmpty || line.hasPrefix("#") ? nil : line
    }

    static func parse(_ line: String, number: Int, folder: URL, placeholder: String?, requireReferences: Bool,
                      checkImages: Bool) throws -> TrainingSample {
        func problem(_ message: String) -> ManifestProblem { ManifestProblem(line: number, message: message) }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
            throw problem("not a JSON object")
        }
        func path(_ key: String) throws -> String? {
            guard let value = object[key] else { return nil }
            guard let text = value as? String else { throw problem("\"\(key)\" must be a path (a string)") }
            return try checked(text, key)
        }
        func checked(_ text: String, _ key: String) throws -> String {
            if text.isEmpty { throw problem("\"\(key)\" is empty") }
            if text.contains("\u{0}") { throw problem("\"\(key)\" contains a NUL character") }
            return text
        }
        guard let image = try path("image") else { throw problem("missing \"image\"") }
        guard let captionValue = object["caption"] else { throw problem("missing \"caption\"") }
        guard let caption = captionValue as? String else { throw problem("\"caption\" must be a string") }
        if let placeholder, !caption.contains(placeholder) {
            throw problem("caption \"\(Escaped.text(caption))\" does not contain the placeholder \(Escaped.text(placeholder))")
        }
        var references: [String] = []
        if let value = object["references"] {
            guard let list = value as? [Any], list.allSatisfy({ $0 is String }) else {
                throw problem("\"references\" must be a list of paths (strings)")
            }
            references = try list.map { try checked($0 as! String, "references") }
        }
        if requireReferences && references.isEmpty { throw problem("no \"references\" for a personalization sample") }
        if references.contains(image) { throw problem("a reference is the target image itself (\(Escaped.text(image)))") }
        let resolve = { (path: String) -> URL in
            path.hasPrefix("/") ? URL(fileURLWithPath: path) : folder.appendingPathComponent(path)
        }
        var files = [resolve(image)] + references.map(resolve)
        let mask = try path("mask").map(resolve)
        if let mask { files.append(mask) }
        for file in files {
            guard FileManager.default.fileExists(atPath: file.path) else { throw problem("missing file \(Escaped.text(file.path))") }
            // A folder, a FIFO or a device is no image; reading one could block or never end.
            do { close(try RegularFile.open(file.path).descriptor) } catch {
                throw problem(Escaped.text(String(describing: error)))
            }
            if checkImages {
                do { _ = try ImageFile.decode(path: file.path) } catch {
                    throw problem("unreadable image: \(Escaped.text(String(describing: error)))")
                }
            }
        }
        return TrainingSample(line: number, image: resolve(image), caption: caption,
                              references: references.map(resolve), mask: mask)
    }
}
