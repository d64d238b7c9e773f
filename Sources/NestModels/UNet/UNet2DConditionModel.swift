import Foundation
import NestEngine

/// diffusers' UNet2DConditionModel for Stable Diffusion 1.x, 2.x and SDXL,
/// channels-last. Module and parameter names follow diffusers (a parameter's
/// path is its checkpoint tensor name) and children are registered in
/// diffusers' order — `down_blocks`, `up_blocks`, then `mid_block` — so
/// walks over the tree list layers in the order diffusers does.
public final class UNet2DConditionModel: Module {
    public let config: UNet2DConditionConfig
    public let conv_in: Conv2d
    public let time_embedding: TimestepEmbedding
    /// SDXL's projection of pooled text embeds and time ids ("text_time").
    public let add_embedding: TimestepEmbedding?
    public let down_blocks: ModuleList<UNetDownBlock2D>
    public let up_blocks: ModuleList<UNetUpBlock2D>
    public let mid_block: UNetMidBlock2DCrossAttn?
    public let conv_norm_out: GroupNorm
    public let conv_out: Conv2d

    /// Reads `config.json` and the weights of a diffusers `unet/` folder (strictly: every tensor must match).
    public static func load(folder: URL, variant: String? = nil) throws -> UNet2DConditionModel {
        let config = try UNet2DConditionConfig.load(from: folder.appendingPathComponent("config.json"))
        return try WeightFiles.build(from: folder, variant: variant) { UNet2DConditionModel(config: config) }
    }

    /// Builds the model from a config. Without `seed` the weights are the
    /// engine layers' defaults (deterministic; what `load` overwrites); with
    /// one, every weight matrix gets its own seeded uniform ±1/√fan_in values.
    public init(config: UNet2DConditionConfig, seed: UInt64? = nil) {
        self.config = config
        let levels = config.levels
        let n = levels.count
        conv_in = Conv2d(config.inChannels, levels[0].channels, kernelSize: config.convInKernel,
                         padding: (config.convInKernel - 1) / 2)
        time_embedding = TimestepEmbedding(inChannels: config.timestepChannels, embedDim: config.timeEmbeddingDim,
                                           postActivation: config.timestepPostActivation, conditionDim: config.timeConditionDim)
        add_embedding = config.addedTimeConditioning.map {
            TimestepEmbedding(inChannels: $0.projectionInputDim, embedDim: config.timeEmbeddingDim)
        }
        let resnet = ResnetSpec(tembChannels: config.timeEmbeddingDim, groups: config.normGroups, eps: config.normEps,
                                timeNorm: config.resnetTimeScaleShift)
        func transformer(_ level: UNet2DConditionConfig.Level) -> TransformerSpec {
            TransformerSpec(heads: level.heads, layers: level.transformerLayers, crossAttentionDim: level.crossAttentionDim,
                            normGroups: config.normGroups, useLinearProjection: config.useLinearProjection,
                            onlyCrossAttention: level.onlyCrossAttention)
        }

        down_blocks = ModuleList((0..<n).map { i in
            UNetDownBlock2D(inChannels: levels[max(i - 1, 0)].channels, outChannels: levels[i].channels,
                            layers: levels[i].layers, resnet: resnet,
                            transformer: config.downBlockTypes[i] == .crossAttention ? transformer(levels[i]) : nil,
                            addDownsample: i < n - 1, downsamplePadding: config.downsamplePadding)
        })
        let reversed = Array(levels.reversed())
        up_blocks = ModuleList((0..<n).map { i in
            UNetUpBlock2D(inChannels: reversed[min(i + 1, n - 1)].channels, outChannels: reversed[i].channels,
                          prevOutputChannels: reversed[max(i - 1, 0)].channels, layers: reversed[i].layers + 1,
                          resnet: resnet,
                          transformer: config.upBlockTypes[i] == .crossAttention ? transformer(reversed[i]) : nil,
                          addUpsample: i < n - 1)
        })
        mid_block = config.hasMidBlock
            ? UNetMidBlock2DCrossAttn(channels: levels[n - 1].channels, resnet: resnet, transformer: transformer(levels[n - 1]),
                                      outputScale: config.midBlockScaleFactor)
            : nil
        conv_norm_out = GroupNorm(groups: config.normGroups, channels: levels[0].channels, eps: config.normEps)
        conv_out = Conv2d(levels[0].channels, config.outChannels, kernelSize: config.convOutKernel,
                          padding: (config.convOutKernel - 1) / 2)
        super.init()
        child("conv_in", conv_in)
        child("time_embedding", time_embedding)
        if let add_embedding { child("add_embedding", add_embedding) }
        child("down_blocks", down_blocks)
        child("up_blocks", up_blocks)
        if let mid_block { child("mid_block", mid_block) }
        child("conv_norm_out", conv_norm_out)
        child("conv_out", conv_out)
        if let seed { randomizeWeights(seed: seed) }
    }

