import Foundation

/// A diffusers `UNet2DConditionModel` configuration (`unet/config.json`) for
/// the Stable Diffusion 1.x, 2.x and SDXL families, checked and normalized
/// when decoded: every per-block option (an int or a list in the file) is
/// spread into one `Level` per resolution, and diffusers' naming quirk
/// (`attention_head_dim` is the number of heads) is resolved into
/// `Level.heads`. Options the model cannot honour are refused by name.
public struct UNet2DConditionConfig: Decodable, Sendable {
    public enum DownBlockType: String, Sendable { case crossAttention = "CrossAttnDownBlock2D", plain = "DownBlock2D" }
    public enum UpBlockType: String, Sendable { case crossAttention = "CrossAttnUpBlock2D", plain = "UpBlock2D" }

    /// One resolution level, in down-path order; the up path visits the levels reversed.
    public struct Level: Sendable, Equatable {
        public var channels: Int
        /// ResNets in the down block (the mirrored up block has one more).
        public var layers: Int
        /// BasicTransformerBlocks in each Transformer2DModel of this level.
        public var transformerLayers: Int
        public var heads: Int
        public var crossAttentionDim: Int
        /// Self-attention replaced by a second cross-attention (diffusers' `only_cross_attention`).
        public var onlyCrossAttention: Bool
    }

    /// SDXL's "text_time" conditioning: pooled text embeds and six size/crop ids.
    public struct AddedTimeConditioning: Sendable, Equatable {
        /// Sinusoid width for each of the six time ids.
        public var timeEmbedDim: Int
        /// Input width of `add_embedding.linear_1`: pooled width + 6 · timeEmbedDim.
        public var projectionInputDim: Int
    }

    public let downBlockTypes: [DownBlockType]
    public let upBlockTypes: [UpBlockType]
    public let levels: [Level]
    public let inChannels: Int
    public let outChannels: Int
    /// Latent size the model was trained at ([height, width]); informational.
    public let sampleSize: [Int]?
    public let flipSinToCos: Bool
    public let freqShift: Float
    public let downsamplePadding: Int
    /// False when `mid_block_type` is null.
    public let hasMidBlock: Bool
    public let midBlockScaleFactor: Float
    public let normGroups: Int
    public let normEps: Float
    public let useLinearProjection: Bool
    /// Accepted for completeness; attention runs in float32 anyway.
    public let upcastAttention: Bool
    public let resnetTimeScaleShift: ResnetBlock2D.TimeEmbeddingNorm
    /// Width of the sinusoidal timestep features (block_out_channels[0]).
    public let timestepChannels: Int
    /// Width of the projected time embedding every ResNet receives.
    public let timeEmbeddingDim: Int
    /// SiLU after `time_embedding.linear_2` (diffusers' `timestep_post_act`).
    public let timestepPostActivation: Bool
    /// `time_cond_proj_dim`: width of the guidance-scale embedding that LCM-distilled
    /// UNets add to the timestep features (through `time_embedding.cond_proj`).
    public let timeConditionDim: Int?
    public let addedTimeConditioning: AddedTimeConditioning?
    public let convInKernel: Int
    public let convOutKernel: Int

    /// Reads and checks `config.json`; errors are one line naming the file and key.
    public static func load(from url: URL) throws -> UNet2DConditionConfig {
        try decodeConfig(UNet2DConditionConfig.self, from: url)
    }

    public static func decode(_ data: Data, name: String = "unet/config.json") throws -> UNet2DConditionConfig {
        try decodeConfig(UNet2DConditionConfig.self, data: data, name: name)
    }

