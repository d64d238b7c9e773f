import Foundation

/// `unet/config.json` exactly as diffusers writes it (absent and null keys
/// are nil). `UNet2DConditionConfig` turns it into checked, per-level values.
struct RawUNetConfig: Decodable {
    // Required: a UNet config without these is not a UNet config.
    var downBlockTypes: [String]
    var upBlockTypes: [String]
    var blockOutChannels: [Int]
    var crossAttentionDim: OneOrMany<Int>

    var sampleSize: OneOrMany<Int>?
    var inChannels: Int?
    var outChannels: Int?
    var centerInputSample: Bool?
    var flipSinToCos: Bool?
    var freqShift: Float?
    var midBlockType: String?
    var onlyCrossAttention: OneOrMany<Bool>?
    var layersPerBlock: OneOrMany<Int>?
    var downsamplePadding: Int?
    var midBlockScaleFactor: Float?
    var actFn: String?
    var normNumGroups: Int?
    var normEps: Float?
    var transformerLayersPerBlock: TransformerDepths?
    var reverseTransformerLayersPerBlock: [[Int]]?
    var encoderHidDim: Int?
    var encoderHidDimType: String?
    var attentionHeadDim: OneOrMany<Int>?
    var numAttentionHeads: OneOrMany<Int>?
    var dualCrossAttention: Bool?
    var useLinearProjection: Bool?
    var classEmbedType: String?
    var additionEmbedType: String?
    var additionTimeEmbedDim: Int?
    var numClassEmbeds: Int?
    var upcastAttention: Bool?
    var resnetTimeScaleShift: String?
    var timeEmbeddingType: String?
    var timeEmbeddingDim: Int?
    var timeEmbeddingActFn: String?
    var timestepPostAct: String?
    var timeCondProjDim: Int?
    var convInKernel: Int?
    var convOutKernel: Int?
    var projectionClassEmbeddingsInputDim: Int?
    var attentionType: String?
    var classEmbeddingsConcat: Bool?
    // Read by diffusers only for block types we do not build (Simple*/Resnet*
    // blocks, "text" added embeddings), so they cannot change this model:
    // dropout, resnet_out_scale_factor, resnet_skip_time_act, cross_attention_norm,
    // mid_block_only_cross_attention, addition_embed_type_num_heads.

    enum CodingKeys: String, CodingKey {
        case downBlockTypes = "down_block_types", upBlockTypes = "up_block_types"
        case blockOutChannels = "block_out_channels", crossAttentionDim = "cross_attention_dim"
        case sampleSize = "sample_size", inChannels = "in_channels", outChannels = "out_channels"
        case centerInputSample = "center_input_sample", flipSinToCos = "flip_sin_to_cos", freqShift = "freq_shift"
        case midBlockType = "mid_block_type", onlyCrossAttention = "only_cross_attention"
        case layersPerBlock = "layers_per_block", downsamplePadding = "downsample_padding"
        case midBlockScaleFactor = "mid_block_scale_factor", actFn = "act_fn"
        case normNumGroups = "norm_num_groups", normEps = "norm_eps"
        case transformerLayersPerBlock = "transformer_layers_per_block"
        case reverseTransformerLayersPerBlock = "reverse_transformer_layers_per_block"
        case encoderHidDim = "encoder_hid_dim", encoderHidDimType = "encoder_hid_dim_type"
        case attentionHeadDim = "attention_head_dim", numAttentionHeads = "num_attention_heads"
        case dualCrossAttention = "dual_cross_attention", useLinearProjection = "use_linear_projection"
        case classEmbedType = "class_embed_type", additionEmbedType = "addition_embed_type"
        case additionTimeEmbedDim = "addition_time_embed_dim", numClassEmbeds = "num_class_embeds"
        case upcastAttention = "upcast_attention", resnetTimeScaleShift = "resnet_time_scale_shift"
        case timeEmbeddingType = "time_embedding_type", timeEmbeddingDim = "time_embedding_dim"
        case timeEmbeddingActFn = "time_embedding_act_fn", timestepPostAct = "timestep_post_act"
        case timeCondProjDim = "time_cond_proj_dim", convInKernel = "conv_in_kernel", convOutKernel = "conv_out_kernel"
        case projectionClassEmbeddingsInputDim = "projection_class_embeddings_input_dim"
        case attentionType = "attention_type", classEmbeddingsConcat = "class_embeddings_concat"
    }

    /// Options with no counterpart in this model, named in the error.
    func refuseUnsupportedOptions() throws {
        func refuse(_ message: String) -> ModelConfigError { ModelConfigError(message) }
        if centerInputSample == true { throw refuse("center_input_sample true is not supported") }
        if dualCrossAttention == true { throw refuse("dual_cross_attention true is not supported") }
        if let v = classEmbedType { throw refuse("class_embed_type '\(v)' is not supported") }
        if let v = numClassEmbeds { throw refuse("num_class_embeds \(v) is not supported") }
        if classEmbeddingsConcat == true { throw refuse("class_embeddings_concat true is not supported") }
        if let v = encoderHidDim { throw refuse("encoder_hid_dim \(v) is not supported") }
        if let v = encoderHidDimType { throw refuse("encoder_hid_dim_type '\(v)' is not supported") }
        if let v = timeEmbeddingActFn { throw refuse("time_embedding_act_fn '\(v)' is not supported") }
        if let v = timestepPostAct, !["silu", "swish"].contains(v) { throw refuse("timestep_post_act '\(v)' is not supported") }
        if let v = actFn, !["silu", "swish"].contains(v) { throw refuse("act_fn '\(v)' is not supported") }
        if let v = timeEmbeddingType, v != "positional" { throw refuse("time_embedding_type '\(v)' is not supported") }
        if let v = attentionType, v != "default" { throw refuse("attention_type '\(v)' is not supported") }
        if reverseTransformerLayersPerBlock != nil {
            throw refuse("reverse_transformer_layers_per_block is not supported")
        }
        // diffusers' UNet2DConditionModel itself rejects num_attention_heads
        // (attention_head_dim already holds the head count, see its issue 2011).
        if numAttentionHeads != nil {
            throw refuse("num_attention_heads is not supported (attention_head_dim gives the number of heads)")
        }
    }
}

/// `transformer_layers_per_block`: one count or one per block. The nested
/// form (per layer, for asymmetric UNets) is refused by name.
enum TransformerDepths: Decodable {
    case one(Int), many([Int])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let v = try? c.decode(Int.self) { self = .one(v); return }
        if let v = try? c.decode([Int].self) { self = .many(v); return }
        if (try? c.decode([[Int]].self)) != nil {
            throw ModelConfigError("transformer_layers_per_block as a list of lists (asymmetric UNet) is not supported")
        }
        throw ModelConfigError("transformer_layers_per_block must be an integer or a list of integers")
    }

    func expanded(_ count: Int, key: String) throws -> [Int] {
        switch self {
        case .one(let v): return try OneOrMany.one(v).expanded(count, key: key)
        case .many(let vs): return try OneOrMany.many(vs).expanded(count, key: key)
        }
    }
}