    /// Every attention layer keyed as diffusers' `attn_processors` does
    /// (module path + ".processor"), in the same order.
    public var attentionLayers: [(path: String, layer: Attention)] {
        var found: [(path: String, layer: Attention)] = []
        func walk(_ module: Module, _ prefix: String) {
            for (name, child) in module.children {
                let path = prefix.isEmpty ? name : "\(prefix).\(name)"
                if let attention = child as? Attention { found.append((path + ".processor", attention)) }
                walk(child, path)
            }
        }
        walk(self, "")
        return found
    }

    /// The layers that attend to the text (every attn2, and attn1 too under
    /// `only_cross_attention`): where personalization swaps `processor`.
    public var crossAttentionLayers: [(path: String, layer: Attention)] {
        attentionLayers.filter { $0.layer.isCrossAttention }
    }

    /// How many times the down path halves the latent: sizes must divide by it.
    public var downscaleFactor: Int { 1 << (config.levels.count - 1) }

    /// sample: [B, h, w, inChannels] latents; timestep: one per batch item or
    /// one for all; encoderHiddenStates: [B, T, crossAttentionDim]; added:
    /// SDXL's pooled text embeds [B, P] and time ids [B, 6], required exactly
    /// when the config has "text_time" conditioning; timestepCondition: the
    /// guidance-scale embedding [B, time_cond_proj_dim] of LCM-distilled UNets
    /// (`guidanceScaleEmbedding`). Returns [B, h, w, outChannels].
    public func callAsFunction(sample: Tensor, timestep: [Float], encoderHiddenStates: Tensor,
                               added: (textEmbeds: Tensor, timeIds: Tensor)? = nil,
                               timestepCondition: Tensor? = nil) -> Tensor {
        let b = sample.shape[0]
        precondition(sample.rank == 4 && sample.shape[3] == config.inChannels,
                     "UNet: sample must be [B, h, w, \(config.inChannels)], got \(sample.shape)")
        precondition(sample.shape[1] % downscaleFactor == 0 && sample.shape[2] % downscaleFactor == 0,
                     "UNet: latent size \(sample.shape[1])×\(sample.shape[2]) must be divisible by \(downscaleFactor)")
        precondition(timestep.count == 1 || timestep.count == b,
                     "UNet: \(timestep.count) timesteps for a batch of \(b) (give one, or one per item)")
        precondition(encoderHiddenStates.rank == 3 && encoderHiddenStates.shape[0] == b,
                     "UNet: encoderHiddenStates must be [\(b), T, D], got \(encoderHiddenStates.shape)")
        let context = encoderHiddenStates

        var emb = time_embedding(sinusoidalTimestepEmbedding(
            timestep.count == b ? timestep : Array(repeating: timestep[0], count: b),
            dim: config.timestepChannels, flipSinToCos: config.flipSinToCos, downscaleFreqShift: config.freqShift),
            condition: timestepCondition)
        if let add_embedding, let conditioning = config.addedTimeConditioning {
            emb = emb + add_embedding(addedConditioning(added, batch: b, conditioning))
        }

        var h = conv_in(sample)
        var skips = [h]
        for block in down_blocks.items {
            let (out, blockSkips) = block(h, temb: emb, context: context)
            h = out
            skips += blockSkips
        }
        if let mid_block { h = mid_block(h, temb: emb, context: context) }
        for block in up_blocks.items { h = block(h, skips: &skips, temb: emb, context: context) }
        return conv_out(conv_norm_out.silu(h))
    }

    /// [pooled text embeds, sinusoids of the six flattened time ids], as add_embedding's input.
    private func addedConditioning(_ added: (textEmbeds: Tensor, timeIds: Tensor)?, batch b: Int,
                                   _ conditioning: UNet2DConditionConfig.AddedTimeConditioning) -> Tensor {
        guard let added else {
            preconditionFailure("UNet: this config uses SDXL \"text_time\" conditioning: pass added (textEmbeds, timeIds)")
        }
        let text = added.textEmbeds, ids = added.timeIds
        precondition(ids.count == 6 * b, "UNet: timeIds must be [\(b), 6], got \(ids.shape)")
        precondition(text.rank == 2 && text.shape[0] == b
                     && text.shape[1] + 6 * conditioning.timeEmbedDim == conditioning.projectionInputDim,
                     "UNet: textEmbeds must be [\(b), \(conditioning.projectionInputDim - 6 * conditioning.timeEmbedDim)], got \(text.shape)")
        let timeEmbeds = sinusoidalTimestepEmbedding(ids.array, dim: conditioning.timeEmbedDim, flipSinToCos: config.flipSinToCos,
                                                     downscaleFreqShift: config.freqShift)
        return F.concat([text, timeEmbeds.reshaped([b, -1])], axis: 1)
    }

    private func randomizeWeights(seed: UInt64) {
        for (i, entry) in namedParameters().enumerated() where entry.parameter.tensor.rank >= 2 {
            let t = entry.parameter.tensor
            let bound = 1 / Float(t.count / t.shape[0]).squareRoot()
            t.assign(Tensor.uniform(t.shape, low: -bound, high: bound, seed: seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15))
        }
    }
}
