/// A subject in a context: what one training image shows.
public struct Scene: Codable, Equatable, Sendable {
    public var identity: Identity
    public var context: Context
    public var seed: UInt64

    public init(identity: Identity, context: Context, seed: UInt64) {
        self.identity = identity; self.context = context; self.seed = seed
    }
}

/// Captions naming every element of a context, with varied wording and order
/// drawn from a seed. The subject is called by `placeholder` (a learned
/// token such as "<critter>") when given, else by its class word.
public enum WorldCaption {
    /// `companionPlaceholder` names the companion (when the context has one)
    /// by a learned token instead of its class word. With `describe` the
    /// subject's traits (`traitWords` at that detail) stand before its noun, as
    /// adjectives do in real captions ("a small dark golden spotted critter").
    public static func caption(for scene: Scene, placeholder: String? = nil, companionPlaceholder: String? = nil,
                               describe: TraitDetail? = nil, seed: UInt64) -> String {
        var rng = WorldRandom(seed: seed, stream: "caption")
        let c = scene.context
        let noun = placeholder ?? scene.identity.domain.classWord
        let size = rng.pick(c.size == .small ? ["small", "little", "tiny"] : ["large", "big"])
        let traits = describe.map { traitWords(scene.identity, detail: $0).map { $0 + " " }.joined() } ?? ""
        // A near framing names the shot instead of the size, from its own
        // stream: the rest of the wording is that of the wide shot.
        var framingRNG = WorldRandom(seed: seed, stream: "caption.framing")
        let shot = phrases(c.framing).map { framingRNG.pick($0) + " of " }
        let subject = shot.map { "\($0)a \(traits)\(noun)" } ?? "a \(size) \(traits)\(noun)"
        let photo = shot == nil ? "a photo of " : ""
        let position = rng.pick(phrases(c.position))
        let place = rng.pick(phrases(c.background))
        let style = rng.pick(phrases(c.style))
        let accessory = phrases(c.accessory).map { " " + rng.pick($0) } ?? ""
        let companion = c.companion ? " with a \(companionPlaceholder ?? scene.identity.domain.other.classWord)" : ""
        switch rng.int(4) {
        case 0: return "\(photo)\(subject)\(accessory) \(position) \(place)\(companion), \(style)"
        case 1: return "\(subject)\(accessory) \(place), \(position)\(companion), \(style)"
        case 2: return "\(style): \(subject)\(companion) \(place) \(position)\(accessory.isEmpty ? "" : ",\(accessory)")"
        default: return "\(place), \(subject)\(accessory)\(companion) \(position), \(style)"
        }
    }

    /// Words for an individual's traits at `detail` (`TraitWords`), in caption
    /// order. At a glance: body lightness, hue and markings — what a person
    /// would say; in full, every trait the renderer draws. Their use is to make
    /// the base model read the subject's appearance from the words next to its
    /// noun, at the subject's own pixels. Nested Attention acts through exactly
    /// that attention: a class word the model attends to everywhere alike (as
    /// it did when captions never described the subject: 0.08 of the attention
    /// at every position) gives it nothing to steer.
    /// No random draws: captions with and without traits keep their wording.
    public static func traitWords(_ id: Identity, detail: TraitDetail = .glance) -> [String] {
        TraitWords.table(detail).compactMap { $0.word(id) }
    }

    static func phrases(_ p: Position) -> [String] {
        switch p {
        case .left: return ["on the left", "to the left"]
        case .center: return ["in the center", "in the middle"]
        case .right: return ["on the right", "to the right"]
        }
    }

    static func phrases(_ b: Background) -> [String] {
        switch b {
        case .beach: return ["on the beach", "at the beach", "on a sunny beach"]
        case .forest: return ["in the forest", "in a pine forest"]
        case .city: return ["in the city", "on a city street"]
        case .snow: return ["in the snow", "on a snowy field"]
        case .desert: return ["in the desert", "on desert dunes"]
        case .nightSky: return ["under the night sky", "under a starry night sky"]
        }
    }

    static func phrases(_ s: Style) -> [String] {
        switch s {
        case .flat: return ["flat illustration", "flat colors", "flat style"]
        case .sketch: return ["sketch", "pencil sketch", "rough sketch"]
        case .night: return ["at night", "night scene", "by night"]
        }
    }

    /// Nil for the wide shot, which captions name by the subject's size.
    /// No hyphens: every word stays one token of the world's vocabulary.
    static func phrases(_ f: Framing) -> [String]? {
        switch f {
        case .scene: return nil
        case .portrait: return ["a portrait", "a bust portrait"]
        case .halfBody: return ["a half body shot", "a waist up shot"]
        case .closeUp: return ["a closeup", "a full body closeup"]
        }
    }

    static func phrases(_ a: Accessory) -> [String]? {
        switch a {
        case .none: return nil
        case .redHat: return ["wearing a red hat", "in a red hat"]
        case .blueScarf: return ["wearing a blue scarf", "with a blue scarf"]
        case .greenBow: return ["wearing a green bow", "with a green bow"]
        }
    }
}
