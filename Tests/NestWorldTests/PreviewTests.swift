import Foundation
import NestIO
import Testing
@testable import NestWorld

/// The contact sheets `nest world dataset --preview` and `nest eval` write: every render lands
/// whole in its cell, the gutters stay white, enlargement repeats pixels, and the PNG keeps them.
@Suite struct WorldPreviewTests {
    /// The render at cell k of a sheet, read back.
    static func cell(_ sheet: RGBImage, _ k: Int, columns: Int, side: Int, gutter: Int = 2) -> [UInt8] {
        let ox = gutter + (k % columns) * (side + gutter), oy = gutter + (k / columns) * (side + gutter)
        var out: [UInt8] = []
        for y in oy..<(oy + side) { out += sheet.pixels[((y * sheet.width + ox) * 3)..<((y * sheet.width + ox + side) * 3)] }
        return out
    }

    @Test func contactSheetsHoldEveryRenderInItsCell() throws {
        var images: [RGBImage] = []
        for domain in Domain.allCases {
            for seed in 0..<2 as Range<UInt64> {
                let id = Identity.random(domain: domain, seed: seed)
                for bg in Background.allCases { images.append(WorldRenderer.render(identity: id, context: Context(background: bg), seed: seed)) }
            }
        }
        let side = WorldRenderer.side, columns = 6
        let sheet = ContactSheet.make(images, columns: columns)
        let rows = (images.count + columns - 1) / columns
        #expect(sheet.width == columns * (side + 2) + 2 && sheet.height == rows * (side + 2) + 2)
        for (k, image) in images.enumerated() { #expect(Self.cell(sheet, k, columns: columns, side: side) == image.pixels, "cell \(k)") }
        #expect(sheet.pixels[0..<(sheet.width * 2 * 3)].allSatisfy { $0 == 255 }, "the top gutter is white")
        #expect(Set(images.map(\.pixels)).count == images.count, "identities and backgrounds all differ")

        let big = images[0].enlarged(2)
        #expect(big.width == 2 * side && big.height == 2 * side)
        for (x, y) in [(0, 0), (5, 17), (side - 1, side - 1)] {
            let source = Array(images[0].pixels[((y * side + x) * 3)..<((y * side + x) * 3 + 3)])
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let i = ((2 * y + dy) * big.width + 2 * x + dx) * 3
                #expect(Array(big.pixels[i..<(i + 3)]) == source)
            }
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nest-preview-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("sheet.png").path
        try ImageFile.writePNG(sheet, to: path)
        #expect(try ImageFile.decode(path: path).pixels == sheet.pixels)
    }
}
