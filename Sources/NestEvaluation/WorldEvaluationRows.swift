import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import NestPersonalization
import NestTraining
import NestWorld

extension WorldEvaluationRun {
    /// The rows that need no generation, and the images behind them.
    struct Validation {
        var rows: [WorldEvaluation.Row]
        /// Each single-subject case rendered at an unseen seed.
        var truth: [RGBImage]
        /// The truths encoded and decoded by the VAE: the ceiling the autoencoder leaves any method.
        var throughVAE: [RGBImage]
    }

    /// Every generated image, case by case, per method.
    struct Images {
        var single: [WorldEvaluation.Case]
        var pairs: [WorldEvaluation.Case]
        var base: [RGBImage]
        /// The base model with trait words, and redrawing the truth per strength
        /// (`Options.boundRows`), else empty.
        var traits: [RGBImage]
        var redrawn: [(strength: Double, images: [RGBImage])]
        var nested: [RGBImage]
        var normalized: [RGBImage]
        var baselines: [(name: String, images: [RGBImage])]
        var pairBase: [RGBImage]
        var pairNested: [RGBImage]
    }

    /// The scored rows in table order, with the ones the paired comparison needs by name.
    struct Rows {
        var validation: [WorldEvaluation.Row]
        var base: WorldEvaluation.Row
        var methods: [WorldEvaluation.Row]
        var pairBase: WorldEvaluation.Row
        var pairNested: WorldEvaluation.Row
        var all: [WorldEvaluation.Row] { validation + [base] + methods + [pairBase, pairNested] }

        /// Marks every row with the context set it was scored on (runs with several tables).
        mutating func label(_ contexts: String) {
            for i in validation.indices { validation[i].contexts = contexts }
            for i in methods.indices { methods[i].contexts = contexts }
            base.contexts = contexts; pairBase.contexts = contexts; pairNested.contexts = contexts
        }
    }

    /// One context set's cases, images and scored rows.
    struct Table {
        var set: WorldEvaluation.ContextSet
        var evaluation: WorldEvaluation
        var images: Images
        var rows: Rows
        var truth: [RGBImage]
    }

    func validationRows(_ evaluation: WorldEvaluation, cases single: [WorldEvaluation.Case], vae: AutoencoderKL) throws -> Validation {
        let truth = single.map { $0.scene.render(seed: 7) }
        // The next identity's truth (offset by one identity's prompts, never the case itself).
        let unrelated = single.indices.map { truth[($0 + options.promptsPerIdentity) % single.count] }
        let throughVAE = try truth.map { image -> RGBImage in
            let pixels = Augmentation.none.apply(image, size: image.width, seed: 0)
            return try StableDiffusionPipeline.images(Autograd.noGrad { vae.decode(vae.encode(pixels).mean) }, range: -1...1)[0]
        }
        // Near misses, to read the identity score by: the scene with a lookalike (another
        // individual the model's captions describe with the same trait words), and the truth blurred
        // about as soft as the world's generations are.
        let lookalikes = single.map { c -> RGBImage in
            var scene = c.scene
            scene.subjects[scene.subjects.count - 1].identity = TraitWords.lookalike(of: c.identity, detail: options.traitDetail,
                                                                                     seed: c.sceneSeed)
            return scene.render(seed: 7)
        }
        let blurred = truth.map { Self.boxBlurred($0, radius: 1, passes: 2) }
        let rows = [
            evaluation.score("ground truth (render at an unseen seed)", cases: single, images: truth),
            evaluation.score("unrelated images (another case's truth)", cases: single, images: unrelated),
            evaluation.score("ground truth through the VAE (the ceiling for generations)", cases: single, images: throughVAE),
            evaluation.score("ground truth blurred (3×3 box, twice)", cases: single, images: blurred),
            evaluation.score("a lookalike: another individual with the same trait words", cases: single, images: lookalikes),
        ]
        return Validation(rows: rows, truth: truth, throughVAE: throughVAE)
    }

