import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels

/// One subject for a generation: its placeholder token and reference photos
/// (several photos of one subject average their encoder tokens).
public struct Subject {
    public var placeholder: String
    public var images: [RGBImage]
    public init(placeholder: String, images: [RGBImage]) { self.placeholder = placeholder; self.images = images }
}

/// Text-to-image with subjects: Nested Attention adapters (or the IP-Adapter-
/// style and single-token baselines trained on the same encoder) and real
/// IP-Adapter files, on top of a `StableDiffusionPipeline`.
public final class PersonalizedPipeline {
    public let base: StableDiffusionPipeline
    public let imageEncoder: CLIPVisionModel
    public let imageProcessor: CLIPImageProcessor
    /// Adapters by placeholder token.
    public private(set) var adapters: [String: PersonalizationAdapter] = [:]
    public var ipAdapter: IPAdapter?
    /// Record attention maps on the nested layers during `generate` (for `--save-attention`).
    public var recordAttention = false
    /// The recorders of the last generation when `recordAttention` is on, in layer order.
    public private(set) var recorders: [AttentionRecorder] = []

    public init(base: StableDiffusionPipeline) throws {
        self.base = base
        guard base.folder.has("image_encoder") else {
            throw ModelConfigError("\(base.folder.url.path): no image_encoder/ in the model folder (subject adapters need a CLIP image encoder)")
        }
        imageEncoder = try CLIPVisionModel.load(folder: try base.folder.component("image_encoder"))
        let processorFolder = base.folder.has("feature_extractor") ? try base.folder.component("feature_extractor")
            : try base.folder.component("image_encoder")
        imageProcessor = try CLIPImageProcessor.load(folder: processorFolder)
    }

    /// Loads an adapter pair (`NAME.json` + `NAME.safetensors`) made for this model and adds it.
    public func addAdapter(path: String) throws {
        try add(try PersonalizationAdapter.load(path: path, imageEncoder: imageEncoder.config))
    }

    /// Adds an adapter; its placeholder joins the tokenizers with the class word's embedding.
    public func add(_ adapter: PersonalizationAdapter) throws {
        let token = adapter.config.placeholderToken
        guard adapters[token] == nil else {
            throw ModelConfigError("two adapters claim the placeholder token \(token)")
        }
        if adapter.config.kind != .singleToken { _ = try adapter.resolveLayers(in: base.unet.crossAttentionLayers) }
        if let width = adapter.config.contextWidth, adapter.config.kind == .singleToken, width != base.unet.config.levels[0].crossAttentionDim {
            throw ModelConfigError("adapter \(token) writes \(width)-wide context but the UNet's is \(base.unet.config.levels[0].crossAttentionDim) (made for a different base model)")
        }
        guard adapter.config.imageEncoder.hiddenSize == imageEncoder.config.encoder.hiddenSize else {
            throw ModelConfigError("adapter \(token) expects \(adapter.config.imageEncoder.hiddenSize)-wide image features, the model's image encoder gives \(imageEncoder.config.encoder.hiddenSize)")
        }
        try base.prompts.addPlaceholder(token, classWord: adapter.config.classWord)
        adapters[token] = adapter
    }

    /// The base UNet's `weightDigest()`, computed on first need.
    private var unetDigest: String?

    /// Why `adapter` may not suit this model's UNet: it was trained together with a UNet
    /// (`trained_with_unet`) whose weights differ from these. Nil when it suits, or when it was
    /// trained on a frozen base (such adapters move between fine-tunes of their base, as
    /// IP-Adapters do).
    public func unetMismatch(_ adapter: PersonalizationAdapter) -> String? {
        guard let expected = adapter.config.trainedWithUNet else { return nil }
        let digest = unetDigest ?? base.unet.weightDigest()
        unetDigest = digest
        guard digest != expected else { return nil }
        return "adapter \(adapter.config.placeholderToken) was trained together with its own UNet (digest \(expected), written as unet/ beside it); this model's UNet differs (\(digest)), so the subject will come out weaker — put that unet/ into the model folder"
    }

    /// Encoder tokens E of a subject: CLIP features of the adapter's layer, resampled, averaged over photos.
    public func encoderTokens(_ subject: Subject, adapter: PersonalizationAdapter) -> Tensor {
        Autograd.noGrad {
            let pixels = F.concat(subject.images.map { imageProcessor($0) }, axis: 0)
            let features = adapter.imageFeatures(pixels: pixels, shared: imageEncoder)
            let tokens = adapter.encode(features: features)
            return tokens.mean(axes: [0], keepDims: true)
        }
    }

    /// Per subject: its first photo, the CLIP input it became, and the resampler's
    /// attention of each encoder token over the photo's patches.
    public func referenceTraces(_ subjects: [Subject]) -> [String: (photo: RGBImage, pixels: Tensor, patchAttention: [[Float]])] {
        var traces: [String: (photo: RGBImage, pixels: Tensor, patchAttention: [[Float]])] = [:]
        for subject in subjects {
            guard let adapter = adapters[subject.placeholder], let photo = subject.images.first else { continue }
            let pixels = imageProcessor(photo)
            let features = Autograd.noGrad { adapter.imageFeatures(pixels: pixels, shared: imageEncoder) }
            traces[subject.placeholder] = (photo, pixels, adapter.resampler.featureAttention(features))
        }
        return traces
    }

