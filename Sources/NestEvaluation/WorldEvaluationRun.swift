import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestPersonalization
import NestTraining
import NestWorld

/// A problem with an evaluation's inputs, found before anything is generated.
public struct EvaluationError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// `nest eval` as a library call: generates the held-out cases with each method found in
/// the model folder (every image through `Generator.generate`), scores them and writes
/// results.md, results.json, samples.png and the first case's attention maps into `output`.
public struct WorldEvaluationRun {
    public var model: URL
    /// A folder that must not exist yet (nothing is overwritten).
    public var output: URL
    public var options: WorldEvaluation.Options
    /// Only the validation rows and autoencoder.png: needs no adapters and no image encoder.
    public var autoencoderOnly: Bool
    /// Only the trade-off sweep (`tradeoffCurves`): tradeoff.md and tradeoff.json.
    public var tradeoff: Bool
    /// Warnings from loading the adapters (`Generator.notice`), for the caller to show.
    public var notice: (String) -> Void = { _ in }

    public init(model: URL, output: URL, options: WorldEvaluation.Options = .init(), autoencoderOnly: Bool = false,
                tradeoff: Bool = false) {
        self.model = model; self.output = output; self.options = options; self.autoencoderOnly = autoencoderOnly
        self.tradeoff = tradeoff
    }

    /// What a run wrote: the Markdown table (also printed by the CLI) and the file names in `output`.
    public struct Summary {
        public var table: String
        public var written: [String]
    }

    /// A method compared against the base model: a generator for its adapter kind and the request's scale.
    struct Method {
        var name: String
        var generator: Generator
        var adapterScale: Float?
    }

    /// Checks that `output` can be created, before any model is loaded.
    public func checkOutput() throws {
        if FileManager.default.fileExists(atPath: output.path) {
            throw EvaluationError("\(output.path) already exists; choose a new folder (nothing was overwritten)")
        }
        let parent = output.deletingLastPathComponent().path
        guard FileManager.default.isWritableFile(atPath: parent) else {
            throw EvaluationError("\(output.path): folder \(parent) does not exist or is not writable")
        }
    }

    /// The adapters of `kind` in the model folder, when there is one for every domain.
    func catalog(_ kind: AdapterConfig.Kind) -> AdapterCatalog? {
        let catalog = AdapterCatalog(model: model, kind: kind)
        return Domain.allCases.allSatisfy { catalog.files[$0.placeholder] != nil } ? catalog : nil
    }

    /// The one generation entry point for `catalog`'s adapters, its warnings passed to `notice`.
    func generator(_ pipeline: StableDiffusionPipeline, _ catalog: AdapterCatalog) -> Generator {
        let generator = Generator(pipeline: pipeline, catalog: catalog)
        generator.notice = notice
        return generator
    }

    /// The baselines on the same encoder, where the folder has them for both domains.
    func baselines(on pipeline: StableDiffusionPipeline) -> [Method] {
        var methods: [Method] = []
        if let catalog = catalog(.singleToken) {
            methods.append(Method(name: "single-token encoder", generator: generator(pipeline, catalog)))
        }
        if let catalog = catalog(.ipAdapter) {
            let generator = generator(pipeline, catalog)
            for scale: Float in [0.5, 1] {
                methods.append(Method(name: String(format: "IP-Adapter-style decoupled attention, scale %g", scale),
                                      generator: generator, adapterScale: scale))
            }
        }
        return methods
    }

    /// Runs the evaluation; `progress` sees (images done, images in all).
    public func run(progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws -> Summary {
        try checkOutput()
        let nested = AdapterCatalog(model: model, kind: .nested)
        if !autoencoderOnly {
            let missing = Domain.allCases.map(\.placeholder).filter { nested.files[$0] == nil }
            if !missing.isEmpty {
                throw EvaluationError("\(model.path)/adapters has no adapter for \(missing.joined(separator: ", "))")
            }
        }
        let pipeline = try StableDiffusionPipeline.load(folder: model)
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        if autoencoderOnly {
            let evaluation = WorldEvaluation(options: options)
            let single = evaluation.cases(twoSubjects: false)
            return try writeAutoencoderCheck(try validationRows(evaluation, cases: single, vae: pipeline.vae), cases: single.count)
        }
        if tradeoff { return try runTradeoff(pipeline: pipeline, progress: progress) }
        let generator = generator(pipeline, nested)
        let sets = options.contextTables ?? [options.contexts]
        var tables: [Table] = []
        for (k, set) in sets.enumerated() {
            var setOptions = options
            setOptions.contexts = set
            let evaluation = WorldEvaluation(options: setOptions)
            let single = evaluation.cases(twoSubjects: false)
            let validation = try validationRows(evaluation, cases: single, vae: pipeline.vae)
            let images = try generateAll(evaluation, generator: generator, baselines: baselines(on: pipeline),
                                         truth: validation.truth) { done, total in
                progress(k * total + done, sets.count * total)
            }
            var rows = score(evaluation, images: images, validation: validation.rows)
            if sets.count > 1 { rows.label(set.rawValue) }
            tables.append(Table(set: set, evaluation: evaluation, images: images, rows: rows, truth: validation.truth))
        }
        try Data(report(tables).utf8).write(to: output.appendingPathComponent("results.md"))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(tables.flatMap(\.rows.all)).write(to: output.appendingPathComponent("results.json"))
        let first = tables[0]
        try ImageFile.writePNG(samples(first.images, truth: first.truth), to: output.appendingPathComponent("samples.png").path)
        try ImageFile.writePNG(comparison(first.images, truth: first.truth), to: output.appendingPathComponent("comparison.png").path)
        try writeAttentionMaps(first.evaluation.request(first.images.single[0], adapters: true), generator: generator)
        let table = tables.count == 1 ? WorldEvaluation.table(first.rows.all, chance: chance)
            : tables.map { "\($0.set.title):\n\n" + WorldEvaluation.table($0.rows.all, chance: chance) }.joined(separator: "\n")
        return Summary(table: table, written: ["results.md", "results.json", "samples.png", "comparison.png", "attention/"])
    }

    var chance: (identity: Double, prompt: Double, aspects: [Double]) {
        (1 / Double(options.distractors + 1), WorldMetrics.promptChance(framing: options.framing),
         WorldMetrics.aspectChance(framing: options.framing))
    }

    /// The semantic-correspondence picture: the first case generated again with its attention recorded.
    func writeAttentionMaps(_ request: GenerationRequest, generator: Generator) throws {
        var request = request
        request.valueNormalization = nil; request.tokenWeight = nil
        request.recordAttention = true
        try generator.generate(request) { made in
            _ = try generator.writeAttentionMaps(of: request, image: made.image,
                                                 to: output.appendingPathComponent("attention"), overwrite: false)
        }
    }
}

extension Domain {
    /// The placeholder token of this domain's adapter.
    public var placeholder: String { "<\(rawValue)>" }
}
