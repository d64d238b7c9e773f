#!/usr/bin/env python3
"""Several UNets' denoising error on the same held-out scenes, timestep by timestep.

`nest train unet` logs one held-out number per checkpoint, averaged over one
random timestep per scene; this compares finished UNets (trained with
different recipes, same VAE and text encoder) on identical draws: every scene
at each of a fixed set of timesteps, with noise from one seed. It prints, per
UNet and timestep, the error in ε-units (what `validation_loss` reports), in
v-units (what a v-prediction UNet trains on) and of the clean latent it
implies, and each one's mean over the timesteps.

    HF_HUB_OFFLINE=1 python3 tools/heldout_by_timestep.py --model runs/w3/model \\
        --data runs/w3/held/manifest.jsonl --unet runs/w3/model/unet runs/w3/model-more/unet

`--model` gives the VAE, tokenizer, text encoder and scheduler config (a
v-prediction or ε-prediction folder). Development tool (diffusers on CPU),
about 20 seconds per world UNet for 128 scenes.
"""
import argparse
import json
import os

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer

TIMESTEPS = [50, 150, 250, 350, 450, 550, 650, 750, 850, 950, 999]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="a dataset's manifest.jsonl (the held-out scenes)")
    parser.add_argument("--unet", nargs="+", required=True, help="UNet folders (config.json + weights)")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    root = os.path.dirname(os.path.abspath(args.data))
    with open(args.data) as f:
        records = [json.loads(line) for line in f]
    vae = AutoencoderKL.from_pretrained(os.path.join(args.model, "vae")).float().eval()
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(args.model, "tokenizer"))
    text = CLIPTextModel.from_pretrained(os.path.join(args.model, "text_encoder")).float().eval()
    scheduler = DDPMScheduler.from_pretrained(os.path.join(args.model, "scheduler"))
    velocity = scheduler.config.prediction_type == "v_prediction"
    pixels = np.stack([np.asarray(Image.open(os.path.join(root, r["image"])).convert("RGB"), dtype=np.float32)
                       for r in records]) / 127.5 - 1
    with torch.no_grad():
        latents = vae.encode(torch.from_numpy(pixels).permute(0, 3, 1, 2)).latent_dist.mean * vae.config.scaling_factor
        ids = tokenizer([r["caption"] for r in records], padding="max_length", truncation=True,
                        max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
        context = text(ids)[0]
    generator = torch.Generator().manual_seed(0)
    noises = [torch.randn(latents.shape, generator=generator) for _ in TIMESTEPS]

    print(f"{len(records)} scenes, timesteps {TIMESTEPS}, {'v' if velocity else 'ε'}-prediction")
    for folder in args.unet:
        unet = UNet2DConditionModel.from_pretrained(folder).float().eval()
        errors = {"eps": [], "v": [], "x0": []}
        with torch.no_grad():
            for t, noise in zip(TIMESTEPS, noises):
                a = scheduler.alphas_cumprod[t].sqrt()
                s = (1 - scheduler.alphas_cumprod[t]).sqrt()
                noisy = a * latents + s * noise
                steps = torch.full((len(records),), t)
                out = torch.cat([unet(noisy[i:i + args.batch], steps[i:i + args.batch],
                                      encoder_hidden_states=context[i:i + args.batch]).sample
                                 for i in range(0, len(records), args.batch)])
                if velocity:
                    eps, x0 = a * out + s * noisy, a * noisy - s * out
                else:
                    eps, x0 = out, (noisy - s * out) / a
                v_true = a * noise - s * latents
                v = (eps * a - x0 * s) if not velocity else out
                errors["eps"].append(((eps - noise) ** 2).mean().item())
                errors["v"].append(((v - v_true) ** 2).mean().item())
                errors["x0"].append(((x0 - latents) ** 2).mean().item())
        for kind, values in errors.items():
            cells = " ".join(f"{v:.3f}" for v in values)
            print(f"{folder}  {kind:>3s}: {cells}  mean {np.mean(values):.4f}")


if __name__ == "__main__":
    main()
