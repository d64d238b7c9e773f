import Foundation
import NestIO
import NestModels

/// The JSON half of an adapter file pair (`NAME.json` + `NAME.safetensors`).
///
/// ```json
/// { "format": "nest-adapter", "version": 1, "kind": "nested",
///   "placeholder_token": "<person>", "class_word": "person",
///   "image_encoder": { "hidden_size": 1280, "image_size": 224, "feature_layer": -2 },
///   "resampler": { "embedding_dim": 1280, "width": 1280, "output_dim": 2048, "depth": 4,
///                  "heads": 20, "head_dim": 64, "queries": 16, "ff_mult": 4 },
///   "layers": [ { "path": "down_blocks.1.attentions.0.transformer_blocks.0.attn2", "width": 640 }, … ],
///   "defaults": { "value_normalization": null, "token_weight": 1.0, "scale": 1.0 } }
/// ```
/// Tensors in the safetensors file: `resampler.*` and, per bound layer N,
/// `layers.N.to_k.weight` and `layers.N.to_v.weight`.
public struct AdapterConfig: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        /// Nested Attention: per-layer nested keys/values over the encoder tokens.
        case nested
        /// Decoupled cross-attention (IP-Adapter style) on the same encoder.
        case ipAdapter = "ip-adapter"
        /// One vector replacing the subject token's text embedding.
        case singleToken = "single-token"
    }

    public struct ImageEncoder: Codable, Sendable, Equatable {
        public var hiddenSize: Int
        public var imageSize: Int
        /// Which hidden state feeds the resampler (-2: the penultimate layer).
        public var featureLayer: Int
        /// The adapter file carries its own copy of the model's image encoder
        /// (`image_encoder.*`, same architecture), trained with the adapter.
        public var tuned: Bool
        enum CodingKeys: String, CodingKey {
            case hiddenSize = "hidden_size", imageSize = "image_size", featureLayer = "feature_layer", tuned
        }
        public init(hiddenSize: Int, imageSize: Int, featureLayer: Int = -2, tuned: Bool = false) {
            self.hiddenSize = hiddenSize; self.imageSize = imageSize; self.featureLayer = featureLayer; self.tuned = tuned
        }
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
            imageSize = try c.decode(Int.self, forKey: .imageSize)
            featureLayer = try c.decode(Int.self, forKey: .featureLayer)
            tuned = try c.decodeIfPresent(Bool.self, forKey: .tuned) ?? false
        }
    }

    public struct Layer: Codable, Sendable, Equatable {
        /// Module path of the UNet cross-attention layer (`…attn2`).
        public var path: String
        /// The layer's inner width (heads × head dim) that the projections produce.
        public var width: Int
        public init(path: String, width: Int) { self.path = path; self.width = width }
    }

    public struct Defaults: Codable, Sendable, Equatable {
        public var valueNormalization: Float?
        public var tokenWeight: Float
        public var scale: Float
        enum CodingKeys: String, CodingKey { case valueNormalization = "value_normalization", tokenWeight = "token_weight", scale }
        public init(valueNormalization: Float? = nil, tokenWeight: Float = 1, scale: Float = 1) {
            self.valueNormalization = valueNormalization; self.tokenWeight = tokenWeight; self.scale = scale
        }
    }

    /// How a nested adapter's per-query value v* enters the subject token's slot.
    public enum NestedValue: String, Codable, Sendable {
        /// The paper's form: v* takes the place of the token's text value V_s.
        case replace
        /// v* is added to V_s (the token keeps its text value; with the value
        /// projection started at zero, training starts from the base model).
        case add

        /// The one rule for both config files: only a nested adapter has a nested value.
        /// `key` names the setting as its file spells it.
        public static func check(_ value: NestedValue?, kind: Kind, key: String) throws {
            guard let value, kind != .nested else { return }
            throw ModelConfigError("\(key) \"\(value.rawValue)\" applies to nested adapters only, not \"\(kind.rawValue)\"")
        }
    }

    public var format: String = "nest-adapter"
    public var version: Int = 1
    public var kind: Kind
    public var placeholderToken: String
    public var classWord: String
    public var imageEncoder: ImageEncoder
    public var resampler: Resampler.Config
    public var layers: [Layer]
    /// Width of the text context the single-token kind writes into (the UNet's cross_attention_dim).
    public var contextWidth: Int?
    public var defaults: Defaults
    /// Nested adapters only; absent means `replace` (files written before the option).
    public var nestedValue: NestedValue?
    /// Set when the adapter was trained together with its base UNet (`unet_learning_rate`):
    /// that UNet's `Module.weightDigest()`. The adapter is meant for that UNet only (the run
    /// writes it beside the adapter); absent for adapters trained on a frozen base.
    public var trainedWithUNet: String?

    enum CodingKeys: String, CodingKey {
        case format, version, kind, placeholderToken = "placeholder_token", classWord = "class_word"
        case imageEncoder = "image_encoder", resampler, layers, contextWidth = "context_width", defaults
        case nestedValue = "nested_value", trainedWithUNet = "trained_with_unet"
    }

    public init(kind: Kind, placeholderToken: String, classWord: String, imageEncoder: ImageEncoder,
                resampler: Resampler.Config, layers: [Layer], contextWidth: Int? = nil, defaults: Defaults = .init(),
                nestedValue: NestedValue? = nil) {
        self.kind = kind; self.placeholderToken = placeholderToken; self.classWord = classWord
        self.imageEncoder = imageEncoder; self.resampler = resampler; self.layers = layers
        self.contextWidth = contextWidth; self.defaults = defaults; self.nestedValue = nestedValue
    }

    /// Whether v* is added to the subject token's value rather than replacing it.
    public var addsNestedValue: Bool { nestedValue == .add }

    public static func load(from url: URL) throws -> AdapterConfig {
        let config = try decodeConfig(AdapterConfig.self, from: url)
        do { try config.validate() } catch let error as ModelConfigError {
            throw ModelConfigError("\(url.path): \(error.description)")
        }
        return config
    }
}

