import Foundation

/// `world.json` in a world model folder: how the world's pictures are framed,
/// written by `nest world model --framings` and carried through training and
/// packing, so the evaluation prompts in the framings the model was trained
/// on and shows subjects as its adapters saw them. A folder without it is a
/// first-edition world: wide shots with wide-shot references.
public struct WorldSettings: Codable, Equatable, Sendable {
    public var framings: [Framing]
    public var referenceFraming: Framing
    /// The trait words its captions name subjects with (`--describe`); the
    /// evaluation's trait-words and lookalike rows use the same. Glance where unset.
    public var traitWords: TraitDetail

    enum CodingKeys: String, CodingKey { case framings, referenceFraming = "reference_framing", traitWords = "trait_words" }

    public static let fileName = "world.json"
    public static let firstEdition = WorldSettings(framings: [.scene], referenceFraming: .scene)

    public init(framings: [Framing], referenceFraming: Framing, traitWords: TraitDetail = .glance) {
        self.framings = framings; self.referenceFraming = referenceFraming; self.traitWords = traitWords
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        framings = try c.decode([Framing].self, forKey: .framings)
        referenceFraming = try c.decode(Framing.self, forKey: .referenceFraming)
        if let name = try c.decodeIfPresent(String.self, forKey: .traitWords) {
            guard let detail = TraitDetail(rawValue: name) else {
                throw WorldError("\"trait_words\" is \"\(name)\"; use one of \(TraitDetail.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            traitWords = detail
        } else {
            traitWords = .glance
        }
    }

    /// The settings of the model folder `folder`; the first edition's where it has no `world.json`.
    public static func read(model folder: URL) throws -> WorldSettings {
        let url = folder.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return firstEdition }
        do {
            let settings = try JSONDecoder().decode(WorldSettings.self, from: Data(contentsOf: url))
            guard !settings.framings.isEmpty else { throw WorldError("no framings listed") }
            return settings
        } catch let error as WorldError {
            throw WorldError("\(url.path): \(error)")
        } catch {
            throw WorldError("\(url.path): not a world settings file (\"framings\": [...], \"reference_framing\": \"...\")")
        }
    }

    public func write(model folder: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: folder.appendingPathComponent(Self.fileName), options: .atomic)
    }
}
