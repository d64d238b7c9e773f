import NestEngine

/// What every transformer in one UNet level shares.
struct TransformerSpec {
    var heads: Int
    var layers: Int
    var crossAttentionDim: Int
    var normGroups: Int
    var useLinearProjection: Bool
    var onlyCrossAttention: Bool

    func make(channels: Int) -> Transformer2DModel {
        Transformer2DModel(heads: heads, headDim: channels / heads, inChannels: channels, layers: layers,
                           crossAttentionDim: crossAttentionDim, normGroups: normGroups,
                           useLinearProjection: useLinearProjection, onlyCrossAttention: onlyCrossAttention)
    }
}

/// What every ResNet in the UNet shares.
struct ResnetSpec {
    var tembChannels: Int
    var groups: Int
    var eps: Float
    var timeNorm: ResnetBlock2D.TimeEmbeddingNorm

    func make(_ inChannels: Int, _ outChannels: Int, outputScale: Float = 1) -> ResnetBlock2D {
        ResnetBlock2D(inChannels: inChannels, outChannels: outChannels, tembChannels: tembChannels, groups: groups,
                      eps: eps, outputScaleFactor: outputScale, timeEmbeddingNorm: timeNorm)
    }
}

/// diffusers' DownBlock2D (`transformer == nil`) and CrossAttnDownBlock2D:
/// ResNets, each followed by a transformer in the cross-attention variant,
/// then an optional stride-2 conv. Children are registered in diffusers'
/// order (attentions, resnets, downsamplers) so walks list them as it does.
public final class UNetDownBlock2D: Module {
    public let attentions: ModuleList<Transformer2DModel>?
    public let resnets: ModuleList<ResnetBlock2D>
    public let downsamplers: ModuleList<Downsample2D>?

    init(inChannels: Int, outChannels: Int, layers: Int, resnet: ResnetSpec, transformer: TransformerSpec?,
         addDownsample: Bool, downsamplePadding: Int) {
        resnets = ModuleList((0..<layers).map { resnet.make($0 == 0 ? inChannels : outChannels, outChannels) })
        attentions = transformer.map { spec in ModuleList((0..<layers).map { _ in spec.make(channels: outChannels) }) }
        downsamplers = addDownsample
            ? ModuleList([Downsample2D(channels: outChannels, outChannels: outChannels, padding: downsamplePadding)]) : nil
        super.init()
        if let attentions { child("attentions", attentions) }
        child("resnets", resnets)
        if let downsamplers { child("downsamplers", downsamplers) }
    }

    /// Returns the block's output and the skip tensors it leaves for the up path.
    func callAsFunction(_ x: Tensor, temb: Tensor, context: Tensor) -> (Tensor, [Tensor]) {
        var h = x
        var skips: [Tensor] = []
        for i in 0..<resnets.count {
            h = resnets[i](h, temb: temb)
            if let attentions { h = attentions[i](h, context: context) }
            skips.append(h)
        }
        if let downsamplers {
            h = downsamplers[0](h)
            skips.append(h)
        }
        return (h, skips)
    }
}

/// diffusers' UNetMidBlock2DCrossAttn: ResNet, then (transformer, ResNet) pairs.
public final class UNetMidBlock2DCrossAttn: Module {
    public let attentions: ModuleList<Transformer2DModel>
    public let resnets: ModuleList<ResnetBlock2D>

    init(channels: Int, resnet: ResnetSpec, transformer: TransformerSpec, outputScale: Float, layers: Int = 1) {
        attentions = ModuleList((0..<layers).map { _ in transformer.make(channels: channels) })
        resnets = ModuleList((0...layers).map { _ in resnet.make(channels, channels, outputScale: outputScale) })
        super.init()
        child("attentions", attentions)
        child("resnets", resnets)
    }

    func callAsFunction(_ x: Tensor, temb: Tensor, context: Tensor) -> Tensor {
        var h = resnets[0](x, temb: temb)
        for i in 0..<attentions.count {
            h = resnets[i + 1](attentions[i](h, context: context), temb: temb)
        }
        return h
    }
}

/// diffusers' UpBlock2D (`transformer == nil`) and CrossAttnUpBlock2D: each
/// ResNet takes the running tensor concatenated with one skip tensor
/// ([hidden, skip] along channels), optionally followed by a transformer;
/// then nearest ×2 and a conv.
public final class UNetUpBlock2D: Module {
    public let attentions: ModuleList<Transformer2DModel>?
    public let resnets: ModuleList<ResnetBlock2D>
    public let upsamplers: ModuleList<Upsample2D>?

    /// Channel bookkeeping as in diffusers: the last ResNet's skip comes from
    /// the level below (`inChannels`), the first ResNet's input from the
    /// previous up block (`prevOutputChannels`).
    init(inChannels: Int, outChannels: Int, prevOutputChannels: Int, layers: Int, resnet: ResnetSpec,
         transformer: TransformerSpec?, addUpsample: Bool) {
        resnets = ModuleList((0..<layers).map { j in
            let skip = j == layers - 1 ? inChannels : outChannels
            let input = j == 0 ? prevOutputChannels : outChannels
            return resnet.make(input + skip, outChannels)
        })
        attentions = transformer.map { spec in ModuleList((0..<layers).map { _ in spec.make(channels: outChannels) }) }
        upsamplers = addUpsample ? ModuleList([Upsample2D(channels: outChannels, outChannels: outChannels)]) : nil
        super.init()
        if let attentions { child("attentions", attentions) }
        child("resnets", resnets)
        if let upsamplers { child("upsamplers", upsamplers) }
    }

    /// Consumes `resnets.count` tensors from the end of `skips`, newest first.
    func callAsFunction(_ x: Tensor, skips: inout [Tensor], temb: Tensor, context: Tensor) -> Tensor {
        var h = x
        for i in 0..<resnets.count {
            let skip = skips.removeLast()
            h = resnets[i](F.concat([h, skip], axis: 3), temb: temb)
            if let attentions { h = attentions[i](h, context: context) }
        }
        if let upsamplers { h = upsamplers[0](h) }
        return h
    }
}
