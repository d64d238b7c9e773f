import Foundation
import NestIO
import Testing
@testable import NestWorld

/// Mean absolute byte difference between two same-sized images.
func meanDifference(_ a: RGBImage, _ b: RGBImage) -> Double {
    var total = 0
    for i in 0..<a.pixels.count { total += abs(Int(a.pixels[i]) - Int(b.pixels[i])) }
    return Double(total) / Double(a.pixels.count)
}

/// Pixels that differ from the same scene rendered without the subject: the
/// subject's footprint, and the centre of mass of that footprint.
func footprint(_ id: Identity, _ placement: Placement, background: Background = .snow) -> (count: Int, centerX: Double) {
    let empty = WorldRenderer.render(subjects: [], background: background, style: .flat, seed: 9)
    let full = WorldRenderer.render(subjects: [PlacedSubject(id, placement)], background: background, style: .flat, seed: 9)
    var count = 0, sumX = 0
    for y in 0..<empty.height {
        for x in 0..<empty.width {
            let i = (y * empty.width + x) * 3
            if (0..<3).contains(where: { empty.pixels[i + $0] != full.pixels[i + $0] }) { count += 1; sumX += x }
        }
    }
    return (count, count > 0 ? Double(sumX) / Double(count) : 0)
}

@Suite struct WorldRenderTests {
    let critter = Identity.random(domain: .critter, seed: 1)
    let bot = Identity.random(domain: .bot, seed: 1)

    @Test func sameInputsGiveIdenticalBytes() {
        for id in [critter, bot] {
            let context = Context(background: .city, position: .left, size: .small, style: .sketch,
                                  accessory: .blueScarf, companion: true)
            let a = WorldRenderer.render(identity: id, context: context, seed: 42)
            let b = WorldRenderer.render(identity: id, context: context, seed: 42)
            #expect(a.pixels == b.pixels)
            #expect(a.width == 64 && a.height == 64)
        }
    }

    @Test func identitiesFromDifferentSeedsDifferInTraitsAndPixels() {
        for domain in Domain.allCases {
            let ids = (0..<6 as Range<UInt64>).map { Identity.random(domain: domain, seed: $0) }
            for i in 0..<ids.count {
                #expect(ids[i] == Identity.random(domain: domain, seed: UInt64(i)))
                for j in (i + 1)..<ids.count {
                    #expect(ids[i] != ids[j])
                    #expect(ids[i].bodyWidth != ids[j].bodyWidth && ids[i].eyeSize != ids[j].eyeSize)
                    let a = WorldRenderer.render(identity: ids[i], context: Context(), seed: 3)
                    let b = WorldRenderer.render(identity: ids[j], context: Context(), seed: 3)
                    #expect(meanDifference(a, b) > 1, "\(domain) \(i) vs \(j)")
                }
            }
        }
    }

    @Test func identityRoundTripsThroughJSON() throws {
        let data = try JSONEncoder().encode(critter)
        #expect(try JSONDecoder().decode(Identity.self, from: data) == critter)
    }

    @Test func everyContextElementChangesTheImage() {
        for id in [critter, bot] {
            let base = Context(background: .beach, position: .center, size: .large, style: .flat, accessory: .none)
            let reference = WorldRenderer.render(identity: id, context: base, seed: 5)
            var variants: [(String, Context)] = []
            for v in Background.allCases where v != base.background { var c = base; c.background = v; variants.append((v.rawValue, c)) }
            for v in Style.allCases where v != base.style { var c = base; c.style = v; variants.append((v.rawValue, c)) }
            for v in Accessory.allCases where v != base.accessory { var c = base; c.accessory = v; variants.append((v.rawValue, c)) }
            for v in Position.allCases where v != base.position { var c = base; c.position = v; variants.append((v.rawValue, c)) }
            for v in SubjectSize.allCases where v != base.size { var c = base; c.size = v; variants.append((v.rawValue, c)) }
            var c = base; c.companion = true; variants.append(("companion", c))
            for (name, context) in variants {
                let image = WorldRenderer.render(identity: id, context: context, seed: 5)
                #expect(meanDifference(image, reference) > 0.3, "\(id.domain) \(name)")
            }
        }
    }

    @Test func largeSubjectsCoverMoreThanSmallOnes() {
        for id in [critter, bot] {
            let small = footprint(id, Placement(size: .small)).count
            let large = footprint(id, Placement(size: .large)).count
            #expect(Double(large) > 2.5 * Double(small), "\(id.domain): \(small) vs \(large)")
        }
    }

    @Test func positionMovesTheCentreOfMass() {
        for id in [critter, bot] {
            for size in SubjectSize.allCases {
                let left = footprint(id, Placement(position: .left, size: size)).centerX
                let center = footprint(id, Placement(position: .center, size: size)).centerX
                let right = footprint(id, Placement(position: .right, size: size)).centerX
                #expect(left + 8 < center && center + 8 < right, "\(id.domain) \(size): \(left) \(center) \(right)")
            }
        }
    }

    @Test func edgesAreAntiAliased() {
        // A hard-edged renderer would give only background and body colours;
        // supersampling leaves intermediate values along the outline.
        let image = WorldRenderer.render(identity: critter, context: Context(background: .snow), seed: 0)
        var colours = Set<Int>()
        for i in stride(from: 0, to: image.pixels.count, by: 3) {
            let r = Int(image.pixels[i]), g = Int(image.pixels[i + 1]), b = Int(image.pixels[i + 2])
            colours.insert(r << 16 | g << 8 | b)
        }
        #expect(colours.count > 200)
    }
}
