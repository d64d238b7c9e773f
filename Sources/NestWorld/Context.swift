import Foundation

/// Where and how a subject is shown; everything here is named in captions.
public enum Background: String, Codable, CaseIterable, Sendable { case beach, forest, city, snow, desert, nightSky }
public enum Position: String, Codable, CaseIterable, Sendable { case left, center, right }
public enum SubjectSize: String, Codable, CaseIterable, Sendable { case small, large }
public enum Style: String, Codable, CaseIterable, Sendable { case flat, sketch, night }
public enum Accessory: String, Codable, CaseIterable, Sendable { case none, redHat, blueScarf, greenBow }

/// How near the camera stands. `scene` is the wide shot in which subjects
/// stand on the ground at one of two sizes; the others fill the frame with
/// the subject, as a face fills a portrait photo (`FramingGeometry`).
public enum Framing: String, Codable, CaseIterable, Sendable {
    case scene
    /// Head and shoulders fill most of the frame.
    case portrait
    /// The upper half of the subject, head included.
    case halfBody = "half-body"
    /// The whole subject, about 80% of the frame's height.
    case closeUp = "close-up"

    /// The framings in which the subject is large.
    public static let near: [Framing] = [.portrait, .halfBody, .closeUp]

    /// Reads a comma-separated list such as "portrait,half-body,close-up".
    public static func list(_ text: String) throws -> [Framing] {
        let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let framings = try names.map { name -> Framing in
            guard let framing = Framing(rawValue: name) else {
                throw WorldError("unknown framing '\(name)' (\(allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return framing
        }
        guard !framings.isEmpty else { throw WorldError("no framing named; choose from \(allCases.map(\.rawValue).joined(separator: ", "))") }
        return framings
    }
}

/// Where one subject stands in the frame.
public struct Placement: Codable, Equatable, Sendable {
    public var position: Position
    public var size: SubjectSize
    public var accessory: Accessory

    public init(position: Position = .center, size: SubjectSize = .large, accessory: Accessory = .none) {
        self.position = position; self.size = size; self.accessory = accessory
    }
}

/// The scene around the main subject.
public struct Context: Codable, Equatable, Sendable {
    public var background: Background
    public var position: Position
    public var size: SubjectSize
    public var style: Style
    public var accessory: Accessory
    /// A second subject of the other domain, standing on the opposite side.
    public var companion: Bool
    /// How near the camera is; outside `scene` the framing, not `size`, sets how large subjects are drawn.
    public var framing: Framing

    public init(background: Background = .beach, position: Position = .center, size: SubjectSize = .large,
                style: Style = .flat, accessory: Accessory = .none, companion: Bool = false, framing: Framing = .scene) {
        self.background = background; self.position = position; self.size = size
        self.style = style; self.accessory = accessory; self.companion = companion; self.framing = framing
    }

    /// A context drawn from `seed` (companions in about one scene in four).
    /// The framing is drawn from `framings` on its own stream, so every other
    /// element is the same whichever framings are allowed; a single framing
    /// draws nothing.
    public static func random(seed: UInt64, framings: [Framing] = [.scene]) -> Context {
        var rng = WorldRandom(seed: seed, stream: "context")
        var context = Context(background: rng.pick(Background.allCases), position: rng.pick(Position.allCases),
                              size: rng.pick(SubjectSize.allCases), style: rng.pick(Style.allCases),
                              accessory: rng.pick(Accessory.allCases), companion: rng.int(4) == 0)
        if framings.count == 1 {
            context.framing = framings[0]
        } else if !framings.isEmpty {
            var framingRNG = WorldRandom(seed: seed, stream: "framing")
            context.framing = framingRNG.pick(framings)
        }
        return context
    }

    /// Background × style pairs that adapter datasets can leave out
    /// (`nest world dataset --hold-out`) and `nest eval` prompts with: one
    /// context in six. The base model sees them (as SDXL has seen every kind
    /// of scene); the subject encoders never do.
    public static let heldOutPairs: [(Background, Style)] = [(.beach, .sketch), (.snow, .night), (.city, .flat)]

    /// Whether this context's background and style are a held-out pair.
    public var isHeldOut: Bool { Self.heldOutPairs.contains { $0.0 == background && $0.1 == style } }

    /// How a subject is shown to an encoder: centred, large, flat, nothing
    /// worn, alone — the world's analog of the aligned face crops the paper's
    /// encoder is given. Only the background varies. `framing`: the wide
    /// shot's large subject (`scene`, the first edition's references) or a
    /// near framing (`close-up` shows the whole subject and its markings).
    public static func reference(background: Background, framing: Framing = .scene) -> Context {
        Context(background: background, position: .center, size: .large, style: .flat, accessory: .none, companion: false,
                framing: framing)
    }

    public var placement: Placement { Placement(position: position, size: size, accessory: accessory) }
}

extension Context {
    enum CodingKeys: String, CodingKey { case background, position, size, style, accessory, companion, framing }

    /// Manifests written before framings existed have no `framing` key: they are `scene`.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(background: try c.decode(Background.self, forKey: .background),
                  position: try c.decode(Position.self, forKey: .position),
                  size: try c.decode(SubjectSize.self, forKey: .size), style: try c.decode(Style.self, forKey: .style),
                  accessory: try c.decode(Accessory.self, forKey: .accessory),
                  companion: try c.decode(Bool.self, forKey: .companion),
                  framing: try c.decodeIfPresent(Framing.self, forKey: .framing) ?? .scene)
    }

    /// `scene` is left out, so wide-shot manifests keep their bytes.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(background, forKey: .background); try c.encode(position, forKey: .position)
        try c.encode(size, forKey: .size); try c.encode(style, forKey: .style)
        try c.encode(accessory, forKey: .accessory); try c.encode(companion, forKey: .companion)
        if framing != .scene { try c.encode(framing, forKey: .framing) }
    }
}