    /// Refuses a prompt that names a subject placeholder with no image of that subject:
    /// the model would otherwise read `<critter>` as an unknown word and ignore it silently.
    public static func checkPlaceholders(prompt: String, negativePrompt: String?, known: some Sequence<String>,
                                         subjects: Set<String>) throws {
        for token in known where !subjects.contains(token) {
            for (text, field) in [(prompt, "prompt"), (negativePrompt ?? "", "negative_prompt")] where text.contains(token) {
                throw GenerationRequestError(field: field, "names the subject \(token) but no image of \(token) was given")
            }
        }
    }

    /// Generates with the given subjects (each must have a loaded adapter and
    /// appear in the prompt), and IP-Adapter reference images if an IP-Adapter is set.
    /// Each subject goes through its adapter kind's `SubjectMethod`; the attention
    /// processors are set for this generation only.
    public func generate(_ config: GenerationConfiguration, subjects: [Subject], options: [String: NestedAttentionOptions] = [:],
                         ipImages: [RGBImage] = [], ipScale: Float = 1, adapterScales: [String: Float] = [:],
                         progress: ((GenerationProgress) -> Bool)? = nil) throws -> Tensor {
        try check(config, subjects: subjects, options: options, ipImages: ipImages, ipScale: ipScale, adapterScales: adapterScales)
        let grid = imageEncoder.config.gridSize
        let bound = subjects.map { s -> NestedBindingSubject in
            let adapter = adapters[s.placeholder]!
            return adapter.config.kind.method.generationSubject(
                adapter: adapter, tokens: encoderTokens(s, adapter: adapter), position: base.prompts.position(of: s.placeholder, in: config.prompt)!,
                count: config.count, guided: base.usesGuidance(config), featureCount: grid * grid + 1,
                options: options[s.placeholder], scale: adapterScales[s.placeholder])
        }
        let byKind = Dictionary(grouping: bound, by: \.adapter.config.kind)
        let processors = try Autograd.noGrad {
            try attentionProcessors(config, byKind: byKind, ipImages: ipImages, ipScale: ipScale)
        }
        return try base.unet.withAttentionProcessors(processors) {
            try base.generate(config, conditioning: { positive, _ in
                for kind in AdapterConfig.Kind.compositionOrder {
                    positive.hidden = kind.method.context(positive.hidden, subjects: byKind[kind] ?? [])
                }
            }, progress: progress)
        }
    }

    /// Each subject has a loaded adapter, appears in the prompt and has photos; the settings are in range.
    func check(_ config: GenerationConfiguration, subjects: [Subject], options: [String: NestedAttentionOptions],
               ipImages: [RGBImage], ipScale: Float, adapterScales: [String: Float]) throws {
        for subject in subjects {
            guard adapters[subject.placeholder] != nil else {
                throw ModelConfigError("subject \(subject.placeholder) names no loaded adapter (loaded: \(adapters.keys.sorted().joined(separator: ", ")))")
            }
            guard base.prompts.position(of: subject.placeholder, in: config.prompt) != nil else {
                throw ModelConfigError("the prompt does not contain the placeholder token \(subject.placeholder)")
            }
            guard !subject.images.isEmpty else { throw ModelConfigError("subject \(subject.placeholder) has no images") }
        }
        if !ipImages.isEmpty && ipAdapter == nil { throw ModelConfigError("IP-Adapter images given but no IP-Adapter loaded") }
        for o in options.values { try o.validate() }
        try checkRange(ipScale, 0...10, field: "subject_scale")
        for scale in adapterScales.values { try checkRange(scale, 0...10, field: "subject_scale") }
        try Self.checkPlaceholders(prompt: config.prompt, negativePrompt: config.negativePrompt,
                                   known: adapters.keys, subjects: Set(subjects.map(\.placeholder)))
    }

    /// The processors of one generation over the UNet's own: each method's in `compositionOrder`
    /// (recorders around the nested ones when `recordAttention` is on), then a real IP-Adapter's.
    func attentionProcessors(_ config: GenerationConfiguration, byKind: [AdapterConfig.Kind: [NestedBindingSubject]],
                             ipImages: [RGBImage], ipScale: Float) throws -> [String: AttentionProcessor] {
        var processors = base.unet.attentionProcessors
        for kind in AdapterConfig.Kind.compositionOrder {
            processors.merge(try kind.method.processors(on: base.unet, subjects: byKind[kind] ?? [], over: processors)) { $1 }
        }
        recorders = []
        for (path, _) in base.unet.crossAttentionLayers where recordAttention {
            guard let nested = processors[path] as? NestedAttentionProcessor, !nested.placeholderTokens.isEmpty else { continue }
            let recorder = AttentionRecorder(inner: nested, path: path, subjects: Array(zip(nested.placeholderTokens, nested.subjects)),
                                             tokenWeight: nested.options.tokenWeight)
            processors[path] = recorder
            recorders.append(recorder)
        }
        if let ipAdapter, !ipImages.isEmpty {
            let pixels = F.concat(ipImages.map { imageProcessor($0) }, axis: 0)
            var tokens = try ipAdapter.guidanceTokens(pixels: pixels, encoder: imageEncoder, count: config.count)
            if !base.usesGuidance(config) { tokens = tokens.slice(axis: 0, config.count..<(2 * config.count)) }
            processors.merge(try ipAdapter.processors(for: base.unet, tokens: tokens, scale: ipScale, over: processors)) { $1 }
        }
        return processors
    }
}
