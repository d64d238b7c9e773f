import Foundation
import NestIO

/// Writes a personalization dataset: `identitiesPerDomain` individuals of
/// each domain, each shown in `contextsPerIdentity` random contexts, as PNGs
/// plus a JSON-lines manifest in the training format
/// `{"image", "caption", "references": [other images of the same identity]}`
/// (paths relative to the manifest), and `identities.json` with the traits.
/// With `portraits` > 0 each identity also gets that many portrait renders
/// (`Context.reference`, framed as `referenceFraming`, under
/// `images/NAME/portrait-KK.png`) and they, not
/// the other scenes, are every record's references — the encoder then sees
/// at training time what it is shown at generation time. The scenes are the
/// same bytes either way (portraits draw from their own seed stream).
/// With `holdOut` no scene has a held-out background × style pair
/// (`Context.heldOutPairs`): those are for evaluation.
/// `framings` are drawn per scene (`Context.random(seed:framings:)`; the
/// default, the wide shot only, writes the first edition's bytes) and every
/// image, portraits and masks included, is `side` pixels square.
/// Everything follows from `seed`: the same call writes the same bytes.
public enum WorldDataset {
    public struct Record: Codable, Equatable, Sendable {
        public var image: String
        public var caption: String
        public var references: [String]
        /// Where the record's subject is drawn (white), when masks were asked for.
        public var mask: String? = nil
        /// Extra keys for analysis; trainers read only the three above.
        public var identity: Int
        public var domain: Domain
        public var context: Context
    }

    /// `describe` is the fraction of captions that name the subject's traits
    /// (`WorldCaption.traitWords` at `traitDetail`; never with a placeholder, which stands for
    /// the whole individual); which ones is drawn per scene from its own
    /// stream, so the images and other captions do not change with it.
    /// Returns the records written (one per image, in manifest order).
    @discardableResult
    public static func write(to folder: URL, identitiesPerDomain: Int, contextsPerIdentity: Int, seed: UInt64,
                             placeholder: String? = nil, domains: [Domain] = Domain.allCases,
                             portraits: Int = 0, holdOut: Bool = false, masks: Bool = false,
                             describe: Float = 0, traitDetail: TraitDetail = .glance, framings: [Framing] = [.scene],
                             referenceFraming: Framing = .scene, only filter: ContextFilter = .any,
                             side: Int = WorldRenderer.side) throws -> [Record] {
        precondition(contextsPerIdentity >= 2, "each image needs at least one other image as reference")
        try WorldRenderer.checkSide(side)
        guard !framings.isEmpty else { throw WorldError("no framing given; choose from \(Framing.allCases.map(\.rawValue))") }
        guard filter.allowsSomeScene(holdingOut: holdOut) else {
            throw WorldError("the context filter allows only held-out background × style pairs, which --hold-out removes: no scene could be drawn")
        }
        let fm = FileManager.default
        try fm.createDirectory(at: folder.appendingPathComponent("images"), withIntermediateDirectories: true)
        var identities: [Identity] = []
        var rng = WorldRandom(seed: seed, stream: "dataset")
        for domain in Domain.allCases {
            // Draw every domain's seeds even when writing one domain, so a
            // domain's identities do not depend on which others are written.
            for _ in 0..<identitiesPerDomain {
                let seed = rng.next()
                if domains.contains(domain) { identities.append(Identity.random(domain: domain, seed: seed)) }
            }
        }
        var records: [Record] = []
        for (index, identity) in identities.enumerated() {
            let name = String(format: "%@_%03d", identity.domain.rawValue, index)
            let paths = (0..<contextsPerIdentity).map { String(format: "images/%@/%02d.png", name, $0) }
            try fm.createDirectory(at: folder.appendingPathComponent("images/" + name), withIntermediateDirectories: true)
            var portraitRNG = WorldRandom(seed: seed &+ UInt64(index), stream: "portrait")
            let portraitPaths = try (0..<portraits).map { k -> String in
                let path = String(format: "images/%@/portrait-%02d.png", name, k)
                let context = Context.reference(background: portraitRNG.pick(Background.allCases), framing: referenceFraming)
                let image = WorldRenderer.render(identity: identity, context: context, seed: portraitRNG.next(), side: side)
                try ImageFile.writePNG(image, to: folder.appendingPathComponent(path).path, overwrite: true)
                return path
            }
            for k in 0..<contextsPerIdentity {
                // A scene the filter or --hold-out rules out passes its seed over.
                var sceneSeed = rng.next()
                while !filter.allows(Context.random(seed: sceneSeed), holdingOut: holdOut) { sceneSeed = rng.next() }
                let context = Context.random(seed: sceneSeed, framings: framings)
                let image = WorldRenderer.render(identity: identity, context: context, seed: sceneSeed, side: side)
                try ImageFile.writePNG(image, to: folder.appendingPathComponent(paths[k]).path, overwrite: true)
                var describeRNG = WorldRandom(seed: sceneSeed, stream: "describe")
                let described = placeholder == nil && describeRNG.unit() < describe
                let caption = WorldCaption.caption(for: Scene(identity: identity, context: context, seed: sceneSeed),
                                                   placeholder: placeholder, describe: described ? traitDetail : nil, seed: sceneSeed)
                var mask: String? = nil
                if masks {
                    mask = paths[k].replacingOccurrences(of: ".png", with: "-mask.png")
                    try ImageFile.writePNG(subjectMask(image, identity: identity, context: context, seed: sceneSeed, side: side),
                                           to: folder.appendingPathComponent(mask!).path, overwrite: true)
                }
                records.append(Record(image: paths[k], caption: caption,
                                      references: portraits > 0 ? portraitPaths
                                          : paths.enumerated().filter { $0.offset != k }.map(\.element),
                                      mask: mask, identity: index, domain: identity.domain, context: context))
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var manifest = Data()
        for record in records {
            manifest.append(try encoder.encode(record))
            manifest.append(0x0A)
        }
        try manifest.write(to: folder.appendingPathComponent("manifest.jsonl"), options: .atomic)
        encoder.outputFormatting.insert(.prettyPrinted)
        try encoder.encode(identities).write(to: folder.appendingPathComponent("identities.json"), options: .atomic)
        return records
    }

    /// White where `image` (the scene of `identity` in `context`) differs from
    /// the same scene drawn without that subject: its body, accessory and the
    /// edges the style pass draws around it; the companion stays black.
    static func subjectMask(_ image: RGBImage, identity: Identity, context: Context, seed: UInt64,
                            side: Int = WorldRenderer.side) -> RGBImage {
        var subjects = WorldRenderer.subjects(identity: identity, context: context, seed: seed)
        // The subject keeps its place but is not drawn: in a near framing a
        // companion left alone would otherwise move to the centre.
        subjects[subjects.count - 1].visible = false
        let without = WorldRenderer.render(subjects: subjects, background: context.background,
                                           style: context.style, seed: seed, framing: context.framing, side: side)
        var pixels = [UInt8](repeating: 0, count: image.pixels.count)
        for i in stride(from: 0, to: pixels.count, by: 3) {
            var d = 0
            for c in 0..<3 { d = max(d, abs(Int(image.pixels[i + c]) - Int(without.pixels[i + c]))) }
            if d > 2 { pixels[i] = 255; pixels[i + 1] = 255; pixels[i + 2] = 255 }
        }
        return try! RGBImage(width: image.width, height: image.height, pixels: pixels)
    }
}
