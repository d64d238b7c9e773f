/// Where and how a subject is shown; everything here is named in captions.
public enum Background: String, Codable, CaseIterable, Sendable { case beach, forest, city, snow, desert, nightSky }
public enum Position: String, Codable, CaseIterable, Sendable { case left, center, right }
public enum SubjectSize: String, Codable, CaseIterable, Sendable { case small, large }
public enum Style: String, Codable, CaseIterable, Sendable { case flat, sketch, night }
public enum Accessory: String, Codable, CaseIterable, Sendable { case none, redHat, blueScarf, greenBow }

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

    public init(background: Background = .beach, position: Position = .center, size: SubjectSize = .large,
                style: Style = .flat, accessory: Accessory = .none, companion: Bool = false) {
        self.background = background; self.position = position; self.size = size
        self.style = style; self.accessory = accessory; self.companion = companion
    }

    /// A context drawn from `seed` (companions in about one scene in four).
    public static func random(seed: UInt64) -> Context {
        var rng = WorldRandom(seed: seed, stream: "context")
        return Context(background: rng.pick(Background.allCases), position: rng.pick(Position.allCases),
                       size: rng.pick(SubjectSize.allCases), style: rng.pick(Style.allCases),
                       accessory: rng.pick(Accessory.allCases), companion: rng.int(4) == 0)
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
    /// encoder is given. Only the background varies.
    public static func portrait(background: Background) -> Context {
        Context(background: background, position: .center, size: .large, style: .flat, accessory: .none, companion: false)
    }

    public var placement: Placement { Placement(position: position, size: size, accessory: accessory) }
}