extension AdapterConfig {
    /// Checks every number and name against sane ranges and against each other,
    /// so that building the adapter cannot crash or allocate without bound.
    public func validate() throws {
        guard format == "nest-adapter" else { throw ModelConfigError("format '\(Escaped.text(format))' is not 'nest-adapter'") }
        guard version == 1 else { throw ModelConfigError("adapter version \(version) is not supported") }
        for (key, text) in [("placeholder_token", placeholderToken), ("class_word", classWord)]
        where text.isEmpty || text.contains(where: \.isWhitespace) {
            throw ModelConfigError("'\(key)' \"\(Escaped.text(text))\" must be one non-empty word")
        }
        try ConfigBounds.check("image_encoder.hidden_size", imageEncoder.hiddenSize, in: ConfigBounds.width)
        try ConfigBounds.check("image_encoder.image_size", imageEncoder.imageSize, in: ConfigBounds.positions)
        try ConfigBounds.check("image_encoder.feature_layer", imageEncoder.featureLayer,
                               in: -(ConfigBounds.layers.upperBound + 1)...ConfigBounds.layers.upperBound)
        let r = resampler
        for (key, value) in [("embedding_dim", r.embeddingDim), ("width", r.width), ("output_dim", r.outputDim),
                             ("head_dim", r.headDim)] {
            try ConfigBounds.check("resampler.\(key)", value, in: ConfigBounds.width)
        }
        try ConfigBounds.check("resampler.depth", r.depth, in: ConfigBounds.layers)
        try ConfigBounds.check("resampler.heads", r.heads, in: ConfigBounds.heads)
        try ConfigBounds.check("resampler.heads × head_dim", r.heads * r.headDim, in: ConfigBounds.width)
        try ConfigBounds.check("resampler.queries", r.queries, in: 1...4096)
        try ConfigBounds.check("resampler.ff_mult", r.ffMult, in: 1...16)
        guard r.embeddingDim == imageEncoder.hiddenSize else {
            throw ModelConfigError("'resampler.embedding_dim' \(r.embeddingDim) differs from 'image_encoder.hidden_size' \(imageEncoder.hiddenSize) (the features it reads)")
        }
        try ConfigBounds.check("layers (count)", layers.count, in: (kind == .singleToken ? 0 : 1)...1024)
        var seen = Set<String>()
        for (i, layer) in layers.enumerated() {
            guard !layer.path.isEmpty, seen.insert(layer.path).inserted else {
                throw ModelConfigError("'layers.\(i).path' \"\(Escaped.text(layer.path))\" is empty or repeated")
            }
            try ConfigBounds.check("layers.\(i).width", layer.width, in: ConfigBounds.width)
        }
        if kind == .singleToken {
            guard let contextWidth else { throw ModelConfigError("a single-token adapter needs 'context_width'") }
            try ConfigBounds.check("context_width", contextWidth, in: ConfigBounds.width)
        } else if let contextWidth {
            try ConfigBounds.check("context_width", contextWidth, in: ConfigBounds.width)
        }
        try NestedValue.check(nestedValue, kind: kind, key: "nested_value")
        try ConfigBounds.check("defaults.token_weight", Double(defaults.tokenWeight))
        try ConfigBounds.check("defaults.scale", Double(defaults.scale))
        if let norm = defaults.valueNormalization { try ConfigBounds.check("defaults.value_normalization", Double(norm), positive: true) }
    }

    /// Checks the adapter against the image encoder it will read features from:
    /// the feature layer must exist and the feature width must match.
    public func validate(against encoder: CLIPVisionConfig) throws {
        let layerCount = encoder.encoder.layers
        // Hidden states are the embeddings (0) and one per layer; negative values count from the last.
        guard (-(layerCount + 1)...layerCount).contains(imageEncoder.featureLayer) else {
            throw ModelConfigError("'image_encoder.feature_layer' is \(imageEncoder.featureLayer), outside "
                + "\(-(layerCount + 1))...\(layerCount) for the model's \(layerCount)-layer image encoder")
        }
        guard imageEncoder.hiddenSize == encoder.encoder.hiddenSize else {
            throw ModelConfigError("'image_encoder.hidden_size' is \(imageEncoder.hiddenSize) but the model's image encoder is \(encoder.encoder.hiddenSize) wide")
        }
    }
}
