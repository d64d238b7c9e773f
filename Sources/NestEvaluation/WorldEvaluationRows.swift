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
        let rows = [
            evaluation.score("ground truth (render at an unseen seed)", cases: single, images: truth),
            evaluation.score("unrelated images (another case's truth)", cases: single, images: unrelated),
            evaluation.score("ground truth through the VAE (the ceiling for generations)", cases: single, images: throughVAE),
        ]
        return Validation(rows: rows, truth: truth, throughVAE: throughVAE)
    }

    /// Every method's images, in a fixed order: base, Nested Attention, λ, baselines, then two-subject scenes.
    func generateAll(_ evaluation: WorldEvaluation, generator: Generator, baselines: [Method],
                     progress: (_ done: Int, _ total: Int) -> Void) throws -> Images {
        let single = evaluation.cases(twoSubjects: false), pairs = evaluation.cases(twoSubjects: true)
        let total = single.count * (3 + baselines.count) + pairs.count * 2
        var done = 0
        func tick() { done += 1; progress(done, total) }
        func run(_ generator: Generator, _ cases: [WorldEvaluation.Case], adapters: Bool, valueNormalization: Float? = nil,
                 adapterScale: Float? = nil) throws -> [RGBImage] {
            try evaluation.generate(generator, cases: cases, adapters: adapters, valueNormalization: valueNormalization,
                                    adapterScale: adapterScale, progress: tick)
        }
        let base = try run(generator, single, adapters: false)
        let nested = try run(generator, single, adapters: true)
        let normalized = try run(generator, single, adapters: true, valueNormalization: options.valueNormalization)
        let baselineImages = try baselines.map { ($0.name, try run($0.generator, single, adapters: true, adapterScale: $0.adapterScale)) }
        let pairBase = try run(generator, pairs, adapters: false)
        let pairNested = try run(generator, pairs, adapters: true)
        return Images(single: single, pairs: pairs, base: base, nested: nested, normalized: normalized,
                      baselines: baselineImages, pairBase: pairBase, pairNested: pairNested)
    }

    func score(_ evaluation: WorldEvaluation, images: Images, validation: [WorldEvaluation.Row]) -> Rows {
        let single = images.single, pairs = images.pairs
        let methods = images.baselines.map { evaluation.score($0.name, cases: single, images: $0.images) } + [
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
}
