/// The two kinds of subject the world knows.
public enum Domain: String, Codable, CaseIterable, Sendable {
    case critter, bot

    /// The class word captions use when no placeholder is given.
    public var classWord: String { rawValue }

    public var other: Domain { self == .critter ? .bot : .critter }
}

/// Body markings; their colour is a separate trait.
public enum Marking: String, Codable, CaseIterable, Sendable { case none, spots, stripes, patch }

/// One individual: a point in the domain's trait space. Every individual of
/// a domain is drawn from the same template, so they look alike at a glance
/// and differ in proportions, palette, markings, face and appendages — the
/// fine-grained differences personalization has to learn.
public struct Identity: Codable, Equatable, Sendable {
    public var domain: Domain
    /// Body half-extent multipliers (about 0.8...1.2).
    public var bodyWidth: Float
    public var bodyHeight: Float
    public var headSize: Float
    public var bodyHue: Float, bodySaturation: Float, bodyLightness: Float
    public var accentHue: Float, accentSaturation: Float, accentLightness: Float
    public var marking: Marking
    public var markingHue: Float, markingLightness: Float
    /// Seeds where spots fall, so markings are part of who the subject is.
    public var markingSeed: UInt64
    /// Eye radius multiplier and distance between eyes (fractions of head size).
    public var eyeSize: Float
    public var eyeSpacing: Float
    /// Critter: 0 pointed ears, 1 round ears, 2 horns. Bot: 0 one ball antenna,
    /// 1 two antennae, 2 zigzag antenna.
    public var appendageStyle: Int
    public var appendageLength: Float
    /// Critter tail: 0 straight, 1 curled, 2 bushy. Bot: 0 wheels, 1 legs, 2 treads.
    public var limbStyle: Int

    /// Draws an individual of `domain` from `seed`; same seed, same individual.
    public static func random(domain: Domain, seed: UInt64) -> Identity {
        var rng = WorldRandom(seed: seed, stream: "identity." + domain.rawValue)
        // Each domain keeps to its own hue family so the template, not the
        // colour, is what says "critter" or "bot".
        let hueBase: Float = domain == .critter ? 0 : 170
        return Identity(
            domain: domain,
            bodyWidth: rng.uniform(0.8, 1.2), bodyHeight: rng.uniform(0.8, 1.2), headSize: rng.uniform(0.8, 1.2),
            bodyHue: hueBase + rng.uniform(0, 70), bodySaturation: rng.uniform(0.25, 0.75),
            bodyLightness: rng.uniform(0.35, 0.65),
            accentHue: rng.uniform(0, 360), accentSaturation: rng.uniform(0.3, 0.9),
            accentLightness: rng.uniform(0.55, 0.85),
            marking: rng.pick(Marking.allCases),
            markingHue: rng.uniform(0, 360), markingLightness: rng.uniform(0.15, 0.8),
            markingSeed: rng.next(),
            eyeSize: rng.uniform(0.75, 1.3), eyeSpacing: rng.uniform(0.3, 0.55),
            appendageStyle: rng.int(3), appendageLength: rng.uniform(0.7, 1.3),
            limbStyle: rng.int(3))
    }

    public var bodyColor: WorldColor {
        WorldColor(hue: bodyHue, saturation: bodySaturation, lightness: bodyLightness)
    }
    public var accentColor: WorldColor {
        WorldColor(hue: accentHue, saturation: accentSaturation, lightness: accentLightness)
    }
    public var markingColor: WorldColor {
        WorldColor(hue: markingHue, saturation: 0.5, lightness: markingLightness)
    }
}
