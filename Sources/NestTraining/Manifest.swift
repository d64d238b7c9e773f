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
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw ManifestError(description: "\(url.path): cannot read the manifest")
        }
        let folder = url.deletingLastPathComponent()
        var samples: [TrainingSample] = [], problems: [ManifestProblem] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            do {
                samples.append(try Self.parse(line, number: lineNumber, folder: folder, placeholder: placeholder,
                                              requireReferences: requireReferences, checkImages: checkImages))
            } catch let problem as ManifestProblem {
                if policy == .fail { throw ManifestError(description: "\(url.path): \(problem)") }
                problems.append(problem)
            }
        }
        if samples.isEmpty {
            throw ManifestError(description: "\(url.path): no usable samples" + (problems.isEmpty ? "" : " (\(problems.count) bad records, first: \(problems[0]))"))
        }
        self.samples = samples
        self.problems = problems
    }

    static func parse(_ line: String, number: Int, folder: URL, placeholder: String?, requireReferences: Bool,
                      checkImages: Bool) throws -> TrainingSample {
        func problem(_ message: String) -> ManifestProblem { ManifestProblem(line: number, message: message) }
        guard let data = line.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw problem("not a JSON object")
        }
        guard let image = object["image"] as? String else { throw problem("missing \"image\"") }
        guard let caption = object["caption"] as? String else { throw problem("missing \"caption\"") }
        if let placeholder, !caption.contains(placeholder) {
            throw problem("caption \"\(caption)\" does not contain the placeholder \(placeholder)")
        }
        let references = (object["references"] as? [String]) ?? []
        if requireReferences && references.isEmpty { throw problem("no \"references\" for a personalization sample") }
        if references.contains(image) { throw problem("a reference is the target image itself (\(image))") }
        let resolve = { (path: String) -> URL in
            path.hasPrefix("/") ? URL(fileURLWithPath: path) : folder.appendingPathComponent(path)
        }
        var files = [resolve(image)] + references.map(resolve)
        let mask = (object["mask"] as? String).map(resolve)
        if let mask { files.append(mask) }
        for file in files {
            guard FileManager.default.fileExists(atPath: file.path) else { throw problem("missing file \(file.path)") }
            if checkImages {
                do { _ = try ImageFile.decode(path: file.path) } catch { throw problem("unreadable image: \(error)") }
            }
        }
        return TrainingSample(line: number, image: resolve(image), caption: caption,
                              references: references.map(resolve), mask: mask)
    }
}
