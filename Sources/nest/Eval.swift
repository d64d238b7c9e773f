import ArgumentParser
import Foundation
import NestDiffusion
import NestEvaluation
import NestPersonalization
import NestWorld

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

    @Option(help: "Which contexts get a table: held-out (the background × style pairs no adapter saw; the default), seen (the pairs the adapters trained on) or both (two tables in one run).")
    var contexts: ContextChoice?

    @Option(help: "Draw the held-out individuals and contexts from this seed (0 to 2^40 - 1); different seeds never share an individual. Without it: the fixed default draw.")
    var seed: UInt64?
    @Option(help: "Framing of the prompted scenes: scene (the wide shot), or near framings, comma-separated (portrait, half-body, close-up; a list is drawn from per prompt). Default: the model's world.json, else scene.")
    var framing: String?

    @Option(help: "Framing of each subject's reference photo (default: the model's world.json, else scene for the wide shot and close-up for near framings).")
    var referenceFraming: String?

    @Option(help: "Side in pixels of the truths scored (with --autoencoder-only: 64, 96, 128).")
    var size = 64

    @Option(help: "Side of the identity score's box-filtered features: 8, 16 or 32 (default: 16 for the wide shot, 32 for near framings).")
    var featureSide: Int?

    @Option(help: "Distractor individuals per scored subject; identity chance is 1 / (distractors + 1) (default: 7 for the wide shot, 31 for near framings).")
    var distractors: Int?

    @Flag(help: "Only the validation rows (truth, unrelated images, truth through the VAE) and autoencoder.png (truths beside their reconstructions): checks an autoencoder before anything is trained on its latents. Needs no adapters.")
    var autoencoderOnly = false

    @Flag(help: "Only the trade-off sweep: identity against prompt fidelity as Nested Attention's token weight and value normalization and the IP-Adapter baseline's scale move (tradeoff.md, tradeoff.json; tools/plot_tradeoff.py draws it).")
    var tradeoff = false

    @Option(help: "Evaluate the individuals a world dataset was written with (its identities.json, the first --identities of each domain) instead of held-out ones: an adapter's own training individuals show how much of an identity it can hold at all.")
    var individuals: String?

    @Flag(help: "Add reference rows for the base model: prompted with the subject's trait words (dark, golden, spotted, ...) before its class word, and redrawing the truth by image-to-image at strengths 0.3 and 0.6: how much of an identity words carry, and how much the UNet keeps when given the picture.")
    var bounds = false

    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard (1...1000).contains(identities) else { throw ValidationError("--identities must be between 1 and 1000, got \(identities)") }
        guard (1...100).contains(prompts) else { throw ValidationError("--prompts must be between 1 and 100, got \(prompts)") }
        if allContexts && contexts != nil { throw ValidationError("--all-contexts and --contexts cannot be combined; choose one") }
        if bounds, let strength = WorldEvaluation.Options.redrawStrengths.min(), GenerationConfiguration.imageToImageSteps(steps: steps, strength: strength) < 1 {
            throw ValidationError("--bounds redraws the truth at image-to-image strength \(strength), which leaves no denoising step at --steps \(steps); give at least \(Int((1 / strength).rounded(.up))) steps")
        }
        if individuals != nil && seed != nil { throw ValidationError("--individuals and --seed cannot be combined: --seed draws held-out individuals") }
        if tradeoff && autoencoderOnly { throw ValidationError("--tradeoff and --autoencoder-only cannot be combined; choose one") }
        if tradeoff && contexts == .both { throw ValidationError("--tradeoff scores one context set; choose --contexts held-out or seen") }
        if let seed, seed > WorldEvaluation.maximumDrawSeed {
            throw ValidationError("--seed must be between 0 and \(WorldEvaluation.maximumDrawSeed), got \(seed)")
        }
        if let framing {
            do { try WorldEvaluation.checkFramings(Framing.list(framing)) } catch { throw ValidationError("--framing: \(error)") }
        }
        if let referenceFraming, Framing(rawValue: referenceFraming) == nil {
            throw ValidationError("--reference-framing: unknown framing '\(referenceFraming)' (\(Framing.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        do { try WorldRenderer.checkSide(size) } catch { throw ValidationError("--size: \(error)") }
        if let distractors, !(1...63).contains(distractors) { throw ValidationError("--distractors must be between 1 and 63, got \(distractors)") }
        if let featureSide, ![8, 16, 32].contains(featureSide) { throw ValidationError("--feature-side must be 8, 16 or 32, got \(featureSide)") }
        guard size == 64 || autoencoderOnly else {
            throw ValidationError("--size other than 64 needs --autoencoder-only (the world's models draw 64×64)")
        }
        do {
            try GenerationConfiguration(prompt: "", steps: steps, guidanceScale: guidance).validate()
            try NestedAttentionOptions(valueNormalization: valueNorm).validate()
        } catch let error as GenerationRequestError { throw ValidationError(optionMessage(error)) }
    }

    func run() throws {
        try engine.apply()
        var options = WorldEvaluation.Options()
        options.identitiesPerDomain = identities; options.promptsPerIdentity = prompts
        options.steps = steps; options.guidance = guidance; options.valueNormalization = valueNorm
        options.heldOutCombinations = !allContexts
        options.drawSeed = seed
        switch contexts {
        case .seen: options.contexts = .seen
        case .both: options.contextTables = [.heldOut, .seen]
        case .heldOut, nil: break
        }
        let folder = URL(fileURLWithPath: DefaultModel.resolve(model))
        let world: WorldSettings
        do { world = try WorldSettings.read(model: folder) } catch { fail(String(describing: error)) }
        options.framings = try framing.map(Framing.list) ?? world.framings
        options.referenceFraming = referenceFraming.flatMap(Framing.init(rawValue:))
            ?? (framing == nil ? world.referenceFraming : nil)
        do { try WorldEvaluation.checkFramings(options.framings) } catch { fail("\(folder.path)/world.json: \(error)") }
        options.side = size
        if let featureSide { options.featureSide = featureSide }
        options.boundRows = bounds
        options.traitDetail = world.traitWords
        if let individuals {
            do { options.individuals = try WorldEvaluation.individuals(dataset: URL(fileURLWithPath: individuals)) }
            catch { fail(String(describing: error)) }
        }
        if let distractors { options.distractors = distractors }
        var evaluation = WorldEvaluationRun(model: folder,
                                            output: URL(fileURLWithPath: output), options: options, autoencoderOnly: autoencoderOnly,
                                            tradeoff: tradeoff)
        evaluation.notice = { warn($0) }
        var bar: ProgressBar? = nil
        let summary: WorldEvaluationRun.Summary
        do {
            summary = try evaluation.run { done, total in
                if bar == nil { bar = ProgressBar(total: total) }
                bar?.update(done)
            }
        } catch {
            bar?.finish()
            fail(String(describing: error))
        }
        bar?.finish()
        print(summary.table)
        print("wrote \(output)/" + summary.written.joined(separator: ", "))
    }
}

/// `nest eval --contexts`: the context sets that get a table.
enum ContextChoice: String, ExpressibleByArgument, CaseIterable {
    case heldOut = "held-out", seen, both
}
