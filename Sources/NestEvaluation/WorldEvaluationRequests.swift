import NestDiffusion
import NestIO
import NestPersonalization
import NestWorld

extension WorldEvaluation {
    /// The generation request for one case. `adapters` false: the class word and no adapter
    /// (the base model); otherwise each subject through its adapter, with the token weight w
    /// (1 unless a trade-off sweep sets it) and λ as given (nil: the adapter's default).
    public func request(_ c: Case, adapters: Bool, valueNormalization: Float? = nil, adapterScale: Float? = nil,
                        tokenWeight: Float = 1) -> GenerationRequest {
        let config = GenerationConfiguration(prompt: c.prompt(placeholders: adapters), steps: options.steps,
                                             guidanceScale: options.guidance, seed: c.sceneSeed % 1_000_000,
                                             width: WorldRenderer.side, height: WorldRenderer.side)
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
                         adapterScale: Float? = nil, tokenWeight: Float = 1, progress: () -> Void = {}) throws -> [RGBImage] {
        try cases.map { c in
            var image: RGBImage?
            try generator.generate(request(c, adapters: adapters, valueNormalization: valueNormalization,
                                           adapterScale: adapterScale, tokenWeight: tokenWeight)) { image = $0.image }
            progress()
            guard let image else { throw EvaluationError("generation of \"\(c.prompt(placeholders: adapters))\" gave no image") }
            return image
        }
    }
}