    /// Every method's images, in a fixed order: base, Nested Attention, λ, baselines, then two-subject scenes.
    func generateAll(_ evaluation: WorldEvaluation, generator: Generator, baselines: [Method], truth: [RGBImage],
                     progress: (_ done: Int, _ total: Int) -> Void) throws -> Images {
        let single = evaluation.cases(twoSubjects: false), pairs = evaluation.cases(twoSubjects: true)
        let total = single.count * (3 + baselines.count + (options.boundRows ? 1 + WorldEvaluation.Options.redrawStrengths.count : 0)) + pairs.count * 2
        var done = 0
        func tick() { done += 1; progress(done, total) }
        func run(_ generator: Generator, _ cases: [WorldEvaluation.Case], adapters: Bool, valueNormalization: Float? = nil,
                 adapterScale: Float? = nil, traits: Bool = false, redraw: (images: [RGBImage], strength: Double)? = nil) throws -> [RGBImage] {
            try evaluation.generate(generator, cases: cases, adapters: adapters, valueNormalization: valueNormalization,
                                    adapterScale: adapterScale, traits: traits, redraw: redraw, progress: tick)
        }
        let base = try run(generator, single, adapters: false)
        let traits = options.boundRows ? try run(generator, single, adapters: false, traits: true) : []
        let redrawn = options.boundRows ? try WorldEvaluation.Options.redrawStrengths.map {
            (strength: $0, images: try run(generator, single, adapters: false, redraw: (truth, $0)))
        } : []
        let nested = try run(generator, single, adapters: true)
        let normalized = try run(generator, single, adapters: true, valueNormalization: options.valueNormalization)
        let baselineImages = try baselines.map { ($0.name, try run($0.generator, single, adapters: true, adapterScale: $0.adapterScale)) }
        let pairBase = try run(generator, pairs, adapters: false)
        let pairNested = try run(generator, pairs, adapters: true)
        return Images(single: single, pairs: pairs, base: base, traits: traits, redrawn: redrawn, nested: nested, normalized: normalized,
                      baselines: baselineImages, pairBase: pairBase, pairNested: pairNested)
    }

    func score(_ evaluation: WorldEvaluation, images: Images, validation: [WorldEvaluation.Row]) -> Rows {
        let single = images.single, pairs = images.pairs
        let traitRows = (images.traits.isEmpty ? []
            : [evaluation.score("base model, trait words in the prompt", cases: single, images: images.traits)])
            + images.redrawn.map { evaluation.score(String(format: "base model redrawing the truth (image-to-image, strength %g)", $0.strength),
                                                    cases: single, images: $0.images) }
        let methods = traitRows + images.baselines.map { evaluation.score($0.name, cases: single, images: $0.images) } + [
            evaluation.score("Nested Attention", cases: single, images: images.nested),
            evaluation.score(String(format: "Nested Attention, value normalization λ=%g", options.valueNormalization),
                             cases: single, images: images.normalized),
        ]
        return Rows(validation: validation,
                    base: evaluation.score("base model, class word", cases: single, images: images.base),
                    methods: methods,
                    pairBase: evaluation.score("two subjects: base model, class words", cases: pairs, images: images.pairBase),
                    pairNested: evaluation.score("two subjects: Nested Attention (both adapters)", cases: pairs, images: images.pairNested))
    }

    /// `image` under a (2·radius+1)² box filter applied `passes` times (edges clamped).
    static func boxBlurred(_ image: RGBImage, radius: Int, passes: Int) -> RGBImage {
        var out = image
        let (w, h) = (image.width, image.height)
        for _ in 0..<passes {
            let src = out.pixels
            var dst = src
            for y in 0..<h {
                for x in 0..<w {
                    for ch in 0..<3 {
                        var sum = 0, n = 0
                        for dy in -radius...radius {
                            for dx in -radius...radius {
                                let yy = min(max(y + dy, 0), h - 1), xx = min(max(x + dx, 0), w - 1)
                                sum += Int(src[(yy * w + xx) * 3 + ch]); n += 1
                            }
                        }
                        dst[(y * w + x) * 3 + ch] = UInt8((sum + n / 2) / n)
                    }
                }
            }
            out.pixels = dst
        }
        return out
    }
}
