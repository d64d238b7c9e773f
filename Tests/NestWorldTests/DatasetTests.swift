import Foundation
import NestIO
import Testing
@testable import NestWorld

@Suite struct WorldDatasetTests {
    func temporaryFolder(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nestworld-\(name)-\(UUID().uuidString)")
        return url
    }

    @Test func writesImagesManifestAndIdentitiesDeterministically() throws {
        let a = temporaryFolder("a"), b = temporaryFolder("b")
        defer { try? FileManager.default.removeItem(at: a); try? FileManager.default.removeItem(at: b) }
        let records = try WorldDataset.write(to: a, identitiesPerDomain: 2, contextsPerIdentity: 3, seed: 11,
                                             placeholder: "<subject>")
        try WorldDataset.write(to: b, identitiesPerDomain: 2, contextsPerIdentity: 3, seed: 11, placeholder: "<subject>")
        #expect(records.count == 12)
        let manifestA = try Data(contentsOf: a.appendingPathComponent("manifest.jsonl"))
        #expect(manifestA == (try Data(contentsOf: b.appendingPathComponent("manifest.jsonl"))))
        for record in records {
            let bytesA = try Data(contentsOf: a.appendingPathComponent(record.image))
            #expect(bytesA == (try Data(contentsOf: b.appendingPathComponent(record.image))))
            #expect(record.caption.contains("<subject>"))
            #expect(record.references.count == 2 && !record.references.contains(record.image))
            // References are the same identity's other images.
            for ref in record.references {
                #expect(records.first { $0.image == ref }?.identity == record.identity)
            }
        }
        // Each manifest line is a JSON object with the training keys.
        let lines = String(decoding: manifestA, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 12)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        #expect(first["image"] as? String == records[0].image)
        #expect((first["references"] as? [String])?.count == 2)
        let identities = try JSONDecoder().decode([Identity].self,
                                                  from: Data(contentsOf: a.appendingPathComponent("identities.json")))
        #expect(identities.count == 4 && identities.filter { $0.domain == .bot }.count == 2)
        let image = try ImageFile.decode(path: a.appendingPathComponent(records[0].image).path)
        #expect(image.width == 64 && image.height == 64)
    }

    /// `portraits`: every record's references are its identity's portrait
    /// renders (centred, large, flat, nothing worn), and the scenes are the
    /// same bytes as without them.
    @Test func portraitReferencesLeaveTheScenesAlone() throws {
        let plain = temporaryFolder("plain"), withPortraits = temporaryFolder("portraits")
        defer { try? FileManager.default.removeItem(at: plain); try? FileManager.default.removeItem(at: withPortraits) }
        let a = try WorldDataset.write(to: plain, identitiesPerDomain: 2, contextsPerIdentity: 3, seed: 5)
        let b = try WorldDataset.write(to: withPortraits, identitiesPerDomain: 2, contextsPerIdentity: 3, seed: 5, portraits: 2)
        #expect(a.map(\.image) == b.map(\.image) && a.map(\.caption) == b.map(\.caption))
        for (x, y) in zip(a, b) {
            #expect(try Data(contentsOf: plain.appendingPathComponent(x.image)) == Data(contentsOf: withPortraits.appendingPathComponent(y.image)))
            #expect(y.references.count == 2 && y.references.allSatisfy { $0.contains("/portrait-") })
            #expect(y.references.allSatisfy { $0.hasPrefix((y.image as NSString).deletingLastPathComponent + "/") }, "the identity's own portraits")
        }
        let portraits = try b[0].references.map { try ImageFile.decode(path: withPortraits.appendingPathComponent($0).path) }
        #expect(portraits.allSatisfy { $0.width == 64 && $0.height == 64 } && portraits[0].pixels != portraits[1].pixels)
    }

    /// `referenceFraming`: the references are the same individuals, backgrounds and
    /// seeds drawn in that framing (`Context.reference`); the scenes do not change.
    @Test func referencesCanBeNearFramed() throws {
        let wide = temporaryFolder("wide-refs"), near = temporaryFolder("near-refs")
        defer { try? FileManager.default.removeItem(at: wide); try? FileManager.default.removeItem(at: near) }
        let a = try WorldDataset.write(to: wide, identitiesPerDomain: 1, contextsPerIdentity: 2, seed: 8, portraits: 2,
                                       framings: Framing.near)
        let b = try WorldDataset.write(to: near, identitiesPerDomain: 1, contextsPerIdentity: 2, seed: 8, portraits: 2,
                                       framings: Framing.near, referenceFraming: .closeUp)
        #expect(a.map(\.image) == b.map(\.image) && a.map(\.references) == b.map(\.references))
        for (x, y) in zip(a, b) {
            #expect(try Data(contentsOf: wide.appendingPathComponent(x.image)) == Data(contentsOf: near.appendingPathComponent(y.image)))
        }
        let identities = try JSONDecoder().decode([Identity].self, from: Data(contentsOf: near.appendingPathComponent("identities.json")))
        for (index, identity) in identities.enumerated() {
            let record = b.first { $0.identity == index }!
            var rng = WorldRandom(seed: 8 &+ UInt64(index), stream: "portrait")
            for path in record.references {
                let background = rng.pick(Background.allCases), seed = rng.next()
                let expected = WorldRenderer.render(identity: identity, context: Context.reference(background: background, framing: .closeUp),
                                                    seed: seed)
                let written = try ImageFile.decode(path: near.appendingPathComponent(path).path)
                let wideShot = try ImageFile.decode(path: wide.appendingPathComponent(path).path)
                #expect(written.pixels == expected.pixels, "\(path) is the close-up reference")
                #expect(written.pixels != wideShot.pixels)
            }
        }
    }

