/// How much of an individual a caption puts into words.
public enum TraitDetail: String, Codable, CaseIterable, Sendable {
    /// Body lightness, body hue and markings: what a person says at a glance.
    /// Many individuals share them (a lookalike with the same words scores
    /// 0.04–0.07 on the identity metric).
    case glance
    /// Every trait the renderer draws, each cut into two or three bands:
    /// colours, proportions, eyes, ears or antennae, tail or limbs, markings
    /// and their colour. Only the markings' layout stays unnamed.
    case full
}

/// One trait of an individual put into a word: `word` names the band the
/// individual's value falls in (nil: the middle band, which captions leave
/// unsaid), `copy` moves the values behind the word from one individual to
/// another, so a lookalike can be built trait by trait.
public struct TraitWord: Sendable {
    public let name: String
    public let word: @Sendable (Identity) -> String?
    let copy: @Sendable (inout Identity, Identity) -> Void
}

/// The trait words, in caption order. Every word is one token of the world's
/// vocabulary (compounds, no hyphens) and no word serves two traits, so the
/// order of the adjectives is never needed to read them.
public enum TraitWords {
    public static func table(_ detail: TraitDetail) -> [TraitWord] {
        switch detail {
        case .glance: return [lightness, hue, marking]
        case .full: return [lightness, saturation, hue, width, height, head, eyeSize, eyeSpacing, appendage, limbs, accent, colouredMarking]
        }
    }

    /// Another individual of `identity`'s domain with the same words at
    /// `detail`: each trait drawn afresh until its word matches (so from the
    /// world's own distribution, within the band), everything unnamed (the
    /// markings' layout, values inside a band) left to the draw. From `seed`.
    public static func lookalike(of identity: Identity, detail: TraitDetail, seed: UInt64) -> Identity {
        var rng = WorldRandom(seed: seed, stream: "traits.lookalike")
        var result = Identity.random(domain: identity.domain, seed: rng.next())
        for trait in table(detail) {
            let target = trait.word(identity)
            var draw = Identity.random(domain: identity.domain, seed: rng.next())
            while trait.word(draw) != target { draw = Identity.random(domain: identity.domain, seed: rng.next()) }
            trait.copy(&result, draw)
        }
        return result
    }

    /// Low / middle (unsaid) / high thirds of a uniform trait's range.
    static func band(_ value: Float, _ low: Float, _ high: Float, _ words: (String, String)) -> String? {
        let third = (high - low) / 3
        return value < low + third ? words.0 : value > high - third ? words.1 : nil
    }

    /// Six hue names for colours that range over the whole wheel.
    static func hueName(_ hue: Float) -> String {
        let names = ["red", "yellow", "green", "cyan", "blue", "purple"]
        let h = (hue + 30).truncatingRemainder(dividingBy: 360)
        return names[min(5, Int(h / 60))]
    }

    static let lightness = TraitWord(name: "body lightness", word: {
        $0.bodyLightness < 0.45 ? "dark" : $0.bodyLightness > 0.55 ? "pale" : nil
    }, copy: { $0.bodyLightness = $1.bodyLightness })
    static let saturation = TraitWord(name: "body saturation", word: { band($0.bodySaturation, 0.25, 0.75, ("muted", "vivid")) },
                                      copy: { $0.bodySaturation = $1.bodySaturation })
    static let hue = TraitWord(name: "body hue", word: { id in
        let h = id.bodyHue
        switch id.domain {
        case .critter: return h < 15 ? "crimson" : h < 35 ? "orange" : h < 55 ? "golden" : "olive"
        case .bot: return h < 188 ? "teal" : h < 205 ? "azure" : h < 222 ? "cobalt" : "indigo"
        }
    }, copy: { $0.bodyHue = $1.bodyHue })
    static let width = TraitWord(name: "body width", word: { band($0.bodyWidth, 0.8, 1.2, ("slender", "stout")) },
                                 copy: { $0.bodyWidth = $1.bodyWidth })
    static let height = TraitWord(name: "body height", word: { band($0.bodyHeight, 0.8, 1.2, ("squat", "tall")) },
                                  copy: { $0.bodyHeight = $1.bodyHeight })
    static let head = TraitWord(name: "head size", word: { band($0.headSize, 0.8, 1.2, ("smallheaded", "bigheaded")) },
                                copy: { $0.headSize = $1.headSize })
    static let eyeSize = TraitWord(name: "eye size", word: { band($0.eyeSize, 0.75, 1.3, ("smalleyed", "bigeyed")) },
                                   copy: { $0.eyeSize = $1.eyeSize })
    static let eyeSpacing = TraitWord(name: "eye spacing", word: { band($0.eyeSpacing, 0.3, 0.55, ("closeeyed", "wideeyed")) },
                                      copy: { $0.eyeSpacing = $1.eyeSpacing })
    /// Ears or horns (critter), antennae (bot), with their length: "longroundeared".
    static let appendage = TraitWord(name: "ears or antennae", word: { id in
        let length = band(id.appendageLength, 0.7, 1.3, ("short", "long")) ?? ""
        let styles = id.domain == .critter ? ["pointyeared", "roundeared", "horned"]
                                           : ["knobantennaed", "twinantennaed", "zigzagantennaed"]
        return length + styles[id.appendageStyle]
    }, copy: { $0.appendageStyle = $1.appendageStyle; $0.appendageLength = $1.appendageLength })
    static let limbs = TraitWord(name: "tail or limbs", word: { id in
        (id.domain == .critter ? ["straighttailed", "curlytailed", "bushytailed"] : ["wheeled", "legged", "tracked"])[id.limbStyle]
    }, copy: { $0.limbStyle = $1.limbStyle })
    /// The critter's belly and ears, the bot's glow.
    static let accent = TraitWord(name: "accent colour", word: { id in
        hueName(id.accentHue) + (id.domain == .critter ? "bellied" : "glowing")
    }, copy: { $0.accentHue = $1.accentHue })
    static let marking = TraitWord(name: "markings", word: { id in
        switch id.marking {
        case .none: return nil
        case .spots: return "spotted"
        case .stripes: return "striped"
        case .patch: return "patched"
        }
    }, copy: { $0.marking = $1.marking })
    /// Markings with their colour ("bluespotted"; "black" for the darkest).
    static let colouredMarking = TraitWord(name: "markings and their colour", word: { id in
        guard let kind = marking.word(id) else { return nil }
        return (id.markingLightness < 0.35 ? "black" : hueName(id.markingHue)) + kind
    }, copy: { $0.marking = $1.marking; $0.markingHue = $1.markingHue; $0.markingLightness = $1.markingLightness })
}