    public init(from decoder: Decoder) throws {
        let raw = try RawUNetConfig(from: decoder)
        let keys = try decoder.container(keyedBy: RawUNetConfig.CodingKeys.self)
        // An absent mid_block_type means diffusers' default; an explicit null means no mid block.
        let midIsNull = try keys.contains(.midBlockType) && keys.decodeNil(forKey: .midBlockType)
        if keys.contains(.normNumGroups), try keys.decodeNil(forKey: .normNumGroups) {
            throw ModelConfigError("norm_num_groups null is not supported")
        }
        try raw.refuseUnsupportedOptions()

        downBlockTypes = try raw.downBlockTypes.map {
            guard let t = DownBlockType(rawValue: $0) else {
                throw ModelConfigError("unsupported down_block_types entry '\($0)'")
            }
            return t
        }
        upBlockTypes = try raw.upBlockTypes.map {
            guard let t = UpBlockType(rawValue: $0) else { throw ModelConfigError("unsupported up_block_types entry '\($0)'") }
            return t
        }
        if !midIsNull, let mid = raw.midBlockType, mid != "UNetMidBlock2DCrossAttn" {
            throw ModelConfigError("unsupported mid_block_type '\(mid)'")
        }
        hasMidBlock = !midIsNull

        let n = downBlockTypes.count
        guard n > 0 else { throw ModelConfigError("down_block_types is empty") }
        guard upBlockTypes.count == n else {
            throw ModelConfigError("up_block_types has \(upBlockTypes.count) entries but down_block_types has \(n)")
        }
        guard raw.blockOutChannels.count == n else {
            throw ModelConfigError("block_out_channels has \(raw.blockOutChannels.count) entries but down_block_types has \(n)")
        }
        // Checked before anything is derived from them (a product of absurd sizes would overflow).
        for channels in raw.blockOutChannels { try ConfigBounds.check("block_out_channels", channels, in: ConfigBounds.width) }
        let layers = try (raw.layersPerBlock ?? .one(2)).expanded(n, key: "layers_per_block")
        let heads = try (raw.attentionHeadDim ?? .one(8)).expanded(n, key: "attention_head_dim")
        let crossDims = try raw.crossAttentionDim.expanded(n, key: "cross_attention_dim")
        let onlyCross = try (raw.onlyCrossAttention ?? .one(false)).expanded(n, key: "only_cross_attention")
        let depths = try (raw.transformerLayersPerBlock ?? .one(1)).expanded(n, key: "transformer_layers_per_block")
        levels = (0..<n).map {
            Level(channels: raw.blockOutChannels[$0], layers: layers[$0], transformerLayers: depths[$0],
                  heads: heads[$0], crossAttentionDim: crossDims[$0], onlyCrossAttention: onlyCross[$0])
        }

        inChannels = raw.inChannels ?? 4
        outChannels = raw.outChannels ?? 4
        sampleSize = raw.sampleSize.map { try? $0.expanded(2, key: "sample_size") } ?? nil
        flipSinToCos = raw.flipSinToCos ?? true
        freqShift = raw.freqShift ?? 0
        downsamplePadding = raw.downsamplePadding ?? 1
        midBlockScaleFactor = raw.midBlockScaleFactor ?? 1
        normGroups = raw.normNumGroups ?? 32
        normEps = raw.normEps ?? 1e-5
        useLinearProjection = raw.useLinearProjection ?? false
        upcastAttention = raw.upcastAttention ?? false
        let shift = raw.resnetTimeScaleShift ?? "default"
        guard let timeNorm = ResnetBlock2D.TimeEmbeddingNorm(rawValue: shift) else {
            throw ModelConfigError("resnet_time_scale_shift '\(shift)' is not supported")
        }
        resnetTimeScaleShift = timeNorm
        timestepChannels = levels[0].channels
        timeEmbeddingDim = raw.timeEmbeddingDim ?? 4 * levels[0].channels
        timestepPostActivation = raw.timestepPostAct != nil
        timeConditionDim = raw.timeCondProjDim
        convInKernel = raw.convInKernel ?? 3
        convOutKernel = raw.convOutKernel ?? 3

        addedTimeConditioning = try Self.addedTimeConditioning(of: raw)
        try checkShapes()
    }

