#!/usr/bin/env python3
"""How the world's autoencoder decodes latents that are slightly off.

A generation's mottle can come from the UNet (predictions off or blurred) or
from a decoder that turns small latent errors into visible texture. This
encodes scenes (posterior mean), adds Gaussian noise of a few sizes relative
to the scaled latents' standard deviation, or blurs the latents (3x3 box),
decodes, and prints the pixel error against the truth and the sharpness
(mean absolute Laplacian, of 255) of each.

    HF_HUB_OFFLINE=1 python3 tools/vae_robustness.py --model runs/w3/model \\
        --data runs/w3/held/manifest.jsonl

Development tool (diffusers on CPU), a few seconds for 64 scenes.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sample_diversity  # noqa: E402  (the same sharpness measure as the samples')


def sharpness(images):
    """`sample_diversity.sharpness` averaged over images in [-1, 1] (NCHW), on the 0–255 scale."""
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy()
    return float(np.mean([sample_diversity.sharpness(image) for image in pixels]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a model folder with vae/")
    parser.add_argument("--data", required=True, help="a dataset's manifest.jsonl")
    parser.add_argument("--scenes", type=int, default=64)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0, 0.05, 0.1, 0.2, 0.3, 0.5])
    args = parser.parse_args()

    root = os.path.dirname(os.path.abspath(args.data))
    with open(args.data) as f:
        records = [json.loads(line) for line in f][: args.scenes]
    vae = AutoencoderKL.from_pretrained(os.path.join(args.model, "vae")).float().eval()
    pixels = np.stack([np.asarray(Image.open(os.path.join(root, r["image"])).convert("RGB"), dtype=np.float32)
                       for r in records]) / 127.5 - 1
    truth = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    scale = vae.config.scaling_factor

    def decode(latents):
        images = vae.decode(latents / scale).sample
        return ((images.clamp(-1, 1) - truth).abs().mean() * 127.5).item(), sharpness(images)

    with torch.no_grad():
        latents = vae.encode(truth).latent_dist.mean * scale
        std = latents.std().item()
        print(f"{len(records)} scenes; scaled latent std {std:.3f}; truth sharpness {sharpness(truth):.1f}")
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
        for sigma in args.sigmas:
            error, sharp = decode(latents + sigma * std * noise)
            print(f"noise {sigma:.2f} x std: pixel error {error:.1f} of 255, sharpness {sharp:.1f}")
        blurred = F.avg_pool2d(F.pad(latents, (1, 1, 1, 1), mode="replicate"), 3, 1)
        error, sharp = decode(blurred)
        print(f"latents blurred (3x3 box): pixel error {error:.1f} of 255, sharpness {sharp:.1f}")


if __name__ == "__main__":
    main()
