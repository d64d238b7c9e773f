import Testing
@testable import NestWorld

@Suite struct WorldCaptionTests {
    static let words: [String: [String]] = [
        "beach": ["beach"], "forest": ["forest"], "city": ["city"], "snow": ["snow"], "desert": ["desert"],
        "nightSky": ["night sky"], "left": ["left"], "center": ["center", "middle"], "right": ["right"],
        "small": ["small", "little", "tiny"], "large": ["large", "big"], "flat": ["flat"], "sketch": ["sketch"],
        "night": ["night"], "redHat": ["red hat"], "blueScarf": ["blue scarf"], "greenBow": ["green bow"],
    ]

    func mentions(_ caption: String, _ key: String) -> Bool {
        Self.words[key]!.contains { caption.contains($0) }
    }

    @Test func captionsMentionEveryContextElement() {
        let id = Identity.random(domain: .critter, seed: 0)
        var count = 0
        for bg in Background.allCases {
            for style in Style.allCases {
                for acc in Accessory.allCases {
                    for pos in Position.allCases {
                        for size in SubjectSize.allCases {
                            count += 1
                            let context = Context(background: bg, position: pos, size: size, style: style,
                                                  accessory: acc, companion: count % 3 == 0)
                            let caption = WorldCaption.caption(for: Scene(identity: id, context: context, seed: 0),
                                                               placeholder: "<critter>", seed: UInt64(count))
                            for key in [bg.rawValue, style.rawValue, pos.rawValue, size.rawValue] {
                                #expect(mentions(caption, key), "\(key) missing: \(caption)")
                            }
                            if acc != .none { #expect(mentions(caption, acc.rawValue), "\(acc) missing: \(caption)") }
                            #expect(caption.contains("<critter>"))
                            #expect(caption.contains("bot") == context.companion, "\(caption)")
                        }
                    }
                }
            }
        }
    }

    @Test func captionsAreDeterministicVariedAndUseClassWordWithoutPlaceholder() {
        let scene = Scene(identity: Identity.random(domain: .bot, seed: 2),
                          context: Context(background: .snow, accessory: .redHat), seed: 0)
        #expect(WorldCaption.caption(for: scene, seed: 7) == WorldCaption.caption(for: scene, seed: 7))
        let captions = Set((0..<40 as Range<UInt64>).map { WorldCaption.caption(for: scene, seed: $0) })
        #expect(captions.count >= 10)
        #expect(captions.allSatisfy { $0.contains("bot") && !$0.contains("<") })
    }

    /// Trait words follow the individual, not the scene, and every word is
    /// reached: identities drawn at random cover each domain's four hues and
    /// the three markings.
    @Test func traitWordsNameLightnessHueAndMarking() {
        var seen = Set<String>()
        for seed in 0..<400 as Range<UInt64> {
            for domain in Domain.allCases {
                let id = Identity.random(domain: domain, seed: seed)
                let words = WorldCaption.traitWords(id)
                #expect((1...3).contains(words.count))
                #expect(words.contains("spotted") == (id.marking == .spots))
                #expect(words.contains("dark") == (id.bodyLightness < 0.45))
                seen.formUnion(words)
                let scene = Scene(identity: id, context: Context(background: .forest), seed: 0)
                let plainCaption = WorldCaption.caption(for: scene, seed: seed)
                let described = WorldCaption.caption(for: scene, describe: .glance, seed: seed)
                #expect(described == plainCaption.replacingOccurrences(
                    of: " \(domain.classWord)", with: " " + words.joined(separator: " ") + " \(domain.classWord)"))
            }
        }
        #expect(seen == ["dark", "pale", "crimson", "orange", "golden", "olive", "teal", "azure", "cobalt", "indigo",
                         "spotted", "striped", "patched"])
    }

    /// Full trait words: every band of every trait is reached, no word names two
    /// traits, the glance words are what the full table says of lightness, hue
    /// and markings, and the words change with the trait they name.
    @Test func fullTraitWordsNameEveryTrait() {
        var wordsPerTrait: [String: Set<String>] = [:]
        for seed in 0..<2000 as Range<UInt64> {
            for domain in Domain.allCases {
                let id = Identity.random(domain: domain, seed: seed)
                for trait in TraitWords.table(.full) {
                    if let word = trait.word(id) { wordsPerTrait[trait.name, default: []].insert(word) }
                }
                let full = WorldCaption.traitWords(id, detail: .full)
                #expect(full.count >= 4 && full.count <= 12, "\(full)")
                #expect(full.filter { $0.hasSuffix("tailed") || ["wheeled", "legged", "tracked"].contains($0) }.count == 1)
                let glance = WorldCaption.traitWords(id)
                let kinds: Set = ["spotted", "striped", "patched"]
                #expect(glance.filter { !kinds.contains($0) }.allSatisfy(full.contains), "lightness and hue words are shared")
                if let kind = glance.last, kinds.contains(kind) { #expect(full.last!.hasSuffix(kind)) }
            }
        }
        #expect(wordsPerTrait.count == TraitWords.table(.full).count)
        let counts = wordsPerTrait.mapValues(\.count)
        #expect(counts["body width"] == 2 && counts["eye spacing"] == 2 && counts["tail or limbs"] == 6)
        #expect(counts["ears or antennae"] == 18 && counts["accent colour"] == 12 && counts["markings and their colour"] == 21)
        let all = wordsPerTrait.values.flatMap { $0 }
        #expect(Set(all).count == all.count, "no word serves two traits")
        #expect(all.allSatisfy { $0.allSatisfy { $0.isLetter && $0.isLowercase } }, "one plain word each")
        var bigger = Identity.random(domain: .critter, seed: 5)
        bigger.eyeSize = 1.25
        #expect(WorldCaption.traitWords(bigger, detail: .full).contains("bigeyed"))
        bigger.eyeSize = 0.8
        #expect(WorldCaption.traitWords(bigger, detail: .full).contains("smalleyed"))
    }

    /// A lookalike has the same words at its detail and is another individual;
    /// full words pin the traits to their bands, glance words do not.
    @Test func lookalikesShareTheWordsAndNothingElse() {
        var differentEyeBand = 0
        for seed in 0..<200 as Range<UInt64> {
            for domain in Domain.allCases {
                let id = Identity.random(domain: domain, seed: seed)
                for detail in TraitDetail.allCases {
                    let twin = TraitWords.lookalike(of: id, detail: detail, seed: seed)
                    #expect(twin != id && twin.domain == domain && twin.markingSeed != id.markingSeed)
                    #expect(WorldCaption.traitWords(twin, detail: detail) == WorldCaption.traitWords(id, detail: detail))
                    #expect(TraitWords.lookalike(of: id, detail: detail, seed: seed) == twin, "same seed, same lookalike")
                    if detail == .glance, TraitWords.eyeSize.word(twin) != TraitWords.eyeSize.word(id) { differentEyeBand += 1 }
                }
            }
        }
        #expect(differentEyeBand > 100, "glance lookalikes differ in what glance words leave unsaid")
    }
}