    /// SDXL's added time conditioning (`addition_embed_type` "text_time"), or none.
    private static func addedTimeConditioning(of raw: RawUNetConfig) throws -> AddedTimeConditioning? {
        switch raw.additionEmbedType {
        case nil: return nil
        case "text_time":
            guard let dim = raw.additionTimeEmbedDim else {
                throw ModelConfigError("addition_embed_type 'text_time' needs addition_time_embed_dim")
            }
            guard let input = raw.projectionClassEmbeddingsInputDim else {
                throw ModelConfigError("addition_embed_type 'text_time' needs projection_class_embeddings_input_dim")
            }
            try ConfigBounds.check("addition_time_embed_dim", dim, in: 1...4096)
            guard input > 6 * dim else {
                throw ModelConfigError("projection_class_embeddings_input_dim \(input) leaves no room for pooled text embeds beside 6 × addition_time_embed_dim \(dim)")
            }
            return AddedTimeConditioning(timeEmbedDim: dim, projectionInputDim: input)
        case let other?: throw ModelConfigError("addition_embed_type '\(other)' is not supported")
        }
    }

    /// Widths the layers need to be constructible.
    private func checkShapes() throws {
        try checkBounds()
        for (key, k) in [("conv_in_kernel", convInKernel), ("conv_out_kernel", convOutKernel)] where k < 1 || k % 2 == 0 {
            throw ModelConfigError("\(key) \(k) is not supported (odd sizes only)")
        }
        guard normGroups > 0 else { throw ModelConfigError("norm_num_groups must be positive") }
        let n = levels.count
        for (i, level) in levels.enumerated() {
            guard level.channels > 0, level.channels % normGroups == 0 else {
                throw ModelConfigError("norm_num_groups \(normGroups) does not divide block_out_channels entry \(level.channels)")
            }
            guard level.layers > 0, level.transformerLayers > 0 else {
                throw ModelConfigError("layers_per_block and transformer_layers_per_block entries must be positive")
            }
            let attends = downBlockTypes[i] == .crossAttention || upBlockTypes[n - 1 - i] == .crossAttention
                || (hasMidBlock && i == n - 1)
            if attends, level.heads < 1 || level.channels % level.heads != 0 {
                throw ModelConfigError("attention_head_dim entry \(level.heads) (the number of heads) does not divide block_out_channels entry \(level.channels)")
            }
        }
    }

    /// Every number within sane bounds (see `ConfigBounds`), before any layer is built.
    private func checkBounds() throws {
        try ConfigBounds.check("block_out_channels (count)", levels.count, in: 1...16)
        for level in levels {
            try ConfigBounds.check("block_out_channels", level.channels, in: ConfigBounds.width)
            try ConfigBounds.check("layers_per_block", level.layers, in: ConfigBounds.layers)
            try ConfigBounds.check("transformer_layers_per_block", level.transformerLayers, in: ConfigBounds.layers)
            try ConfigBounds.check("attention_head_dim", level.heads, in: ConfigBounds.heads)
            try ConfigBounds.check("cross_attention_dim", level.crossAttentionDim, in: ConfigBounds.width)
        }
        for (key, value) in [("in_channels", inChannels), ("out_channels", outChannels), ("norm_num_groups", normGroups),
                             ("time_embedding_dim", timeEmbeddingDim)] {
            try ConfigBounds.check(key, value, in: ConfigBounds.width)
        }
        if let timeConditionDim { try ConfigBounds.check("time_cond_proj_dim", timeConditionDim, in: ConfigBounds.width) }
        try ConfigBounds.check("conv_in_kernel", convInKernel, in: ConfigBounds.kernel)
        try ConfigBounds.check("conv_out_kernel", convOutKernel, in: ConfigBounds.kernel)
        try ConfigBounds.check("downsample_padding", downsamplePadding, in: 0...3)
        for size in sampleSize ?? [] { try ConfigBounds.check("sample_size", size, in: ConfigBounds.positions) }
        try ConfigBounds.check("norm_eps", Double(normEps), positive: true)
        try ConfigBounds.check("freq_shift", Double(freqShift))
        try ConfigBounds.check("mid_block_scale_factor", Double(midBlockScaleFactor))
        if let added = addedTimeConditioning {
            try ConfigBounds.check("addition_time_embed_dim", added.timeEmbedDim, in: 1...4096)
            try ConfigBounds.check("projection_class_embeddings_input_dim", added.projectionInputDim, in: ConfigBounds.width)
        }
    }
}
