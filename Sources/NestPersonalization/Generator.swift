import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels

/// One generation request as every front end builds it (the command line, the
/// evaluation, a server): the prompt and sampling settings, the subjects with their
/// photos, and the per-request subject settings. Checked whole by `validate`, before
/// any model is loaded.
public struct GenerationRequest {
    public var generation: GenerationConfiguration
    /// Subjects by placeholder token, each with one or more photos.
    public var subjects: [Subject]
    /// Nested Attention λ and w for every subject; nil keeps each adapter's default.
    public var valueNormalization: Float?
    public var tokenWeight: Float?
    /// Reference images and scale for a real IP-Adapter file (`Generator.ipAdapter`).
    public var ipImages: [RGBImage]
    public var ipScale: Float
    /// Record the subject tokens' attention during the first batch (`Generator.attentionMaps`).
    public var recordAttention: Bool
    /// LoRA files with their scales, applied for this request only.
    public var loras: [LoRAChoice] = []
    /// Textual-inversion files, their tokens usable in this request's prompts.
    public var embeddings: [EmbeddingChoice] = []
    /// The decoupled-attention baseline's scale for every subject; nil keeps each adapter's default.
    public var adapterScale: Float?

    public init(generation: GenerationConfiguration, subjects: [Subject] = [], valueNormalization: Float? = nil,
                tokenWeight: Float? = nil, ipImages: [RGBImage] = [], ipScale: Float = 1, recordAttention: Bool = false,
                adapterScale: Float? = nil) {
        self.generation = generation; self.subjects = subjects
        self.valueNormalization = valueNormalization; self.tokenWeight = tokenWeight
        self.ipImages = ipImages; self.ipScale = ipScale; self.recordAttention = recordAttention
        self.adapterScale = adapterScale
    }

    /// Everything that needs no model: the generation limits, finite subject settings,
    /// subjects with photos, and attention recording only where there is a subject.
    public func validate(limits: GenerationLimits = .standard) throws {
        try generation.validate(limits: limits)
        try NestedAttentionOptions(valueNormalization: valueNormalization, tokenWeight: tokenWeight ?? 1).validate()
        try checkRange(ipScale, 0...10, field: "subject_scale")
        for lora in loras {
            try checkRange(lora.scale, -10...10, field: "lora")
            if lora.path.isEmpty { throw GenerationRequestError(field: "lora", "names no file") }
        }
        for embedding in embeddings where embedding.path.isEmpty || embedding.token?.isEmpty == true {
            throw GenerationRequestError(field: "embedding", "\(embedding.path): needs a file and, after ':', a token")
        }
        if let adapterScale { try checkRange(adapterScale, 0...10, field: "adapter_scale") }
        for subject in subjects where subject.images.isEmpty {
            throw GenerationRequestError(field: "subject", "\(subject.placeholder) has no photos")
        }
        if recordAttention && subjects.isEmpty {
            throw GenerationRequestError(field: "save_attention", "records the subject tokens' attention, but no subject was given")
        }
    }
}

/// Which adapter serves which placeholder token: the files a user names, then the
/// model folder's own `adapters/` (NAME.json + NAME.safetensors). Reads configs only.
public struct AdapterCatalog {
    /// Adapter config paths by placeholder token.
    public private(set) var files: [String: String] = [:]

    /// The adapters of `kind` in a model folder's `adapters/`, by placeholder token
    /// (the first file in name order wins a token).
    public static func shipped(in model: URL, kind: AdapterConfig.Kind = .nested) -> [String: String] {
        let folder = model.appendingPathComponent("adapters")
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return [:] }
        var out: [String: String] = [:]
        for name in names.sorted() where name.hasSuffix(".json") {
            let url = folder.appendingPathComponent(name)
            if let config = try? AdapterConfig.load(from: url), config.kind == kind, out[config.placeholderToken] == nil {
                out[config.placeholderToken] = url.path
            }
        }
        return out
    }

    /// `named`: adapter files given by the user (either file of a pair, or the stem); they
    /// take precedence over the model's own adapters for their tokens.
    public init(model: URL, named: [String], kind: AdapterConfig.Kind = .nested) throws {
        files = Self.shipped(in: model, kind: kind)
        var claimed = Set<String>()
        for path in named {
            let config = URL(fileURLWithPath: path).deletingPathExtension().appendingPathExtension("json")
            guard FileManager.default.fileExists(atPath: config.path) else {
                throw ModelConfigError("\(path): adapter config \(config.lastPathComponent) not found")
            }
            let token = try AdapterConfig.load(from: config).placeholderToken
            guard claimed.insert(token).inserted else { throw ModelConfigError("two adapters claim the placeholder token \(token)") }
            files[token] = config.path
        }
        self.named = claimed
    }

    /// The model folder's own adapters of `kind`, none named (the evaluation's baselines).
    public init(model: URL, kind: AdapterConfig.Kind) {
        files = Self.shipped(in: model, kind: kind)
    }

    /// Tokens of the adapters the user named: loaded whether or not a subject uses them.
    public private(set) var named: Set<String> = []

    /// The placeholder tokens whose adapters a request needs: the named ones and one per
    /// subject (their files are `files[token]`). Fails, naming the token, when a subject has no adapter.
    public func tokens(for subjects: [Subject]) throws -> [String] {
        var tokens = named
        for subject in subjects {
            guard files[subject.placeholder] != nil else {
                let offered = files.keys.sorted().joined(separator: ", ")
                throw GenerationRequestError(field: "subject", "\(subject.placeholder): no adapter for this token"
                                             + (offered.isEmpty ? "; name an adapter file for it" : " (the adapters here are for \(offered))"))
            }
            tokens.insert(subject.placeholder)
        }
        return tokens.sorted()
    }

    /// Refuses a prompt that names a known placeholder without a photo of that subject,
    /// and an adapter the user named without a subject for it.
    public func checkPlaceholders(_ request: GenerationRequest) throws {
        let given = Set(request.subjects.map(\.placeholder))
        if let unused = named.sorted().first(where: { !given.contains($0) }) {
            throw GenerationRequestError(field: "subject", "\(unused) has an adapter but no photo")
        }
        try PersonalizedPipeline.checkPlaceholders(prompt: request.generation.prompt, negativePrompt: request.generation.negativePrompt,
                                                   known: files.keys, subjects: Set(request.subjects.map(\.placeholder)))
    }
}

