import Foundation
import Testing
@testable import NestWorld

@Suite struct ContextFilterTests {
    @Test func parsesAspectsAndAllowsOnlyTheirValues() throws {
        let filter = try ContextFilter(parsing: "background=forest,background=snow,style=flat,companion=no")
        #expect(filter.backgrounds == [.forest, .snow] && filter.styles == [.flat] && filter.companions == [false])
        #expect(filter.positions == nil && filter.accessories == nil)
        #expect(filter.allows(Context(background: .snow, position: .left, style: .flat, accessory: .redHat)))
        #expect(!filter.allows(Context(background: .beach, style: .flat)))
        #expect(!filter.allows(Context(background: .forest, style: .sketch)))
        #expect(!filter.allows(Context(background: .forest, style: .flat, companion: true)))
        #expect(ContextFilter.any.allows(Context(background: .city, style: .night, companion: true)))
    }

    @Test func badFiltersFailInOneLineNamingWhatIsWrong() {
        for (text, named) in [("background=moon", "'moon'"), ("colour=red", "'colour'"), ("style", "'style'"),
                              ("companion=maybe", "'maybe'"), ("style=flat,", "''"), ("=flat", "'=flat'")] {
            #expect {
                _ = try ContextFilter(parsing: text)
            } throws: { error in
                let message = String(describing: error)
                return message.contains(named) && !message.contains("\n")
            }
        }
    }

    /// A filter that leaves only held-out pairs cannot be combined with holding them out:
    /// refused before anything is written, instead of drawing scene seeds forever.
    @Test func holdingOutEverythingAllowedIsRefused() throws {
        let filter = try ContextFilter(parsing: "background=city,style=flat")
        #expect(!filter.allowsSomeScene(holdingOut: true) && filter.allowsSomeScene(holdingOut: false))
        #expect(try ContextFilter(parsing: "background=city").allowsSomeScene(holdingOut: true))
        #expect(ContextFilter.any.allows(Context(background: .city, style: .flat))
                && !ContextFilter.any.allows(Context(background: .city, style: .flat), holdingOut: true)
                && ContextFilter.any.allows(Context(background: .city, style: .night), holdingOut: true))
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nestworld-none-\(UUID().uuidString)")
        #expect(throws: WorldError.self) {
            try WorldDataset.write(to: folder, identitiesPerDomain: 1, contextsPerIdentity: 2, seed: 1, holdOut: true, only: filter)
        }
        #expect(!FileManager.default.fileExists(atPath: folder.path))
    }

    /// A dataset written with a filter holds only allowed contexts.
    @Test func datasetsHoldOnlyAllowedContexts() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nestworld-only-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let filter = try ContextFilter(parsing: "background=forest,style=flat,accessory=none,companion=no,position=center,size=large")
        let records = try WorldDataset.write(to: folder, identitiesPerDomain: 3, contextsPerIdentity: 2, seed: 4,
                                             domains: [.critter], describe: 1, traitDetail: .full,
                                             framings: [.closeUp], only: filter)
        #expect(records.count == 6)
        for record in records {
            #expect(filter.allows(record.context) && record.context.framing == .closeUp)
            #expect(record.caption.contains("forest") && record.caption.contains("critter"))
        }
        // An individual's two scenes share the context but not the render seed.
        #expect(records[0].identity == records[1].identity && records[0].context == records[1].context)
        #expect(try Data(contentsOf: folder.appendingPathComponent(records[0].image))
                != Data(contentsOf: folder.appendingPathComponent(records[1].image)))
    }
}
