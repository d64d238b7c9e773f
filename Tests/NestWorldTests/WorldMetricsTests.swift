import NestIO
import Testing
@testable import NestWorld

/// The metrics must tell the truth apart from everything else: ground-truth
/// renders (at render seeds the metric never uses) score near the top, and
/// unrelated images near chance.
@Suite struct WorldMetricsTests {
    struct Case { let scene: SceneSpec; let distractors: [Identity]; let seed: UInt64 }

    func cases(_ n: Int, domain: Domain) -> [Case] {
        var rng = WorldRandom(seed: 5, stream: "metrics-test")
        return (0..<n).map { _ in
            let identity = Identity.random(domain: domain, seed: rng.next())
            var context = Context.random(seed: rng.next())
            context.companion = false
            let distractors = (0..<7).map { _ in Identity.random(domain: domain, seed: rng.next()) }
            return Case(scene: SceneSpec(identity: identity, context: context, seed: 0), distractors: distractors, seed: rng.next())
        }
    }

    func scores(_ cases: [Case], image: (Case, Int) -> RGBImage) -> (identity: Double, prompt: Double) {
        var identity = 0, prompt = 0, aspects = 0
        for (i, c) in cases.enumerated() {
            let picture = image(c, i)
            if WorldMetrics.identityHit(picture, scene: c.scene, distractors: c.distractors) { identity += 1 }
            let hits = WorldMetrics.promptHits(picture, scene: c.scene)
            prompt += hits.values.filter { $0 }.count
            aspects += hits.count
        }
        return (Double(identity) / Double(cases.count), Double(prompt) / Double(aspects))
    }

    @Test(arguments: [Domain.critter, .bot])
    func groundTruthScoresHighAndUnrelatedImagesNearChance(domain: Domain) {
        let all = cases(12, domain: domain)
        let truth = scores(all) { c, _ in c.scene.render(seed: c.seed) }
        #expect(truth.identity >= 0.8, "ground truth identity \(truth.identity)")
        #expect(truth.prompt >= 0.9, "ground truth prompt \(truth.prompt)")
        // Another case's ground truth: wrong individual, unrelated context.
        let shuffled = scores(all) { _, i in all[(i + 5) % all.count].scene.render(seed: 7) }
        #expect(shuffled.identity <= 0.35, "unrelated identity \(shuffled.identity) (chance 1/8)")
        #expect(shuffled.prompt <= WorldMetrics.promptChance + 0.2, "unrelated prompt \(shuffled.prompt), chance \(WorldMetrics.promptChance)")
    }

    /// The graded identity: the truth ranks first (1), another individual's render near the
    /// middle on average (chance 0.5), and the rank agrees with the top-1 hit.
    @Test func identityRankIsOneForTheTruthAndNearHalfForOthers() {
        let all = cases(16, domain: .critter)
        var truthRanks: [Double] = [], otherRanks: [Double] = []
        for (i, c) in all.enumerated() {
            let truth = WorldMetrics.identityDistances(c.scene.render(seed: c.seed), scene: c.scene, distractors: c.distractors)
            truthRanks.append(WorldMetrics.identityRank(truth))
            #expect((truthRanks.last! == 1) == WorldMetrics.identityHit(c.scene.render(seed: c.seed), scene: c.scene, distractors: c.distractors))
            let other = all[(i + 5) % all.count].scene.render(seed: 7)
            otherRanks.append(WorldMetrics.identityRank(WorldMetrics.identityDistances(other, scene: c.scene, distractors: c.distractors)))
        }
        let truthMean = truthRanks.reduce(0, +) / 16, otherMean = otherRanks.reduce(0, +) / 16
        #expect(truthMean >= 0.95, "truth rank \(truthMean)")
        #expect(abs(otherMean - 0.5) <= 0.2, "unrelated rank \(otherMean)")
        #expect(WorldMetrics.identityRank([1, 2, 0.5, 1]) == 0.5)  // one farther, one nearer, one tie
        #expect(WorldMetrics.identityRank([3]) == 1)
    }
}

/// The identity score looks for the individual wherever it stands; the
/// in-place variant only where the prompt put it.
@Suite struct IdentityPlacementTests {
    @Test func truthAtAnotherPlacementIsRecognizedAnywhereOnly() {
        var rng = WorldRandom(seed: 17, stream: "placement-test")
        var anywhere = 0, inPlace = 0
        let n = 12
        for _ in 0..<n {
            let domain: Domain = rng.next() % 2 == 0 ? .critter : .bot
            let identity = Identity.random(domain: domain, seed: rng.next())
            var context = Context.random(seed: rng.next())
            context.companion = false
            let scene = SceneSpec(identity: identity, context: context, seed: 0)
            // The truth drawn one position over and at the other size.
            var moved = scene
            let p = scene.subjects[0].placement
            moved.subjects[0].placement.position = Position.allCases[(Position.allCases.firstIndex(of: p.position)! + 1) % 3]
            moved.subjects[0].placement.size = p.size == .small ? .large : .small
            let picture = moved.render(seed: rng.next() % 1000 + 1000)
            let distractors = (0..<7).map { _ in Identity.random(domain: domain, seed: rng.next()) }
            if WorldMetrics.identityHit(picture, scene: scene, distractors: distractors) { anywhere += 1 }
            if WorldMetrics.identityHit(picture, scene: scene, distractors: distractors, anywhere: false) { inPlace += 1 }
        }
        #expect(Double(anywhere) / Double(n) >= 0.8, "moved truth, anywhere: \(anywhere)/\(n)")
        #expect(inPlace < anywhere, "moved truth, in place: \(inPlace)/\(n) vs anywhere \(anywhere)/\(n)")
    }
}
