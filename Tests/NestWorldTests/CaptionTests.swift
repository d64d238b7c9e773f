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
}
