import Foundation
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

    enum CodingKeys: String, CodingKey {
        case format, version, kind, placeholderToken = "placeholder_token", classWord = "class_word"
        case imageEncoder = "image_encoder", resampler, layers, contextWidth = "context_width", defaults
    }

    public init(kind: Kind, placeholderToken: String, classWord: String, imageEncoder: ImageEncoder,
                resampler: Resampler.Config, layers: [Layer], contextWidth: Int? = nil, defaults: Defaults = .init()) {
        self.kind = kind; self.placeholderToken = placeholderToken; self.classWord = classWord
        self.imageEncoder = imageEncoder; self.resampler = resampler; self.layers = layers
        self.contextWidth = contextWidth; self.defaults = defaults
    }

    public static func load(from url: URL) throws -> AdapterConfig {
        let config = try decodeConfig(AdapterConfig.self, from: url)
        guard config.format == "nest-adapter" else {
            throw ModelConfigError("\(url.path): format '\(config.format)' is not 'nest-adapter'")
        }
        guard config.version == 1 else { throw ModelConfigError("\(url.path): adapter version \(config.version) is not supported") }
        if config.kind == .singleToken && config.contextWidth == nil {
            throw ModelConfigError("\(url.path): a single-token adapter needs 'context_width'")
        }
        return config
    }
}
