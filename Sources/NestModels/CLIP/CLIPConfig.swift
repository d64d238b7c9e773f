import Foundation
import NestEngine

/// The MLP activation of a CLIP encoder (`hidden_act`). Only the two that
/// Stable Diffusion's encoders use are supported; anything else is refused by
/// name rather than silently replaced.
public enum CLIPActivation: String, Codable, Sendable {
    /// x·sigmoid(1.702x): OpenAI's CLIP (SD1's text encoder, SDXL's first).
    case quickGelu = "quick_gelu"
    /// Exact (erf) GELU: OpenCLIP models (SD2, SDXL's text_encoder_2, ViT-H/bigG image encoders).
    case gelu

    init(decoding raw: String) throws {
        guard let value = CLIPActivation(rawValue: raw) else {
            throw ModelConfigError("hidden_act '\(raw)' is not supported (expected quick_gelu or gelu)")
        }
        self = value
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .quickGelu: return F.quickGelu(x)
        case .gelu: return F.gelu(x)
        }
    }
}

/// The parts of a transformer encoder both CLIP towers share.
public struct CLIPEncoderShape: Sendable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var activation: CLIPActivation
    public var layerNormEps: Float

    func validate() throws {
        try ConfigBounds.check("hidden_size", hiddenSize, in: ConfigBounds.width)
        try ConfigBounds.check("intermediate_size", intermediateSize, in: ConfigBounds.width)
        try ConfigBounds.check("num_hidden_layers", layers, in: ConfigBounds.layers)
        try ConfigBounds.check("num_attention_heads", heads, in: ConfigBounds.heads)
        try ConfigBounds.check("layer_norm_eps", Double(layerNormEps), positive: true)
        guard hiddenSize % heads == 0 else {
            throw ModelConfigError("hidden_size \(hiddenSize) does not split into \(heads) attention heads")
        }
    }
}

/// transformers' `CLIPTextConfig` (a text encoder folder's config.json). The
/// sizes are required; the rest default as transformers does.
public struct CLIPTextConfig: Decodable, Sendable, Equatable {
    public var vocabSize: Int
    public var maxPositionEmbeddings: Int
    public var encoder: CLIPEncoderShape
    public var projectionDim: Int
    public var eosTokenId: Int
    public var bosTokenId: Int?
    public var padTokenId: Int?

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case layers = "num_hidden_layers", heads = "num_attention_heads"
        case maxPositionEmbeddings = "max_position_embeddings", hiddenAct = "hidden_act"
        case layerNormEps = "layer_norm_eps", projectionDim = "projection_dim"
        case eosTokenId = "eos_token_id", bosTokenId = "bos_token_id", padTokenId = "pad_token_id"
        case modelType = "model_type"
    }

    public init(vocabSize: Int, maxPositionEmbeddings: Int = 77, encoder: CLIPEncoderShape, projectionDim: Int = 512,
                eosTokenId: Int = 49407, bosTokenId: Int? = 49406, padTokenId: Int? = 1) {
        self.vocabSize = vocabSize
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.encoder = encoder
        self.projectionDim = projectionDim
        self.eosTokenId = eosTokenId
        self.bosTokenId = bosTokenId
        self.padTokenId = padTokenId
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let type = try c.decodeIfPresent(String.self, forKey: .modelType), type != "clip_text_model" {
            throw ModelConfigError("model_type '\(type)' is not a CLIP text model (expected clip_text_model)")
        }
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        maxPositionEmbeddings = try c.decode(Int.self, forKey: .maxPositionEmbeddings)
        encoder = CLIPEncoderShape(
            hiddenSize: try c.decode(Int.self, forKey: .hiddenSize),
            intermediateSize: try c.decode(Int.self, forKey: .intermediateSize),
            layers: try c.decode(Int.self, forKey: .layers),
            heads: try c.decode(Int.self, forKey: .heads),
            activation: try CLIPActivation(decoding: c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "quick_gelu"),
            layerNormEps: try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? 1e-5)
        projectionDim = try c.decodeIfPresent(Int.self, forKey: .projectionDim) ?? 512
        eosTokenId = try c.decodeIfPresent(Int.self, forKey: .eosTokenId) ?? 49407
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId)
        padTokenId = try c.decodeIfPresent(Int.self, forKey: .padTokenId)
        try encoder.validate()
        try ConfigBounds.check("vocab_size", vocabSize, in: ConfigBounds.vocabulary)
        try ConfigBounds.check("max_position_embeddings", maxPositionEmbeddings, in: ConfigBounds.positions)
        try ConfigBounds.check("projection_dim", projectionDim, in: ConfigBounds.width)
    }
}

/// transformers' `CLIPVisionConfig` (an image encoder folder's config.json).
public struct CLIPVisionConfig: Decodable, Sendable, Equatable {
    public var imageSize: Int
    public var patchSize: Int
    public var channels: Int
    public var encoder: CLIPEncoderShape
    public var projectionDim: Int

    /// Patches per side; the sequence is one class token plus `gridSize²` patches.
    public var gridSize: Int { imageSize / patchSize }

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case layers = "num_hidden_layers", heads = "num_attention_heads"
        case imageSize = "image_size", patchSize = "patch_size", channels = "num_channels"
        case hiddenAct = "hidden_act", layerNormEps = "layer_norm_eps", projectionDim = "projection_dim"
        case modelType = "model_type"
    }

    public init(imageSize: Int, patchSize: Int, channels: Int = 3, encoder: CLIPEncoderShape, projectionDim: Int = 512) {
        self.imageSize = imageSize
        self.patchSize = patchSize
        self.channels = channels
        self.encoder = encoder
        self.projectionDim = projectionDim
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let type = try c.decodeIfPresent(String.self, forKey: .modelType), type != "clip_vision_model" {
            throw ModelConfigError("model_type '\(type)' is not a CLIP vision model (expected clip_vision_model)")
        }
        imageSize = try c.decode(Int.self, forKey: .imageSize)
        patchSize = try c.decode(Int.self, forKey: .patchSize)
        channels = try c.decodeIfPresent(Int.self, forKey: .channels) ?? 3
        encoder = CLIPEncoderShape(
            hiddenSize: try c.decode(Int.self, forKey: .hiddenSize),
            intermediateSize: try c.decode(Int.self, forKey: .intermediateSize),
            layers: try c.decode(Int.self, forKey: .layers),
            heads: try c.decode(Int.self, forKey: .heads),
            activation: try CLIPActivation(decoding: c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "quick_gelu"),
            layerNormEps: try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? 1e-5)
        projectionDim = try c.decodeIfPresent(Int.self, forKey: .projectionDim) ?? 512
        try encoder.validate()
        try ConfigBounds.check("image_size", imageSize, in: ConfigBounds.positions)
        try ConfigBounds.check("patch_size", patchSize, in: 1...imageSize)
        try ConfigBounds.check("num_channels", channels, in: 1...64)
        try ConfigBounds.check("projection_dim", projectionDim, in: ConfigBounds.width)
        // One position per patch plus the class token.
        try ConfigBounds.check("(image_size / patch_size)² + 1 positions", gridSize * gridSize + 1, in: ConfigBounds.positions)
    }
}
