import NestDiffusion
import NestIO
import NestPersonalization
import NestWorld

extension WorldEvaluation {
    /// The generation request for one case. `adapters` false: the class word and no adapter
    /// (the base model); otherwise each subject through its adapter, with the token weight w
    /// (1 unless a trade-off sweep sets it) and λ as given (nil: the adapter's default).
    /// `traits`: the base model's prompt names the subject's trait words. `redraw`: image-to-image
    /// from that picture at that strength.
    public func request(_ c: Case, adapters: Bool, valueNormalization: Float? = nil, adapterScale: Float? = nil,
                        tokenWeight: Float = 1, traits: Bool = false,
                        redraw: (image: RGBImage, strength: Double)? = nil) -> GenerationRequest {
        let config = GenerationConfiguration(prompt: c.prompt(placeholders: adapters, traits: traits ? options.traitDetail : nil), steps: options.steps,
                                             guidanceScale: options.guidance, seed: c.sceneSeed % 1_000_000,
                                             width: WorldRenderer.side, height: WorldRenderer.side,
                                             initImage: redraw?.image, strength: redraw?.strength)
        guard adapters else { return GenerationRequest(generation: config) }
        var subjects = [Subject(placeholder: c.identity.domain.placeholder, images: [c.reference])]
        if let companion = c.companion {
            subjects.append(Subject(placeholder: companion.identity.domain.placeholder, images: [companion.reference]))
        }
        return GenerationRequest(generation: config, subjects: subjects, valueNormalization: valueNormalization,
                                 tokenWeight: tokenWeight, adapterScale: adapterScale)
    }

    /// Generates one image per case through the one generation entry point.
    public func generate(_ generator: Generator, cases: [Case], adapters: Bool, valueNormalization: Float? = nil,
                         adapterScale: Float? = nil, tokenWeight: Float = 1, traits: Bool = false,
                         redraw: (images: [RGBImage], strength: Double)? = nil,
                         progress: () -> Void = {}) throws -> [RGBImage] {
        try cases.enumerated().map { i, c in
            var image: RGBImage?
            try generator.generate(request(c, adapters: adapters, valueNormalization: valueNormalization,
                                           adapterScale: adapterScale, tokenWeight: tokenWeight, traits: traits,
                                           redraw: redraw.map { ($0.images[i], $0.strength) })) { image = $0.image }
            progress()
            guard let image else { throw EvaluationError("generation of \"\(c.prompt(placeholders: adapters))\" gave no image") }
            return image
        }
    }
}