/// The one entry point for generation: a loaded model and the adapters its requests
/// need (each loaded once, on first use), run request by request. Images come out
/// batch by batch through `deliver`.
public final class Generator {
    public let pipeline: StableDiffusionPipeline
    public let catalog: AdapterCatalog
    /// A real IP-Adapter file for requests with `ipImages`.
    public var ipAdapter: IPAdapter?
    /// Built on the first request with subjects or IP-Adapter images.
    public private(set) var personalized: PersonalizedPipeline?

    /// The LoRAs and embeddings of the last request, taken off when the next differs.
    public let additions: PipelineAdditions
    /// Told what the caller should pass on as a warning (an adapter loaded for a UNet other
    /// than the one it was trained with); once per adapter.
    public var notice: (String) -> Void = { _ in }

    public init(pipeline: StableDiffusionPipeline, catalog: AdapterCatalog) {
        self.pipeline = pipeline
        self.catalog = catalog
        additions = PipelineAdditions(pipeline: pipeline)
    }

    /// The pipeline with the request's adapters loaded (nil for plain text-to-image).
    func personalize(_ request: GenerationRequest) throws -> PersonalizedPipeline? {
        let tokens = try catalog.tokens(for: request.subjects)
        if tokens.isEmpty && request.ipImages.isEmpty && ipAdapter == nil { return nil }
        let pipe = try personalized ?? PersonalizedPipeline(base: pipeline)
        personalized = pipe
        pipe.ipAdapter = ipAdapter
        for token in tokens where pipe.adapters[token] == nil {
            try pipe.addAdapter(path: catalog.files[token]!)
            if let mismatch = pipe.adapters[token].flatMap(pipe.unetMismatch) { notice(mismatch) }
        }
        return pipe
    }

    /// Runs a request: checks it against the limits and this model, binds its subjects,
    /// and hands out each image as soon as its batch is decoded.
    public func generate(_ request: GenerationRequest, progress: ((_ batch: Int, GenerationProgress) -> Bool)? = nil,
                         deliver: (GeneratedImage) throws -> Void) throws {
        try request.validate()
        try pipeline.validate(request.generation)
        try catalog.checkPlaceholders(request)
        try additions.apply(loras: request.loras, embeddings: request.embeddings)
        guard let pipe = try personalize(request) else {
            try generateImages(request.generation, batch: { try pipeline.generate($0, progress: $1) }, progress: progress, deliver: deliver)
            return
        }
        var options: [String: NestedAttentionOptions] = [:], scales: [String: Float] = [:]
        for subject in request.subjects {
            guard let adapter = pipe.adapters[subject.placeholder] else { continue }
            options[subject.placeholder] = adapter.config.defaults.nestedOptions(
                SubjectSettings(valueNormalization: request.valueNormalization, tokenWeight: request.tokenWeight))
            scales[subject.placeholder] = request.adapterScale  // nil: the method takes the adapter's default
        }
        pipe.recordAttention = request.recordAttention
        defer { pipe.recordAttention = false }
        try generateImages(request.generation, batch: { config, report in
            defer { pipe.recordAttention = false }  // the first batch's maps are the request's
            return try pipe.generate(config, subjects: request.subjects, options: options, ipImages: request.ipImages,
                                     ipScale: request.ipScale, adapterScales: scales, progress: report)
        }, progress: progress, deliver: deliver)
    }

    /// Writes the attention maps recorded during the last request's first batch.
    public func writeAttentionMaps(of request: GenerationRequest, image: RGBImage, to folder: URL, overwrite: Bool) throws -> Int {
        guard let pipe = personalized else { return 0 }
        try NestPersonalization.writeAttentionMaps(pipe.recorders, image: image, references: pipe.referenceTraces(request.subjects),
                                                   to: folder, overwrite: overwrite)
        return pipe.recorders.count
    }
}
