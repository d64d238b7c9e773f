#!/usr/bin/env python3
"""How much a world UNet's prediction listens to its prompt, timestep by timestep.

A personalization adapter acts through the UNet's cross-attention, so it can only
steer what the text can steer. This diagnostic takes real training scenes (a
dataset written by `nest world dataset`), noises each at a range of timesteps and
asks the UNet for its noise prediction under pairs of captions that differ in one
aspect only — the subject's trait words, its position, the background — and under
the empty prompt. It prints, per timestep, how far apart the two predictions put
the clean latent, relative to the clean latent's own size:

    |x0(caption A) - x0(caption B)| / |x0|,  x0(c) = (x_t - sqrt(1 - a_t) eps(x_t, c)) / sqrt(a_t)

and the same for the text as a whole (caption against the empty prompt, the
direction classifier-free guidance amplifies). A UNet whose layout and colours
follow the text shows sizeable differences at the noisy end (t near 1000), where
they are decided; one that draws them from the noise seed shows them only late.

It also prints how far apart the text encoder puts the two captions (largest
per-token difference of its last hidden state, relative to the tokens' size): a
difference the text encoder does not make, the UNet cannot use.

Development tool (diffusers on CPU), a few seconds for a small world model:

  HF_HUB_OFFLINE=1 python3 tools/probe_conditioning.py --model runs/w2/model \
      --data runs/w2/data/manifest.jsonl [--scenes 16]
"""
import argparse
import json
import os

import numpy as np
import torch
from PIL import Image
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

# Each probe swaps one aspect's words in a caption for another value's.
SWAPS = {
    "traits": [("dark ", "pale "), ("crimson ", "olive "), ("golden ", "crimson "), ("olive ", "golden "),
               ("teal ", "indigo "), ("azure ", "cobalt "), ("cobalt ", "teal "), ("indigo ", "azure "),
               ("spotted ", "striped "), ("striped ", "patched "), ("patched ", "spotted ")],
    "position": [("on the left", "on the right"), ("to the left", "to the right"),
                 ("on the right", "on the left"), ("to the right", "to the left"),
                 ("in the center", "on the left"), ("in the middle", "on the right")],
    "background": [("on the beach", "in the snow"), ("at the beach", "in the city"), ("on a sunny beach", "in the desert"),
                   ("in the forest", "on the beach"), ("in a pine forest", "in the snow"), ("in the city", "in the desert"),
                   ("on a city street", "in the forest"), ("in the snow", "on the beach"), ("on a snowy field", "in the city"),
                   ("in the desert", "in the forest"), ("on desert dunes", "in the snow"),
                   ("under the night sky", "on the beach"), ("under a starry night sky", "in the city")],
}


def swapped(caption, aspect):
    """The caption with the first of the aspect's phrases it contains replaced, or None."""
    for a, b in SWAPS[aspect]:
        if a in caption:
            return caption.replace(a, b, 1)
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="a manifest.jsonl written by nest world dataset")
    parser.add_argument("--scenes", type=int, default=16, help="scenes per aspect")
    parser.add_argument("--timesteps", default="999,800,600,400,200,50")
    args = parser.parse_args()
    torch.manual_seed(0)
    tok = CLIPTokenizer.from_pretrained(os.path.join(args.model, "tokenizer"))
    # float32 throughout: a folder may hold float16 weights (the shipped world does).
    f32 = dict(torch_dtype=torch.float32)
    text = CLIPTextModel.from_pretrained(os.path.join(args.model, "text_encoder"), **f32).eval()
    vae = AutoencoderKL.from_pretrained(os.path.join(args.model, "vae"), **f32).eval()
    unet = UNet2DConditionModel.from_pretrained(os.path.join(args.model, "unet"), **f32).eval()
    scheduler = DDPMScheduler.from_pretrained(os.path.join(args.model, "scheduler"))
    timesteps = [int(t) for t in args.timesteps.split(",")]
    velocity = scheduler.config.prediction_type == "v_prediction"

    def encode_text(caption):
        ids = tok(caption, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids
        return text(ids).last_hidden_state

    records = [json.loads(line) for line in open(args.data)]
    root = os.path.dirname(args.data)
    print(f"{'aspect':<11} {'text enc.':>9}  " + "  ".join(f"t={t:<4}" for t in timesteps))
    with torch.no_grad():
        empty = encode_text("")
        for aspect in ["text", "traits", "position", "background"]:
            picked = []
            for r in records:
                other = "" if aspect == "text" else swapped(r["caption"], aspect)
                if other is not None:
                    picked.append((r, other))
                if len(picked) == args.scenes:
                    break
            if not picked:
                print(f"{aspect:<11} no caption names it")
                continue
            ratios = np.zeros((len(picked), len(timesteps)))
            encoder_gaps = []
            for i, (r, other) in enumerate(picked):
                image = np.asarray(Image.open(os.path.join(root, r["image"])).convert("RGB"), dtype=np.float32)
                pixels = torch.from_numpy(image / 127.5 - 1).permute(2, 0, 1)[None]
                latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
                a = encode_text(r["caption"])
                b = empty if aspect == "text" else encode_text(other)
                gap = (a - b)[0].norm(dim=-1).max() / a[0].norm(dim=-1).mean()
                encoder_gaps.append(float(gap))
                noise = torch.randn_like(latents)
                for j, t in enumerate(timesteps):
                    step = torch.tensor([t])
                    noisy = scheduler.add_noise(latents, noise, step)
                    ea = unet(noisy, step, encoder_hidden_states=a).sample
                    eb = unet(noisy, step, encoder_hidden_states=b).sample
                    alpha = scheduler.alphas_cumprod[t]
                    # x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) for epsilon, sqrt(a) x_t - sqrt(1 - a) v for v
                    scale = (1 - alpha).sqrt() if velocity else ((1 - alpha) / alpha).sqrt()
                    ratios[i, j] = float(scale * (ea - eb).norm() / latents.norm())
            mean = ratios.mean(axis=0)
            print(f"{aspect:<11} {np.mean(encoder_gaps):>9.3f}  " + "  ".join(f"{m:<6.3f}" for m in mean)
                  + f"   ({len(picked)} scenes)")


if __name__ == "__main__":
    main()
