import ArgumentParser
import Foundation
import NestDiffusion
import NestIO
import NestPersonalization
import NestWorld
import NestEngine
import NestTraining

/// `nest eval`: the miniature world's identity-versus-prompt evaluation.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score identity and prompt fidelity on held-out world subjects (see WorldEvaluation); writes results.md, results.json, samples.png and attention maps.")

    @Option(help: "A world model folder with adapters/ (default: the embedded one).")
    var model: String?

    @Option(name: .shortAndLong, help: "Output folder (must not exist yet).")
    var output: String

    @Option(help: "Held-out identities per domain.")
    var identities = 8

    @Option(help: "Prompts (contexts) per identity.")
    var prompts = 3

    @Option(help: "Denoising steps.")
    var steps = 20

    @Option(help: "Guidance scale.")
    var guidance: Float = 5

    @Option(help: "λ for the value-normalized Nested Attention row.")
    var valueNorm: Float = 1

    @Flag(help: "Prompt with any context, not only the held-out background × style pairs.")
    var allContexts = false

    @Flag(help: "Only the validation rows (truth, unrelated images, truth through the VAE) and autoencoder.png (truths beside their reconstructions): checks an autoencoder before anything is trained on its latents. Needs no adapters.")
    var autoencoderOnly = false

    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard (1...1000).contains(identities) else { throw ValidationError("--identities must be between 1 and 1000, got \(identities)") }
        guard (1...100).contains(prompts) else { throw ValidationError("--prompts must be between 1 and 100, got \(prompts)") }
        do {
            try GenerationConfiguration(prompt: "", steps: steps, guidanceScale: guidance).validate()
            try NestedAttentionOptions(valueNormalization: valueNorm).validate()
        } catch let error as GenerationRequestError { throw ValidationError(optionMessage(error)) }
    }

    func run() throws {
        try engine.apply()
        let folder = URL(fileURLWithPath: output)
        if FileManager.default.fileExists(atPath: folder.path) { fail("\(output) already exists; choose a new folder (nothing was overwritten)") }
        let parent = folder.deletingLastPathComponent().path
        guard FileManager.default.isWritableFile(atPath: parent) else { fail("\(output): folder \(parent) does not exist or is not writable") }
        let modelPath = DefaultModel.resolve(model)
        let pipe: PersonalizedPipeline
        do {
            pipe = try PersonalizedPipeline(base: try StableDiffusionPipeline.load(folder: URL(fileURLWithPath: modelPath)))
            if !autoencoderOnly { for (_, path) in DefaultModel.adapters(in: modelPath) { try pipe.addAdapter(path: path) } }
        } catch { fail(String(describing: error)) }
        for domain in Domain.allCases where !autoencoderOnly && pipe.adapters["<\(domain.rawValue)>"] == nil {
            fail("\(modelPath)/adapters has no adapter for <\(domain.rawValue)>")
        }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)

        var options = WorldEvaluation.Options()
        options.identitiesPerDomain = identities; options.promptsPerIdentity = prompts
        options.steps = steps; options.guidance = guidance; options.valueNormalization = valueNorm
        options.heldOutCombinations = !allContexts
        let evaluation = WorldEvaluation(options: options)
        let single = evaluation.cases(twoSubjects: false), pairs = evaluation.cases(twoSubjects: true)
        // Baselines on the same encoder, where the folder has them for both domains.
        var baselines: [(name: String, pipe: PersonalizedPipeline, scale: Float?)] = []
        for (kind, scales) in [(AdapterConfig.Kind.singleToken, [Float?.none]), (.ipAdapter, [Float(0.5), 1.0])] {
            let found = DefaultModel.adapters(in: modelPath, kind: kind)
            guard Domain.allCases.allSatisfy({ found["<\($0.rawValue)>"] != nil }) else { continue }
            let other: PersonalizedPipeline
            do {
                other = try PersonalizedPipeline(base: pipe.base)
                for (_, path) in found { try other.addAdapter(path: path) }
            } catch { fail(String(describing: error)) }
            for scale in scales {
                let name = kind == .singleToken ? "single-token encoder" : String(format: "IP-Adapter-style decoupled attention, scale %g", scale!)
                baselines.append((name, other, scale))
            }
        }
        let total = single.count * (3 + baselines.count) + pairs.count * 2
        let bar = ProgressBar(total: total)
        var done = 0
        let tick = { done += 1; bar.update(done) }

        let truth = single.map { $0.scene.render(seed: 7) }
        // The next identity's truth (offset by one identity's prompts, never the case itself).
        let unrelated = single.indices.map { truth[($0 + prompts) % single.count] }
        // The ceiling the autoencoder leaves any method: the truth encoded and decoded.
        let throughVAE = try truth.map { image -> RGBImage in
            let vae = pipe.base.vae
            let pixels = Augmentation.none.apply(image, size: image.width, seed: 0)
            return try StableDiffusionPipeline.images(Autograd.noGrad { vae.decode(vae.encode(pixels).mean) }, range: -1...1)[0]
        }
        let chance = (1 / Double(options.distractors + 1), WorldMetrics.promptChance)
        let validation = [
            evaluation.score("ground truth (render at an unseen seed)", cases: single, images: truth),
            evaluation.score("unrelated images (another case's truth)", cases: single, images: unrelated),
            evaluation.score("ground truth through the VAE (the ceiling for generations)", cases: single, images: throughVAE),
        ]
        if autoencoderOnly {
            bar.finish()
            var report = "# Autoencoder check\n\n\(single.count) held-out scenes, model \(URL(fileURLWithPath: modelPath).lastPathComponent).\n\n"
            report += WorldEvaluation.table(validation, chance: chance)
            try Data(report.utf8).write(to: folder.appendingPathComponent("results.md"))
            var tiles: [RGBImage] = []
            for (t, r) in zip(truth, throughVAE).prefix(32) { tiles.append(t); tiles.append(r) }
            try ImageFile.writePNG(ContactSheet.make(tiles, columns: 8).enlarged(2),
                                   to: folder.appendingPathComponent("autoencoder.png").path)
            print(WorldEvaluation.table(validation, chance: chance))
            print("wrote \(output)/results.md, autoencoder.png")
            return
        }
        let base = try evaluation.generate(pipe, cases: single, adapters: false, progress: tick)
        let nested = try evaluation.generate(pipe, cases: single, adapters: true, progress: tick)
        let normalized = try evaluation.generate(pipe, cases: single, adapters: true,
                                                 options: .init(valueNormalization: valueNorm), progress: tick)
        let baselineImages = try baselines.map { try evaluation.generate($0.pipe, cases: single, adapters: true, scale: $0.scale, progress: tick) }
        let pairBase = try evaluation.generate(pipe, cases: pairs, adapters: false, progress: tick)
        let pairNested = try evaluation.generate(pipe, cases: pairs, adapters: true, progress: tick)
        bar.finish()

        let baseRow = evaluation.score("base model, class word", cases: single, images: base)
        let methodRows = zip(baselines, baselineImages).map { evaluation.score($0.name, cases: single, images: $1) } + [
            evaluation.score("Nested Attention", cases: single, images: nested),
            evaluation.score(String(format: "Nested Attention, value normalization λ=%g", valueNorm), cases: single, images: normalized),
        ]
        let pairBaseRow = evaluation.score("two subjects: base model, class words", cases: pairs, images: pairBase)
        let pairNestedRow = evaluation.score("two subjects: Nested Attention (both adapters)", cases: pairs, images: pairNested)
        let rows = validation + [baseRow] + methodRows + [pairBaseRow, pairNestedRow]
        var report = "# Miniature world evaluation\n\n"
        report += "\(single.count) single-subject prompts (\(identities) held-out identities per domain × \(prompts) contexts) and "
        report += "\(pairs.count) two-subject prompts; \(steps) steps, guidance \(guidance), model \(URL(fileURLWithPath: modelPath).lastPathComponent). "
        report += options.heldOutCombinations
            ? "Every prompt pairs a background and a style that no adapter saw in training (\(Context.heldOutPairs.map { "\($0.0.rawValue) + \($0.1.rawValue)" }.joined(separator: ", "))). "
            : "Prompts with any context. "
        report += "Identity: the true subject's render is the nearest among it and \(options.distractors) distractors of its domain, "
        report += "each rendered at every position and size (in place: at the prompted placement only) "
        report += "(two-subject rows: both subjects counted). Prompt: per aspect, the prompted value's render is the nearest among all values.\n\n"
        report += WorldEvaluation.table(rows, chance: chance)
        let paired = WorldEvaluation.pairedIdentity(methodRows, against: baseRow)
            + WorldEvaluation.pairedIdentity([pairNestedRow], against: pairBaseRow)
        report += "\nIdentity against the base model on the same cases (mean difference ± its standard error):\n\n"
        for p in paired {
            report += String(format: "- %@: %+.3f ± %.3f (%d subjects)\n", p.method, p.difference, p.standardError, p.cases)
        }
        report += "\nPrompts (first of each identity):\n\n"
        for c in stride(from: 0, to: single.count, by: prompts).map({ single[$0] }) { report += "- \(c.prompt(placeholders: true))\n" }
        try Data(report.utf8).write(to: folder.appendingPathComponent("results.md"))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(rows).write(to: folder.appendingPathComponent("results.json"))

        // Samples: per identity (first two of each domain): reference, then Nested Attention for each prompt, then the truth.
        var tiles: [RGBImage] = []
        let columns = max(2 * prompts + 1, 5)
        let shown = Array(0..<min(2, identities)) + Array(identities..<(identities + min(2, identities)))
        for k in shown {
            let first = k * prompts
            tiles.append(single[first].reference)
            for j in 0..<prompts { tiles.append(nested[first + j]) }
            for j in 0..<prompts { tiles.append(truth[first + j]) }
            tiles.append(contentsOf: Array(repeating: RGBImage.blank(64), count: columns - 2 * prompts - 1))
        }
        for k in 0..<min(2, pairs.count) {
            tiles.append(pairs[k].reference); tiles.append(pairs[k].companion!.reference)
            tiles.append(pairNested[k]); tiles.append(pairs[k].scene.render(seed: 7))
            tiles.append(pairBase[k]); tiles.append(contentsOf: Array(repeating: RGBImage.blank(64), count: columns - 5))
        }
        try ImageFile.writePNG(ContactSheet.make(tiles, columns: columns).enlarged(2),
                               to: folder.appendingPathComponent("samples.png").path)

        // The semantic-correspondence picture for the first case.
        let c = single[0]
        pipe.recordAttention = true
        let config = GenerationConfiguration(prompt: c.prompt(placeholders: true), steps: steps, guidanceScale: guidance,
                                             seed: c.sceneSeed % 1_000_000, width: 64, height: 64)
        let subject = Subject(placeholder: "<\(c.identity.domain.rawValue)>", images: [c.reference])
        let image = try pipe.generate(config, subjects: [subject])
        try writeAttentionMaps(pipe.recorders, image: try StableDiffusionPipeline.images(image)[0],
                               references: pipe.referenceTraces([subject]),
                               to: folder.appendingPathComponent("attention"), overwrite: false)
        print(WorldEvaluation.table(rows, chance: chance))
        print("wrote \(output)/results.md, results.json, samples.png, attention/")
    }
}

extension RGBImage {
    static func blank(_ side: Int) -> RGBImage {
        try! RGBImage(width: side, height: side, pixels: [UInt8](repeating: 255, count: side * side * 3))
    }
}
