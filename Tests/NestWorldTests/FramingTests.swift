import Foundation
import NestIO
import Testing
@testable import NestWorld

/// FNV-1a over bytes, continuing from `hash`.
func fnv1a<S: Sequence>(_ bytes: S, _ hash: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 where S.Element == UInt8 {
    var h = hash
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}

/// Fraction of the image where the scene with `subjects` differs from the
/// same scene with subject `index` left out (kept in place, not drawn), and
/// the centre of mass of that area.
func coverage(_ subjects: [PlacedSubject], index: Int, framing: Framing, side: Int = 64) -> (fraction: Double, centerX: Double) {
    let full = WorldRenderer.render(subjects: subjects, background: .snow, style: .flat, seed: 4, framing: framing, side: side)
    var hidden = subjects
    hidden[index].visible = false
    let without = WorldRenderer.render(subjects: hidden, background: .snow, style: .flat, seed: 4, framing: framing, side: side)
    var count = 0, sumX = 0
    for y in 0..<side {
        for x in 0..<side {
            let i = (y * side + x) * 3
            if (0..<3).contains(where: { full.pixels[i + $0] != without.pixels[i + $0] }) { count += 1; sumX += x }
        }
    }
    return (Double(count) / Double(side * side), count > 0 ? Double(sumX) / Double(count) : 0)
}

@Suite struct FramingTests {
    let critter = Identity.random(domain: .critter, seed: 1)
    let bot = Identity.random(domain: .bot, seed: 1)

    /// The wide shot renders as it did before framings and image sides
    /// existed: the digest of a dataset's manifest and of every image's pixels
    /// (scenes, masks, portraits) was recorded with the renderer of commit
    /// 416c265 (`nest world dataset --identities 2 --contexts 10 --seed 11
    /// --portraits 1 --masks --describe 0.5`; 84 images).
    @Test func wideShotScenesRenderAsBefore() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nestworld-old-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try WorldDataset.write(to: folder, identitiesPerDomain: 2, contextsPerIdentity: 10, seed: 11,
                               portraits: 1, masks: true, describe: 0.5)
        var hash = fnv1a(try Data(contentsOf: folder.appendingPathComponent("manifest.jsonl")))
        let images = FileManager.default.enumerator(atPath: folder.appendingPathComponent("images").path)!
            .compactMap { $0 as? String }.filter { $0.hasSuffix(".png") }.sorted()
        #expect(images.count == 84)
        for path in images {
            hash = fnv1a(try ImageFile.decode(path: folder.appendingPathComponent("images/" + path).path).pixels, hash)
        }
        #expect(hash == 0xd379_784d_9f00_81b1)
    }

    @Test func everyFramingAndSideIsDeterministic() {
        for framing in Framing.allCases {
            for side in [64, 96, 128] {
                for id in [critter, bot] {
                    let context = Context(background: .forest, position: .left, style: .sketch, accessory: .redHat,
                                          companion: true, framing: framing)
                    let a = WorldRenderer.render(identity: id, context: context, seed: 8, side: side)
                    let b = WorldRenderer.render(identity: id, context: context, seed: 8, side: side)
                    #expect(a.width == side && a.height == side)
                    #expect(a.pixels == b.pixels, "\(framing) \(side)")
                    let other = WorldRenderer.render(identity: id, context: context, seed: 9, side: side)
                    #expect(a.pixels != other.pixels, "the seed still moves props and jitter")
                }
            }
        }
    }

    /// A larger side draws the same scene finer: box-filtered back to 64
    /// pixels it is close to the 64-pixel render.
    @Test func largerSidesDrawTheSameScene() {
        for framing in [Framing.scene, .portrait] {
            let context = Context(background: .beach, accessory: .blueScarf, framing: framing)
            let small = WorldRenderer.render(identity: critter, context: context, seed: 3)
            let large = WorldRenderer.render(identity: critter, context: context, seed: 3, side: 128)
            var pixels = [UInt8](repeating: 0, count: 64 * 64 * 3)
            for y in 0..<64 {
                for x in 0..<64 {
                    for c in 0..<3 {
                        var sum = 0
                        for dy in 0..<2 { for dx in 0..<2 { sum += Int(large.pixels[((2 * y + dy) * 128 + 2 * x + dx) * 3 + c]) } }
                        pixels[(y * 64 + x) * 3 + c] = UInt8((sum + 2) / 4)
                    }
                }
            }
            let reduced = try! RGBImage(width: 64, height: 64, pixels: pixels)
            #expect(meanDifference(reduced, small) < 1.5, "\(framing): \(meanDifference(reduced, small))")
            let otherScene = WorldRenderer.render(identity: bot, context: context, seed: 3)
            #expect(meanDifference(otherScene, small) > 5 * meanDifference(reduced, small))
        }
    }

    /// Near framings fill the frame: the subject covers far more of the image
    /// than the wide shot's large subject does.
    @Test func nearFramingsDrawTheSubjectLarge() {
        for id in [critter, bot] {
            let alone = [PlacedSubject(id, Placement(size: .large))]
            let wide = coverage(alone, index: 0, framing: .scene).fraction
            let portrait = coverage(alone, index: 0, framing: .portrait).fraction
            let halfBody = coverage(alone, index: 0, framing: .halfBody).fraction
            let closeUp = coverage(alone, index: 0, framing: .closeUp).fraction
            #expect(wide < 0.3, "\(id.domain) wide \(wide)")
            #expect(portrait > 0.4 && halfBody > 0.4 && closeUp > 0.3,
                    "\(id.domain): portrait \(portrait), half-body \(halfBody), close-up \(closeUp)")
            #expect(closeUp > 1.5 * wide, "\(id.domain): close-up \(closeUp) against wide \(wide)")
        }
    }

    /// Two subjects in a near framing stand side by side, each still large.
    @Test func twoSubjectsShareANearFrame() {
        for framing in Framing.near {
            let pair = [PlacedSubject(bot, Placement(position: .left)), PlacedSubject(critter, Placement(position: .right))]
            let left = coverage(pair, index: 0, framing: framing), right = coverage(pair, index: 1, framing: framing)
            #expect(left.fraction > 0.07 && right.fraction > 0.07, "\(framing): \(left.fraction) \(right.fraction)")
            #expect(left.centerX + 12 < right.centerX, "\(framing): \(left.centerX) \(right.centerX)")
        }
    }

    @Test func positionStillMovesANearSubject() {
        for framing in Framing.near {
            let x = Position.allCases.map { coverage([PlacedSubject(bot, Placement(position: $0))], index: 0, framing: framing).centerX }
            #expect(x[0] + 4 < x[1] && x[1] + 4 < x[2], "\(framing): \(x)")
        }
    }

    @Test func captionsNameTheShot() {
        let words: [Framing: [String]] = [.portrait: ["portrait"], .halfBody: ["half body shot", "waist up shot"],
                                          .closeUp: ["closeup"]]
        for framing in Framing.near {
            var seen = Set<String>()
            for seed: UInt64 in 0..<40 {
                var context = Context.random(seed: seed)
                context.framing = framing
                let caption = WorldCaption.caption(for: Scene(identity: critter, context: context, seed: seed), seed: seed)
                let named = words[framing]!.filter { caption.contains($0) }
                #expect(!named.isEmpty, "\(framing): \(caption)")
                seen.formUnion(named)
                for size in ["small ", "little ", "tiny ", "large ", "big ", "a photo of"] {
                    #expect(!caption.contains(size), "the shot, not the size: \(caption)")
                }
                // Everything else is worded as in the wide shot.
                var wide = context
                wide.framing = .scene
                let plain = WorldCaption.caption(for: Scene(identity: critter, context: wide, seed: seed), seed: seed)
                let tail = { (text: String) in text.components(separatedBy: "critter").last! }
                #expect(tail(caption) == tail(plain), "\(caption) | \(plain)")
            }
            #expect(seen.count == words[framing]!.count || framing == .portrait, "\(framing) wordings: \(seen)")
        }
    }

    @Test func framingsAreDrawnOnTheirOwnStream() {
        var drawn = Set<Framing>()
        for seed: UInt64 in 0..<60 {
            let wide = Context.random(seed: seed)
            var near = Context.random(seed: seed, framings: Framing.near)
            #expect(wide.framing == .scene && near.framing != .scene)
            drawn.insert(near.framing)
            near.framing = .scene
            #expect(near == wide, "only the framing changes")
        }
        #expect(drawn == Set(Framing.near))
        #expect(Context.random(seed: 3, framings: [.closeUp]).framing == .closeUp)
    }

    @Test func contextJSONKeepsTheWideShotsBytes() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let wide = Context(background: .desert, companion: true)
        let text = String(decoding: try encoder.encode(wide), as: UTF8.self)
        #expect(!text.contains("framing"))
        #expect(try JSONDecoder().decode(Context.self, from: Data(text.utf8)) == wide)
        let near = Context(background: .city, framing: .halfBody)
        let nearText = String(decoding: try encoder.encode(near), as: UTF8.self)
        #expect(nearText.contains("\"framing\":\"half-body\""))
        #expect(try JSONDecoder().decode(Context.self, from: Data(nearText.utf8)) == near)
    }

    @Test func badFramingsAndSidesAreNamed() throws {
        #expect(try Framing.list("portrait, close-up") == [.portrait, .closeUp])
        #expect(throws: WorldError.self) { try Framing.list("portrait,selfie") }
        do { _ = try Framing.list("selfie"); Issue.record("accepted") } catch {
            #expect("\(error)".contains("selfie") && !"\(error)".contains("\n"))
        }
        for side in [0, 48 + 1, 300] { #expect(throws: WorldError.self) { try WorldRenderer.checkSide(side) } }
        for side in [64, 96, 128] { #expect(throws: Never.self) { try WorldRenderer.checkSide(side) } }
    }

    @Test func framedDatasetsWriteTheirSideAndFraming() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nestworld-near-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let records = try WorldDataset.write(to: folder, identitiesPerDomain: 1, contextsPerIdentity: 4, seed: 5,
                                             masks: true, framings: Framing.near, side: 96)
        #expect(Set(records.map(\.context.framing)).isSubset(of: Set(Framing.near)))
        for record in records {
            let image = try ImageFile.decode(path: folder.appendingPathComponent(record.image).path)
            #expect(image.width == 96 && image.height == 96)
            let mask = try ImageFile.decode(path: folder.appendingPathComponent(record.mask!).path)
            let white = stride(from: 0, to: mask.pixels.count, by: 3).filter { mask.pixels[$0] == 255 }.count
            // Alone the subject covers a quarter of the frame or more; beside a companion, less.
            let least = record.context.companion ? 0.08 : 0.25
            #expect(Double(white) / Double(96 * 96) > least, "\(record.image): the subject fills the frame")
        }
        #expect(throws: WorldError.self) {
            try WorldDataset.write(to: folder.appendingPathComponent("x"), identitiesPerDomain: 1, contextsPerIdentity: 2,
                                   seed: 5, side: 100)
        }
    }
}
