import Foundation

/// diffusers' `AutoencoderKL` configuration (`vae/config.json`), with
/// diffusers' defaults for absent keys.
///
/// Only the Stable Diffusion layout is supported: every down block a
/// `DownEncoderBlock2D`, every up block an `UpDecoderBlock2D`, SiLU
/// activations. Anything else, and any key this port does not know, is
/// refused by name rather than ignored, because ignoring it would build a
/// different network from the one the weights were trained in.
public struct AutoencoderKLConfig: Codable, Equatable, Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var downBlockTypes: [String]
    public var upBlockTypes: [String]
    public var blockOutChannels: [Int]
    public var layersPerBlock: Int
    public var actFn: String
    public var latentChannels: Int
    public var normNumGroups: Int
    public var sampleSize: OneOrMany<Int>
    /// Latents given to the diffusion model are `(z - shift) · scaling_factor`.
    public var scalingFactor: Double
    public var shiftFactor: Double?
    /// Ignored: the engine always computes in float32.
    public var forceUpcast: Bool
    public var useQuantConv: Bool
    public var usePostQuantConv: Bool
    public var midBlockAddAttention: Bool

    public init(inChannels: Int = 3, outChannels: Int = 3, blockOutChannels: [Int] = [64], layersPerBlock: Int = 1,
                latentChannels: Int = 4, normNumGroups: Int = 32, sampleSize: Int = 32,
                scalingFactor: Double = 0.18215, shiftFactor: Double? = nil, useQuantConv: Bool = true,
                usePostQuantConv: Bool = true, midBlockAddAttention: Bool = true) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        downBlockTypes = Array(repeating: "DownEncoderBlock2D", count: blockOutChannels.count)
        upBlockTypes = Array(repeating: "UpDecoderBlock2D", count: blockOutChannels.count)
        self.blockOutChannels = blockOutChannels
        self.layersPerBlock = layersPerBlock
        actFn = "silu"
        self.latentChannels = latentChannels
        self.normNumGroups = normNumGroups
        self.sampleSize = .one(sampleSize)
        self.scalingFactor = scalingFactor
        self.shiftFactor = shiftFactor
        forceUpcast = true
        self.useQuantConv = useQuantConv
        self.usePostQuantConv = usePostQuantConv
        self.midBlockAddAttention = midBlockAddAttention
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case inChannels = "in_channels", outChannels = "out_channels"
        case downBlockTypes = "down_block_types", upBlockTypes = "up_block_types"
        case blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block", actFn = "act_fn"
        case latentChannels = "latent_channels", normNumGroups = "norm_num_groups", sampleSize = "sample_size"
        case scalingFactor = "scaling_factor", shiftFactor = "shift_factor"
        case latentsMean = "latents_mean", latentsStd = "latents_std"
        case forceUpcast = "force_upcast", useQuantConv = "use_quant_conv", usePostQuantConv = "use_post_quant_conv"
        case midBlockAddAttention = "mid_block_add_attention"
    }

    /// Any key name; used to find keys this port does not know.
    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: Decoder) throws {
        let all = try decoder.container(keyedBy: AnyKey.self)
        if let name = try all.decodeIfPresent(String.self, forKey: AnyKey(stringValue: "_class_name")),
           name != "AutoencoderKL" {
            throw ModelConfigError("_class_name '\(name)' is not AutoencoderKL")
        }
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        // Keys starting with "_" are bookkeeping (_class_name, _diffusers_version, _name_or_path).
        if let unknown = all.allKeys.map(\.stringValue).filter({ !$0.hasPrefix("_") && !known.contains($0) }).sorted().first {
            throw ModelConfigError("unsupported key '\(unknown)'")
        }

        let c = try decoder.container(keyedBy: CodingKeys.self)
        inChannels = try c.decodeIfPresent(Int.self, forKey: .inChannels) ?? 3
        outChannels = try c.decodeIfPresent(Int.self, forKey: .outChannels) ?? 3
        downBlockTypes = try c.decodeIfPresent([String].self, forKey: .downBlockTypes) ?? ["DownEncoderBlock2D"]
        upBlockTypes = try c.decodeIfPresent([String].self, forKey: .upBlockTypes) ?? ["UpDecoderBlock2D"]
        blockOutChannels = try c.decodeIfPresent([Int].self, forKey: .blockOutChannels) ?? [64]
        layersPerBlock = try c.decodeIfPresent(Int.self, forKey: .layersPerBlock) ?? 1
        actFn = try c.decodeIfPresent(String.self, forKey: .actFn) ?? "silu"
        latentChannels = try c.decodeIfPresent(Int.self, forKey: .latentChannels) ?? 4
        normNumGroups = try c.decodeIfPresent(Int.self, forKey: .normNumGroups) ?? 32
        sampleSize = try c.decodeIfPresent(OneOrMany<Int>.self, forKey: .sampleSize) ?? .one(32)
        scalingFactor = try c.decodeIfPresent(Double.self, forKey: .scalingFactor) ?? 0.18215
        shiftFactor = try c.decodeIfPresent(Double.self, forKey: .shiftFactor)
        forceUpcast = try c.decodeIfPresent(Bool.self, forKey: .forceUpcast) ?? true
        useQuantConv = try c.decodeIfPresent(Bool.self, forKey: .useQuantConv) ?? true
        usePostQuantConv = try c.decodeIfPresent(Bool.self, forKey: .usePostQuantConv) ?? true
        midBlockAddAttention = try c.decodeIfPresent(Bool.self, forKey: .midBlockAddAttention) ?? true
        // Per-channel latent statistics change how pipelines scale latents; not supported.
        for key in [CodingKeys.latentsMean, .latentsStd] where c.contains(key) {
            if try !c.decodeNil(forKey: key) { throw ModelConfigError("\(key.rawValue) is not supported (only null)") }
        }
        try validate()
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(inChannels, forKey: .inChannels)
        try c.encode(outChannels, forKey: .outChannels)
        try c.encode(downBlockTypes, forKey: .downBlockTypes)
        try c.encode(upBlockTypes, forKey: .upBlockTypes)
        try c.encode(blockOutChannels, forKey: .blockOutChannels)
        try c.encode(layersPerBlock, forKey: .layersPerBlock)
        try c.encode(actFn, forKey: .actFn)
        try c.encode(latentChannels, forKey: .latentChannels)
        try c.encode(normNumGroups, forKey: .normNumGroups)
        try c.encode(sampleSize, forKey: .sampleSize)
        try c.encode(scalingFactor, forKey: .scalingFactor)
        try c.encode(shiftFactor, forKey: .shiftFactor)
        try c.encode(forceUpcast, forKey: .forceUpcast)
        try c.encode(useQuantConv, forKey: .useQuantConv)
        try c.encode(usePostQuantConv, forKey: .usePostQuantConv)
        try c.encode(midBlockAddAttention, forKey: .midBlockAddAttention)
    }

    /// Throws a one-line error naming the first unsupported or inconsistent value.
    public func validate() throws {
        if let bad = downBlockTypes.first(where: { $0 != "DownEncoderBlock2D" }) {
            throw ModelConfigError("unsupported down_block_types entry '\(bad)' (only DownEncoderBlock2D)")
        }
        if let bad = upBlockTypes.first(where: { $0 != "UpDecoderBlock2D" }) {
            throw ModelConfigError("unsupported up_block_types entry '\(bad)' (only UpDecoderBlock2D)")
        }
        // diffusers' "swish" is the same nn.SiLU.
        guard actFn == "silu" || actFn == "swish" else {
            throw ModelConfigError("unsupported act_fn '\(actFn)' (only silu)")
        }
        guard !blockOutChannels.isEmpty else { throw ModelConfigError("block_out_channels is empty") }
        // diffusers indexes block_out_channels by block position, so the lists must agree.
        guard downBlockTypes.count == blockOutChannels.count, upBlockTypes.count == blockOutChannels.count else {
            throw ModelConfigError("down_block_types (\(downBlockTypes.count)), up_block_types (\(upBlockTypes.count)) "
                                   + "and block_out_channels (\(blockOutChannels.count)) must have the same length")
        }
        for (key, value) in [("in_channels", inChannels), ("out_channels", outChannels),
                             ("latent_channels", latentChannels), ("norm_num_groups", normNumGroups)]
            + blockOutChannels.map({ ("block_out_channels", $0) }) {
            try ConfigBounds.check(key, value, in: ConfigBounds.width)
        }
        try ConfigBounds.check("layers_per_block", layersPerBlock, in: ConfigBounds.layers)
        try ConfigBounds.check("block_out_channels (count)", blockOutChannels.count, in: 1...16)
        switch sampleSize {
        case .one(let size): try ConfigBounds.check("sample_size", size, in: ConfigBounds.positions)
        case .many(let sizes): for size in sizes { try ConfigBounds.check("sample_size", size, in: ConfigBounds.positions) }
        }
        if let shiftFactor { try ConfigBounds.check("shift_factor", shiftFactor) }
        if let bad = blockOutChannels.first(where: { $0 % normNumGroups != 0 }) {
            throw ModelConfigError("norm_num_groups \(normNumGroups) does not divide block_out_channels entry \(bad)")
        }
        guard scalingFactor != 0, scalingFactor.isFinite else {
            throw ModelConfigError("scaling_factor must be a nonzero number (got \(scalingFactor))")
        }
    }
}
