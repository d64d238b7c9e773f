import NestEngine

/// The VAE's resnets and attention use eps 1e-6 everywhere (diffusers hard-codes it).
let vaeEps: Float = 1e-6

/// diffusers' DownEncoderBlock2D: resnets without a time embedding, then
/// (except on the deepest level) a stride-2 convolution after padding the
/// bottom and right by one pixel.
public final class DownEncoderBlock2D: Module {
    public let resnets: ModuleList<ResnetBlock2D>
    public let downsamplers: ModuleList<Downsample2D>?

    public init(inChannels: Int, outChannels: Int, layers: Int, groups: Int, addDownsample: Bool) {
        resnets = ModuleList((0..<layers).map { i in
            ResnetBlock2D(inChannels: i == 0 ? inChannels : outChannels, outChannels: outChannels,
                          tembChannels: nil, groups: groups, eps: vaeEps)
        })
        downsamplers = addDownsample ? ModuleList([Downsample2D(channels: outChannels, padding: 0)]) : nil
        super.init()
        child("resnets", resnets)
        if let downsamplers { child("downsamplers", downsamplers) }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        var h = x
        for resnet in resnets.items { h = resnet(h) }
        if let downsamplers { h = downsamplers[0](h) }
        return h
    }
}

/// diffusers' UpDecoderBlock2D: resnets, then (except on the last level)
/// nearest-neighbour ×2 upsampling and a 3×3 convolution.
public final class UpDecoderBlock2D: Module {
    public let resnets: ModuleList<ResnetBlock2D>
    public let upsamplers: ModuleList<Upsample2D>?

    public init(inChannels: Int, outChannels: Int, layers: Int, groups: Int, addUpsample: Bool) {
        resnets = ModuleList((0..<layers).map { i in
            ResnetBlock2D(inChannels: i == 0 ? inChannels : outChannels, outChannels: outChannels,
                          tembChannels: nil, groups: groups, eps: vaeEps)
        })
        upsamplers = addUpsample ? ModuleList([Upsample2D(channels: outChannels)]) : nil
        super.init()
        child("resnets", resnets)
        if let upsamplers { child("upsamplers", upsamplers) }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        var h = x
        for resnet in resnets.items { h = resnet(h) }
        if let upsamplers { h = upsamplers[0](h) }
        return h
    }
}

/// The VAE's mid block (diffusers' UNetMidBlock2D without a time embedding):
/// resnet, single-head spatial self-attention with its own GroupNorm and a
/// residual connection, resnet. diffusers passes attention_head_dim equal to
/// the channel count, so the attention has exactly one head over all channels.
/// Without attention (`mid_block_add_attention: false`) both resnets remain.
public final class VAEMidBlock: Module {
    public let resnets: ModuleList<ResnetBlock2D>
    public let attentions: ModuleList<Attention>

    public init(channels: Int, groups: Int, addAttention: Bool) {
        resnets = ModuleList((0..<2).map { _ in
            ResnetBlock2D(inChannels: channels, outChannels: channels, tembChannels: nil, groups: groups, eps: vaeEps)
        })
        attentions = ModuleList(addAttention ? [
            Attention(queryDim: channels, heads: 1, dimHead: channels, bias: true, outBias: true,
                      normGroups: groups, eps: vaeEps, residualConnection: true),
        ] : [])
        super.init()
        // An empty list holds no parameters, matching diffusers' [None].
        child("attentions", attentions)
        child("resnets", resnets)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        var h = resnets[0](x)
        if attentions.count > 0 { h = attentions[0](h) }
        return resnets[1](h)
    }
}
