import NestEngine

/// diffusers' VAE `Encoder`: images [N, H, W, in] → Gaussian parameters
/// [N, H/f, W/f, 2·latent] (means, then log-variances), f = 2^(levels−1).
public final class VAEEncoder: Module {
    public let conv_in: Conv2d
    public let down_blocks: ModuleList<DownEncoderBlock2D>
    public let mid_block: VAEMidBlock
    public let conv_norm_out: GroupNorm
    public let conv_out: Conv2d

    public init(config c: AutoencoderKLConfig) {
        let widths = c.blockOutChannels
        conv_in = Conv2d(c.inChannels, widths[0], kernelSize: 3, padding: 1)
        down_blocks = ModuleList(widths.indices.map { i in
            // Each level reads the previous level's width (the first reads conv_in's).
            DownEncoderBlock2D(inChannels: widths[max(i - 1, 0)], outChannels: widths[i], layers: c.layersPerBlock,
                               groups: c.normNumGroups, addDownsample: i != widths.count - 1)
        })
        mid_block = VAEMidBlock(channels: widths[widths.count - 1], groups: c.normNumGroups,
                                addAttention: c.midBlockAddAttention)
        conv_norm_out = GroupNorm(groups: c.normNumGroups, channels: widths[widths.count - 1], eps: vaeEps)
        conv_out = Conv2d(widths[widths.count - 1], 2 * c.latentChannels, kernelSize: 3, padding: 1)
        super.init()
        child("conv_in", conv_in)
        child("down_blocks", down_blocks)
        child("mid_block", mid_block)
        child("conv_norm_out", conv_norm_out)
        child("conv_out", conv_out)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        var h = conv_in(x)
        for block in down_blocks.items { h = block(h) }
        h = mid_block(h)
        return conv_out(conv_norm_out.silu(h))
    }
}

/// diffusers' VAE `Decoder`: latents [N, h, w, latent] → images
/// [N, h·f, w·f, out]. The levels run in reverse width order, each with one
/// more resnet than the encoder's.
public final class VAEDecoder: Module {
    public let conv_in: Conv2d
    public let mid_block: VAEMidBlock
    public let up_blocks: ModuleList<UpDecoderBlock2D>
    public let conv_norm_out: GroupNorm
    public let conv_out: Conv2d

    public init(config c: AutoencoderKLConfig) {
        let widths = Array(c.blockOutChannels.reversed())
        conv_in = Conv2d(c.latentChannels, widths[0], kernelSize: 3, padding: 1)
        mid_block = VAEMidBlock(channels: widths[0], groups: c.normNumGroups, addAttention: c.midBlockAddAttention)
        up_blocks = ModuleList(widths.indices.map { i in
            UpDecoderBlock2D(inChannels: widths[max(i - 1, 0)], outChannels: widths[i], layers: c.layersPerBlock + 1,
                             groups: c.normNumGroups, addUpsample: i != widths.count - 1)
        })
        conv_norm_out = GroupNorm(groups: c.normNumGroups, channels: widths[widths.count - 1], eps: vaeEps)
        conv_out = Conv2d(widths[widths.count - 1], c.outChannels, kernelSize: 3, padding: 1)
        super.init()
        child("conv_in", conv_in)
        child("mid_block", mid_block)
        child("up_blocks", up_blocks)
        child("conv_norm_out", conv_norm_out)
        child("conv_out", conv_out)
    }

    public func callAsFunction(_ z: Tensor) -> Tensor {
        var h = mid_block(conv_in(z))
        for block in up_blocks.items { h = block(h) }
        return conv_out(conv_norm_out.silu(h))
    }
}
