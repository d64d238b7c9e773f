import NestEngine
import NestModels

/// One subject of a generation: a nested adapter, the subject's encoder
/// tokens and where its placeholder token sits in each prompt of the UNet's batch.
public struct NestedBindingSubject {
    public var adapter: PersonalizationAdapter
    /// E = `adapter.encode(features:)`: [1, M, D] shared by the batch, or [B, M, D].
    public var tokens: Tensor
    /// Per UNet batch item (e.g. [nil, s] for [unconditional, conditional]):
    /// the placeholder token's position, or nil where the prompt lacks it.
    public var tokenIndex: [Int?]
    /// λ and w for this subject; nil takes the adapter's `defaults`.
    public var options: NestedAttentionOptions?
    /// The decoupled-attention baseline's scale; nil takes the adapter's `defaults`.
    public var scale: Float?

    public init(adapter: PersonalizationAdapter, tokens: Tensor, tokenIndex: [Int?], options: NestedAttentionOptions? = nil,
                scale: Float? = nil) {
        self.adapter = adapter; self.tokens = tokens; self.tokenIndex = tokenIndex; self.options = options; self.scale = scale
    }

    /// The options in force: the explicit ones, else the adapter file's defaults.
    public var resolvedOptions: NestedAttentionOptions { options ?? adapter.config.defaults.nestedOptions() }
}

/// Nested Attention installed on a UNet for one generation.
///
/// `make` checks everything first (so a refused binding leaves the UNet
/// untouched), then projects each subject's encoder tokens through its
/// adapter's per-layer K̃/Ṽ projections once — not once per denoising step —
/// and gives every bound cross-attention layer a `NestedAttentionProcessor`
/// holding all subjects bound there (each replaces only its own token's
/// value). Layers no adapter binds keep their processor. Generation and
/// training set the processors for one scope (`withAttentionProcessors`);
/// `install`/`uninstall` set and restore them by hand.
public final class NestedAttentionBinding {
    public struct BoundLayer {
        /// The layer's `attn_processors` key (`….attn2.processor`).
        public let path: String
        public let layer: Attention
        public let processor: NestedAttentionProcessor
        /// Placeholder tokens of the subjects bound here, in subject order.
        public let placeholderTokens: [String]
        /// The processor the layer had before (restored by `uninstall`).
        let previous: AttentionProcessor
    }

    /// Bound layers in the UNet's own (diffusers `attn_processors`) order.
    public let layers: [BoundLayer]
    public private(set) var isInstalled = false

    private init(layers: [BoundLayer]) { self.layers = layers }

    /// The bound layers' processors by `attn_processors` key, for `UNet2DConditionModel.withAttentionProcessors`.
    public var processors: [String: AttentionProcessor] {
        Dictionary(layers.map { ($0.path, $0.processor as AttentionProcessor) }, uniquingKeysWith: { first, _ in first })
    }

    /// Binds `subjects` (one per nested adapter) to `unet`'s cross-attention layers, leaving the UNet as it is:
    /// the processors take effect inside `unet.withAttentionProcessors(binding.processors) { … }`.
    public static func make(on unet: UNet2DConditionModel, subjects: [NestedBindingSubject]) throws -> NestedAttentionBinding {
        try make(on: unet.crossAttentionLayers, subjects: subjects)
    }

    /// Binds to an explicit list of cross-attention layers (`attn_processors` keys and layers, in order).
    public static func make(on crossAttention: [(path: String, layer: Attention)],
                            subjects: [NestedBindingSubject]) throws -> NestedAttentionBinding {
        let resolved = try validate(subjects, against: crossAttention)
        // Per layer (by identity), the subjects bound there, in subject order.
        var perLayer: [ObjectIdentifier: [(token: String, subject: NestedSubject)]] = [:]
        for (subject, layers) in zip(subjects, resolved) {
            let projected = subject.adapter.layerKeysValues(subject.tokens)
            let options = subject.resolvedOptions
            for (layer, kv) in zip(layers, projected) {
                perLayer[ObjectIdentifier(layer), default: []].append((subject.adapter.config.placeholderToken,
                    NestedSubject(tokenIndex: subject.tokenIndex, keys: kv.keys, values: kv.values, options: options,
                                  addsValue: subject.adapter.config.addsNestedValue)))
            }
        }
        var bound: [BoundLayer] = []
        for (path, layer) in crossAttention {
            guard let nested = perLayer[ObjectIdentifier(layer)] else { continue }
            let processor = NestedAttentionProcessor()
            processor.subjects = nested.map(\.subject)
            processor.placeholderTokens = nested.map(\.token)
            bound.append(BoundLayer(path: path, layer: layer, processor: processor, placeholderTokens: nested.map(\.token),
                                    previous: layer.processor))
        }
        return NestedAttentionBinding(layers: bound)
    }

    /// `make`, then the processors set until `uninstall` (for code that cannot wrap its work in a scope).
    public static func install(on unet: UNet2DConditionModel, subjects: [NestedBindingSubject]) throws -> NestedAttentionBinding {
        try install(on: unet.crossAttentionLayers, subjects: subjects)
    }

    public static func install(on crossAttention: [(path: String, layer: Attention)],
                               subjects: [NestedBindingSubject]) throws -> NestedAttentionBinding {
        let binding = try make(on: crossAttention, subjects: subjects)
        for bound in binding.layers { bound.layer.processor = bound.processor }
        binding.isInstalled = true
        return binding
    }

    /// Restores each bound layer's previous processor (plain, normally). Safe to call twice.
    public func uninstall() {
        guard isInstalled else { return }
        for bound in layers where bound.layer.processor === bound.processor { bound.layer.processor = bound.previous }
        isInstalled = false
    }

    /// Paths of the layers a subject (by placeholder token) is bound to, in UNet order.
    public func paths(of placeholderToken: String) -> [String] {
        layers.filter { $0.placeholderTokens.contains(placeholderToken) }.map(\.path)
    }
}
