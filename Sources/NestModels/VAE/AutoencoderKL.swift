import Foundation
import NestEngine

/// diffusers' AutoencoderKL (the Stable Diffusion VAE), channels-last.
///
/// Images are [N, H, W, in_channels] in [-1, 1]; latents are
/// [N, H/f, W/f, latent_channels] with f = `downsamplingFactor`. `encode`
/// and `decode` work on raw latents, as diffusers' methods do; the diffusion
/// model sees `scaleLatents(z)`, and its output goes back through
/// `unscaleLatents` before `decode`.
///
/// diffusers' tiling and slicing are not reproduced: both are memory-saving
/// approximations (tiling blends overlapping tiles) of this computation.
public final class AutoencoderKL: Module {
    public let config: AutoencoderKLConfig
    public let encoder: VAEEncoder
    public let decoder: VAEDecoder
    public let quant_conv: Conv2d?
    public let post_quant_conv: Conv2d?

    /// A VAE with freshly initialised weights; throws on an unsupported configuration.
    public init(config: AutoencoderKLConfig) throws {
        try config.validate()
        self.config = config
        encoder = VAEEncoder(config: config)
        decoder = VAEDecoder(config: config)
        let latent = config.latentChannels
        quant_conv = config.useQuantConv ? Conv2d(2 * latent, 2 * latent, kernelSize: 1) : nil
        post_quant_conv = config.usePostQuantConv ? Conv2d(latent, latent, kernelSize: 1) : nil
        super.init()
        child("encoder", encoder)
        child("decoder", decoder)
        if let quant_conv { child("quant_conv", quant_conv) }
        if let post_quant_conv { child("post_quant_conv", post_quant_conv) }
    }

    /// Adds `shift` to the log-variance the encoder predicts for every latent
    /// (the bias of the layer that produces it). Used when continuing a VAE
    /// whose KL term was too strong: its posterior became nearly as wide as
    /// the latents themselves, so a sample carried little more than a blurred
    /// image; the reconstruction loss alone narrows it only very slowly.
    public func shiftPosteriorLogVariance(by shift: Float) {
        let layer = quant_conv ?? encoder.conv_out
        guard let bias = layer.bias else { return }
        let latent = config.latentChannels
        for c in latent..<(2 * latent) { bias[flat: c] += shift }
    }

    /// Builds the VAE from a diffusers folder (`vae/`): `config.json` plus its
    /// safetensors weights, loaded strictly (errors name the file and tensor).
    public static func load(folder: URL, variant: String? = nil,
                            options: WeightLoadOptions = WeightLoadOptions()) throws -> AutoencoderKL {
        let config = try decodeConfig(AutoencoderKLConfig.self, from: folder.appendingPathComponent("config.json"))
        return try WeightFiles.build(from: folder, variant: variant, options: options) { try AutoencoderKL(config: config) }
    }

    /// Spatial size ratio between images and latents (8 for Stable Diffusion).
    public var downsamplingFactor: Int { 1 << (config.blockOutChannels.count - 1) }

    /// The posterior over latents for `images` [N, H, W, in_channels].
    public func encode(_ images: Tensor) -> DiagonalGaussian {
        precondition(images.rank == 4 && images.shape[3] == config.inChannels,
                     "VAE encode expects [N, H, W, \(config.inChannels)] images, got \(images.shape)")
        var h = encoder(images)
        if let quant_conv { h = quant_conv(h) }
        return DiagonalGaussian(parameters: h)
    }

    /// Images [N, h·f, w·f, out_channels] for raw (unscaled) latents [N, h, w, latent_channels].
    public func decode(_ latents: Tensor) -> Tensor {
        precondition(latents.rank == 4 && latents.shape[3] == config.latentChannels,
                     "VAE decode expects [N, h, w, \(config.latentChannels)] latents, got \(latents.shape)")
        var z = latents
        if let post_quant_conv { z = post_quant_conv(z) }
        return decoder(z)
    }

    /// Raw latents → the diffusion model's latents, as the pipelines do it:
    /// `z · scaling_factor`, or `(z − shift_factor) · scaling_factor` when a shift is set.
    public func scaleLatents(_ z: Tensor) -> Tensor {
        let shifted = config.shiftFactor.map { z.addingScalar(-Float($0)) } ?? z
        return shifted.scaled(Float(config.scalingFactor))
    }

    /// The diffusion model's latents → raw latents for `decode`:
    /// `latents / scaling_factor (+ shift_factor)`. A true division, as in the
    /// pipelines, rather than a multiplication by the reciprocal.
    public func unscaleLatents(_ latents: Tensor) -> Tensor {
        let divided = latents / Tensor([Float(config.scalingFactor)], shape: [1])
        return config.shiftFactor.map { divided.addingScalar(Float($0)) } ?? divided
    }
}
