import Foundation
import NestIO
import Testing
@testable import NestWorld

/// Writes contact sheets to the temporary directory for a human to look at;
/// the only check is that they encode.
@Suite struct WorldPreviewTests {
    @Test func writesContactSheets() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nestworld_preview").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // Rows: identities; columns: backgrounds.
        var images: [RGBImage] = []
        for domain in Domain.allCases {
            for seed in 0..<4 as Range<UInt64> {
                let id = Identity.random(domain: domain, seed: seed)
                for bg in Background.allCases {
                    images.append(WorldRenderer.render(identity: id, context: Context(background: bg), seed: seed))
                }
            }
        }
        try ImageFile.writePNG(ContactSheet.make(images, columns: 6), to: dir + "/identities.png", overwrite: true)
        // Context variations of one critter and one bot.
        images = []
        for domain in Domain.allCases {
            let id = Identity.random(domain: domain, seed: 7)
            for style in Style.allCases {
                for acc in Accessory.allCases {
                    images.append(WorldRenderer.render(identity: id, context: Context(background: .forest, style: style, accessory: acc), seed: 1))
                }
            }
            for pos in Position.allCases {
                for size in SubjectSize.allCases {
                    images.append(WorldRenderer.render(identity: id, context: Context(background: .city, position: pos, size: size, companion: true), seed: 2))
                }
            }
        }
        try ImageFile.writePNG(ContactSheet.make(images, columns: 6), to: dir + "/contexts.png", overwrite: true)
        // Full-size single render, scaled up 4x nearest for viewing detail.
        let one = WorldRenderer.render(identity: Identity.random(domain: .critter, seed: 3),
                                       context: Context(background: .beach, accessory: .redHat), seed: 0)
        try ImageFile.writePNG(one, to: dir + "/single.png", overwrite: true)
    }
}

extension WorldPreviewTests {
    @Test func writesSampleDataset() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nestworld_preview/dataset")
        try? FileManager.default.removeItem(at: dir)
        let records = try WorldDataset.write(to: dir, identitiesPerDomain: 2, contextsPerIdentity: 6, seed: 2026,
                                             placeholder: "<subject>")
        let images = try records.map { try ImageFile.decode(path: dir.appendingPathComponent($0.image).path) }
        try ImageFile.writePNG(ContactSheet.make(images, columns: 6), to: dir.path + "/sheet.png", overwrite: true)
    }
}
