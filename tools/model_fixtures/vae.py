"""Tiny AutoencoderKL (the Stable Diffusion VAE) per flavour, and its reference outputs.

Each flavour varies what the Swift port must get right: the number of levels
(and so of downsamplers), groups per norm, resnets per block, the scaling
factor, and (sd2 only, to exercise the code path) a shift factor.
"""
import torch
from diffusers import AutoencoderKL

FOLDERS = ["vae"]

CONFIGS = {
    # Two levels, 4 groups: SD 1.x's layout in miniature.
    "sd1": dict(block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=4,
                scaling_factor=0.18215),
    # Three levels (two downsamplers), 2 groups, and a shift factor as SD3/Flux VAEs have.
    "sd2": dict(block_out_channels=[8, 16, 16], layers_per_block=1, norm_num_groups=2,
                scaling_factor=0.18215, shift_factor=0.1),
    # Two resnets per encoder block (three per decoder block) and SDXL's scaling factor.
    "sdxl": dict(block_out_channels=[8, 16], layers_per_block=2, norm_num_groups=4,
                 scaling_factor=0.13025),
}


def build(flavour):
    cfg = CONFIGS[flavour]
    levels = len(cfg["block_out_channels"])
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=32,
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        act_fn="silu", **cfg)
    return {"vae": vae}


def encode(vae, images):
    dist = vae.encode(images).latent_dist
    return dist.mean, dist.logvar, dist.std, dist.kl()


def references(flavour, models):
    vae = models["vae"]
    cfg = vae.config
    down = 2 ** (len(cfg.block_out_channels) - 1)
    refs = {}

    images = torch.rand(2, 3, 32, 32) * 2 - 1
    mean, logvar, std, kl = encode(vae, images)
    noise = torch.randn(mean.shape)
    sample = mean + std * noise
    refs.update(images=images, mean=mean, logvar=logvar, noise=noise, sample=sample, kl=kl)

    # Odd sizes: the encoder's bottom/right-only padding decides which pixels each
    # downsampled position sees, and odd inputs shrink by floor.
    odd = torch.rand(1, 3, 25, 39) * 2 - 1
    odd_mean, odd_logvar, _, _ = encode(vae, odd)
    refs.update(odd_images=odd, odd_mean=odd_mean, odd_logvar=odd_logvar)

    latents = torch.randn(2, 4, 32 // down, 32 // down)
    refs.update(latents=latents, decoded=vae.decode(latents).sample)
    odd_latents = torch.randn(1, 4, 5, 7)
    refs.update(odd_latents=odd_latents, odd_decoded=vae.decode(odd_latents).sample)

    # Latent scaling as the pipelines do it: SD/SDXL multiply by scaling_factor and
    # divide before decoding; SD3-style VAEs with a shift subtract it first.
    scale, shift = cfg.scaling_factor, cfg.shift_factor
    if shift is None:
        refs["scaled_sample"] = sample * scale
        refs["unscaled_latents"] = latents / scale
    else:
        refs["scaled_sample"] = (sample - shift) * scale
        refs["unscaled_latents"] = latents / scale + shift
    return refs
