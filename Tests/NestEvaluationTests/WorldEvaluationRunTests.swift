import Foundation
import NestDiffusion
import NestEvaluation
import NestIO
import NestPersonalization
import NestWorld
import Testing

/// The evaluation as a library: its inputs refused with typed errors before anything is
/// written, its cases held out, and every image made by the one generation entry point.
@Suite struct WorldEvaluationRunTests {
    /// The trained miniature world that `nest` ships.
    static let world = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources/nest/Resources/world")

    static func temporaryFolder() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nest-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func badInputsAreRefusedBeforeAnythingIsWritten() throws {
        let dir = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(throws: EvaluationError("\(dir.path) already exists; choose a new folder (nothing was overwritten)")) {
            try WorldEvaluationRun(model: Self.world, output: dir).run()
        }
        let orphan = dir.appendingPathComponent("no/such/out")
        #expect(throws: EvaluationError("\(orphan.path): folder \(dir.path)/no/such does not exist or is not writable")) {
            try WorldEvaluationRun(model: Self.world, output: orphan).run()
        }
        let bare = dir.appendingPathComponent("bare-model"), output = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: bare, withIntermediateDirectories: true)
        #expect(throws: EvaluationError("\(bare.path)/adapters has no adapter for <critter>, <bot>")) {
            try WorldEvaluationRun(model: bare, output: output).run()
        }
        #expect(!FileManager.default.fileExists(atPath: output.path))
    }

    @Test func casesPromptOnlyWithHeldOutContexts() {
        var options = WorldEvaluation.Options()
        options.identitiesPerDomain = 2
        let cases = WorldEvaluation(options: options).cases(twoSubjects: false)
        #expect(cases.count == 2 * Domain.allCases.count * options.promptsPerIdentity)
        #expect(cases.allSatisfy { $0.context.isHeldOut })
    }

    /// A two-subject case through `Generator.generate` is the personalized pipeline's own
    /// image for that case with w = 1 and the given λ; the base row is the plain pipeline's.
    @Test func casesAreGeneratedThroughTheGenerator() throws {
        var options = WorldEvaluation.Options()
        options.identitiesPerDomain = 1; options.promptsPerIdentity = 1; options.steps = 2
        let evaluation = WorldEvaluation(options: options)
        let pipeline = try StableDiffusionPipeline.load(folder: Self.world)
        let generator = Generator(pipeline: pipeline, catalog: AdapterCatalog(model: Self.world, kind: .nested))
        let pair = evaluation.cases(twoSubjects: true)[0]
        let nested = try evaluation.generate(generator, cases: [pair], adapters: true, valueNormalization: 1)
        let request = evaluation.request(pair, adapters: true, valueNormalization: 1)
        #expect(request.subjects.map(\.placeholder) == ["<critter>", "<bot>"])
        let both = Dictionary(uniqueKeysWithValues: request.subjects.map { ($0.placeholder, NestedAttentionOptions(valueNormalization: 1)) })
        let direct = try StableDiffusionPipeline.images(
            generator.personalized!.generate(request.generation, subjects: request.subjects, options: both))
        #expect(nested[0].pixels == direct[0].pixels)

        let plain = try evaluation.generate(generator, cases: [pair], adapters: false)
        let base = try StableDiffusionPipeline.images(pipeline.generate(evaluation.request(pair, adapters: false).generation))
        #expect(plain[0].pixels == base[0].pixels)
        #expect(plain[0].pixels != nested[0].pixels, "the adapters change the image")
    }

    /// `--contexts both`: one run, a table per context set, each with its own paired differences.
    @Test func bothContextSetsGetTheirOwnTables() throws {
        let dir = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = WorldEvaluation.Options()
        options.identitiesPerDomain = 1; options.promptsPerIdentity = 1; options.steps = 1; options.distractors = 1
        options.contextTables = [.heldOut, .seen]; options.drawSeed = 3
        let output = dir.appendingPathComponent("out")
        let summary = try WorldEvaluationRun(model: Self.world, output: output, options: options).run()
        let report = try String(contentsOf: output.appendingPathComponent("results.md"), encoding: .utf8)
        for set in [WorldEvaluation.ContextSet.heldOut, .seen] {
            #expect(report.contains("## " + set.title) && summary.table.contains(set.title), "no table for \(set)")
        }
        // Paired differences in each table: the methods against the base model, and the two-subject row.
        let paired = report.split(separator: "\n").filter { $0.hasPrefix("- ") && $0.contains(" ± ") }
        #expect(paired.count % 2 == 0 && paired.count >= 4, "\(paired)")
        let rows = try JSONDecoder().decode([WorldEvaluation.Row].self, from: Data(contentsOf: output.appendingPathComponent("results.json")))
        let held = rows.filter { $0.contexts == "held-out" }, seen = rows.filter { $0.contexts == "seen" }
        #expect(!held.isEmpty && held.count == seen.count && held.count + seen.count == rows.count)
        #expect(held.map(\.method) == seen.map(\.method))
        // comparison.png: a row per case (one identity per domain, one prompt: two rows) of the
        // reference, Nested Attention, the base model and the truth (the shipped world has no
        // baselines), each cell 64 pixels and a 2-pixel gutter, doubled.
        let sheet = try ImageFile.decode(path: output.appendingPathComponent("comparison.png").path)
        #expect(sheet.width == (4 * 66 + 2) * 2 && sheet.height == (2 * 66 + 2) * 2, "\(sheet.width)×\(sheet.height)")
        #expect(summary.written.contains("comparison.png"))
    }
}
