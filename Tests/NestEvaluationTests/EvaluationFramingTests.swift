import Foundation
import NestDiffusion
import NestEvaluation
import NestPersonalization
import NestWorld
import Testing

/// `nest eval --framing` with several near framings, `--reference-framing`, and `--tradeoff`.
@Suite struct EvaluationFramingTests {
    static func options(_ framings: [Framing], reference: Framing? = nil) -> WorldEvaluation.Options {
        var options = WorldEvaluation.Options()
        options.identitiesPerDomain = 8; options.promptsPerIdentity = 3
        options.framings = framings; options.referenceFraming = reference
        return options
    }

    /// A list of near framings is drawn from per case on its own stream: every
    /// other element of the draw is what a single framing gives.
    @Test func nearFramingsAreDrawnPerCaseAndLeaveTheRestOfTheDraw() {
        let mixed = WorldEvaluation(options: Self.options(Framing.near)).cases(twoSubjects: false)
        let single = WorldEvaluation(options: Self.options([.portrait])).cases(twoSubjects: false)
        #expect(mixed.allSatisfy { Framing.near.contains($0.context.framing) })
        #expect(Set(mixed.map(\.context.framing)).count == 3, "48 cases draw all three framings")
        #expect(mixed.map(\.identity) == single.map(\.identity) && mixed.map(\.sceneSeed) == single.map(\.sceneSeed))
        #expect(mixed.map(\.context.background) == single.map(\.context.background))
        #expect(mixed.map(\.context.style) == single.map(\.context.style))
        #expect(mixed.map(\.reference.pixels) == single.map(\.reference.pixels))
    }

    /// References are wide shots for the wide shot and close-ups for near framings unless chosen.
    @Test func referenceFramingFollowsTheScenesUnlessChosen() {
        let scene = WorldEvaluation(options: Self.options([.scene])), near = WorldEvaluation(options: Self.options(Framing.near))
        let chosen = WorldEvaluation(options: Self.options(Framing.near, reference: .scene))
        #expect(scene.options.referenceShot == .scene && near.options.referenceShot == .closeUp && chosen.options.referenceShot == .scene)
        let a = near.cases(twoSubjects: false)[0], b = chosen.cases(twoSubjects: false)[0]
        let s = scene.cases(twoSubjects: false)[0]
        #expect(a.identity == b.identity && a.reference.pixels != b.reference.pixels)
        #expect(b.reference.pixels == s.reference.pixels, "the same wide-shot reference as a wide-shot run")
        #expect(throws: EvaluationError("scene cannot be mixed with near framings (its size aspect is small/large, theirs the framing)")) {
            try WorldEvaluation.checkFramings([.scene, .portrait])
        }
        #expect(throws: Never.self) { try WorldEvaluation.checkFramings(Framing.near) }
    }

    /// Near framings are scored on 32×32 features among 31 distractors unless chosen
    /// (the coarser wide-shot metric saturates there); the wide shot keeps 16×16 among 7.
    @Test func nearFramingsTakeTheFinerIdentityMetricUnlessChosen() {
        let scene = Self.options([.scene])
        var near = Self.options(Framing.near)
        #expect(scene.featureSide == 16 && scene.distractors == 7)
        #expect(near.featureSide == 32 && near.distractors == 31)
        #expect(WorldEvaluation(options: near).cases(twoSubjects: false).allSatisfy { $0.distractors.count == 31 })
        near.featureSide = 8; near.distractors = 5
        #expect(near.featureSide == 8 && near.distractors == 5)
        #expect(WorldEvaluation(options: near).cases(twoSubjects: true).allSatisfy {
            $0.distractors.count == 5 && $0.companion?.distractors.count == 5 })
    }

    /// `--tradeoff`: every setting scored on the same cases; the point at w = 1 is the main
    /// evaluation's Nested Attention row, the base point its base row; standard errors
    /// over cases.
    @Test func tradeoffPointsAreTheEvaluationsRowsAtEachSetting() throws {
        let dir = try WorldEvaluationRunTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = WorldEvaluation.Options()
        options.identitiesPerDomain = 1; options.promptsPerIdentity = 1; options.steps = 1; options.distractors = 1
        options.framings = Framing.near
        let output = dir.appendingPathComponent("out")
        let summary = try WorldEvaluationRun(model: WorldEvaluationRunTests.world, output: output, options: options, tradeoff: true).run()
        #expect(summary.written == ["tradeoff.md", "tradeoff.json"])
        let points = try JSONDecoder().decode([WorldEvaluationRun.TradeoffPoint].self,
                                              from: Data(contentsOf: output.appendingPathComponent("tradeoff.json")))
        // The shipped world has no IP-Adapter baseline: its curve is left out.
        let curves = WorldEvaluationRun.tradeoffCurves.filter { $0.knob != .adapterScale }
        #expect(points.count == 1 + curves.map(\.values.count).reduce(0, +))
        #expect(points[0].knob == nil && points.dropFirst().allSatisfy { $0.images == 2 })

        let evaluation = WorldEvaluation(options: options)
        let cases = evaluation.cases(twoSubjects: false)
        let pipeline = try StableDiffusionPipeline.load(folder: WorldEvaluationRunTests.world)
        let generator = Generator(pipeline: pipeline, catalog: AdapterCatalog(model: WorldEvaluationRunTests.world, kind: .nested))
        let nested = evaluation.score("n", cases: cases, images: try evaluation.generate(generator, cases: cases, adapters: true))
        let atOne = points.first { $0.knob == .tokenWeight && $0.value == 1 }!
        #expect(atOne.identity == nested.identity && atOne.prompt == nested.prompt && atOne.identityRank == nested.identityRank)
        let base = evaluation.score("b", cases: cases, images: try evaluation.generate(generator, cases: cases, adapters: false))
        #expect(points[0].identity == base.identity && points[0].prompt == base.prompt)
        let scores = nested.promptScores, mean = scores.reduce(0, +) / 2
        let se = (scores.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 2).squareRoot()
        #expect(abs(atOne.promptStandardError - se) < 1e-12)
        let ranks = nested.identityRanks, rankMean = ranks.reduce(0, +) / Double(ranks.count)
        let rankSE = (ranks.map { ($0 - rankMean) * ($0 - rankMean) }.reduce(0, +) / Double(ranks.count - 1) / Double(ranks.count)).squareRoot()
        #expect(abs(atOne.identityRankStandardError - rankSE) < 1e-12)
        #expect(try String(contentsOf: output.appendingPathComponent("tradeoff.md"), encoding: .utf8).contains("| Nested Attention | token weight | 8 |"))
    }
}
