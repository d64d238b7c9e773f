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
                let described = WorldCaption.caption(for: scene, describe: true, seed: seed)
                #expect(described == plainCaption.replacingOccurrences(
                    of: " \(domain.classWord)", with: " " + words.joined(separator: " ") + " \(domain.classWord)"))
            }
        }
        #expect(seen == ["dark", "pale", "crimson", "orange", "golden", "olive", "teal", "azure", "cobalt", "indigo",
                         "spotted", "striped", "patched"])
    }
}