    /// `describe`: about that fraction of captions gain the subject's trait
    /// words before its noun and nothing else changes — same images, same
    /// wording otherwise; a placeholder caption is never described.
    @Test func describedCaptionsOnlyAddTraitWords() throws {
        let plain = temporaryFolder("plain"), described = temporaryFolder("described"), tokens = temporaryFolder("tokens")
        defer { for f in [plain, described, tokens] { try? FileManager.default.removeItem(at: f) } }
        let a = try WorldDataset.write(to: plain, identitiesPerDomain: 6, contextsPerIdentity: 4, seed: 9)
        let b = try WorldDataset.write(to: described, identitiesPerDomain: 6, contextsPerIdentity: 4, seed: 9, describe: 0.5)
        let c = try WorldDataset.write(to: tokens, identitiesPerDomain: 1, contextsPerIdentity: 4, seed: 9,
                                       placeholder: "<critter>", domains: [.critter], describe: 1)
        var changed = 0
        for (x, y) in zip(a, b) {
            #expect(x.image == y.image)
            #expect(try Data(contentsOf: plain.appendingPathComponent(x.image)) == Data(contentsOf: described.appendingPathComponent(y.image)))
            guard x.caption != y.caption else { continue }
            changed += 1
            let noun = x.domain.classWord
            let traits = y.caption.components(separatedBy: " ").filter { !x.caption.components(separatedBy: " ").contains($0) }
            #expect(!traits.isEmpty && y.caption.contains(traits.joined(separator: " ") + " " + noun), "\(x.caption) → \(y.caption)")
        }
        #expect((14...34).contains(changed), "about half of 48 captions described, got \(changed)")
        #expect(c.allSatisfy { !$0.caption.contains("critter ") && $0.caption.contains("<critter>") })
        // Described in full: the same captions are described, with every trait's words.
        let full = temporaryFolder("full")
        defer { try? FileManager.default.removeItem(at: full) }
        let d = try WorldDataset.write(to: full, identitiesPerDomain: 6, contextsPerIdentity: 4, seed: 9, describe: 0.5,
                                       traitDetail: .full)
        let identities = try JSONDecoder().decode([Identity].self, from: Data(contentsOf: full.appendingPathComponent("identities.json")))
        for (x, (y, z)) in zip(a, zip(b, d)) {
            #expect((x.caption == y.caption) == (x.caption == z.caption), "the same captions are described")
            guard x.caption != z.caption else { continue }
            let words = WorldCaption.traitWords(identities[z.identity], detail: .full)
            #expect(z.caption.contains(words.joined(separator: " ") + " " + x.domain.classWord), "\(z.caption)")
        }
    }

    /// `masks`: each record names a mask, white over its own subject only — a
    /// large subject covers more than a small one, and the companion (drawn
    /// on the other side) is left out.
    @Test func masksCoverTheNamedSubjectOnly() throws {
        let folder = temporaryFolder("masks")
        defer { try? FileManager.default.removeItem(at: folder) }
        let records = try WorldDataset.write(to: folder, identitiesPerDomain: 4, contextsPerIdentity: 6, seed: 8,
                                             domains: [.bot], masks: true)
        var coverage: [SubjectSize: [Double]] = [:]
        for r in records {
            let mask = try ImageFile.decode(path: folder.appendingPathComponent(try #require(r.mask)).path)
            var white = 0, leftWhite = 0, rightWhite = 0
            for y in 0..<mask.height {
                for x in 0..<mask.width where mask.pixels[(y * mask.width + x) * 3] == 255 {
                    white += 1
                    if x < 20 { leftWhite += 1 } else if x >= 44 { rightWhite += 1 }
                }
            }
            #expect(white > 0, "\(r.mask!) is empty")
            coverage[r.context.size, default: []].append(Double(white) / Double(mask.width * mask.height))
            // A companion stands on the far side of a left or right subject: that edge stays black.
            if r.context.companion && r.context.size == .small {
                if r.context.position == .left { #expect(rightWhite == 0, "\(r.mask!): companion side not black") }
                if r.context.position == .right { #expect(leftWhite == 0, "\(r.mask!): companion side not black") }
            }
        }
        let mean = { (v: [Double]) in v.reduce(0, +) / Double(max(v.count, 1)) }
        #expect(mean(coverage[.large] ?? []) > 2 * mean(coverage[.small] ?? []), "coverage \(coverage.mapValues(mean))")
    }

    /// `holdOut`: no scene pairs a held-out background and style; without it
    /// they occur (one context in six).
    @Test func heldOutPairsStayOutOfAdapterData() throws {
        let a = temporaryFolder("all"), b = temporaryFolder("heldout")
        defer { try? FileManager.default.removeItem(at: a); try? FileManager.default.removeItem(at: b) }
        let all = try WorldDataset.write(to: a, identitiesPerDomain: 6, contextsPerIdentity: 8, seed: 3, domains: [.critter])
        let kept = try WorldDataset.write(to: b, identitiesPerDomain: 6, contextsPerIdentity: 8, seed: 3, domains: [.critter], holdOut: true)
        #expect(all.contains { $0.context.isHeldOut })
        #expect(kept.count == all.count && !kept.contains { $0.context.isHeldOut })
    }
}
