#!/usr/bin/env python3
"""Where a world UNet's cross-attention reads the subject's noun.

Nested Attention changes a generation by a_s * (v* - v): it can only act where
the model attends the subject token. This diagnostic measures that attention
on real training scenes: each scene (from a dataset written with --masks) is
encoded, noised at a fixed timestep and denoised once with its caption (the
placeholder replaced by the class word); every cross-attention layer's
attention to the noun is averaged over heads and split by the renderer's
subject mask. A model that localizes the noun attends it more inside the
subject than outside (ratio well above 1).

Development tool (diffusers on CPU); the weights can be a finished model
folder or a training checkpoint (engine layout, converted here):

  HF_HUB_OFFLINE=1 python3 tools/probe_attention.py --model runs/w4/model \
      --data runs/w4/data-critter-pm/manifest.jsonl [--unet-checkpoint runs/w4/unet/checkpoint.safetensors]
"""
import argparse
import json
import os

import numpy as np
import torch
from PIL import Image
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file
from transformers import CLIPTextModel, CLIPTokenizer


class Recorder:
    """Cross-attention processor that keeps the heads' mean attention to one token."""

    def __init__(self, name, token):
        self.name, self.token, self.maps = name, token, []

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, None)
        if encoder_hidden_states is not None:
            b = hidden_states.shape[0]
            self.maps.append(probs.reshape(b, attn.heads, probs.shape[1], probs.shape[2])[:, :, :, self.token].mean(1))
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](out))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="manifest.jsonl of a dataset written with --masks")
    p.add_argument("--unet-checkpoint", help="a `nest train unet` checkpoint to use instead of the model's UNet")
    p.add_argument("--count", type=int, default=32)
    p.add_argument("--timestep", type=int, default=500)
    args = p.parse_args()
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(os.path.join(args.model, "unet")))
    if args.unet_checkpoint:
        state = {k: (v.permute(0, 3, 1, 2) if v.dim() == 4 else v)
                 for k, v in load_file(args.unet_checkpoint).items() if not k.startswith("optimizer.")}
        unet.load_state_dict(state)
    else:
        unet = UNet2DConditionModel.from_pretrained(os.path.join(args.model, "unet"))
    unet.eval()
    vae = AutoencoderKL.from_pretrained(os.path.join(args.model, "vae")).eval()
    text = CLIPTextModel.from_pretrained(os.path.join(args.model, "text_encoder")).eval()
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(args.model, "tokenizer"))
    alphas = torch.cumprod(1 - torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2, 0)
    root = os.path.dirname(args.data)
    records = [json.loads(line) for line in open(args.data)][: args.count]
    inside, outside = {}, {}
    for r in records:
        word = r["domain"]
        caption = r["caption"].replace("<%s>" % word, word)
        ids = tokenizer(caption, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
        token = ids[0].tolist().index(tokenizer.convert_tokens_to_ids(word + "</w>"))
        recorders = {}
        processors = {}
        for name in unet.attn_processors:
            recorders[name] = Recorder(name, token)
            processors[name] = recorders[name]
        unet.set_attn_processor(processors)
        image = torch.tensor(np.asarray(Image.open(os.path.join(root, r["image"])).convert("RGB")), dtype=torch.float32)
        mask = torch.tensor(np.asarray(Image.open(os.path.join(root, r["mask"])).convert("L")), dtype=torch.float32) / 255
        with torch.no_grad():
            latents = vae.encode(image.permute(2, 0, 1)[None] / 127.5 - 1).latent_dist.mean * vae.config.scaling_factor
            t = args.timestep
            noisy = alphas[t].sqrt() * latents + (1 - alphas[t]).sqrt() * torch.randn_like(latents)
            unet(noisy, t, encoder_hidden_states=text(ids).last_hidden_state)
        for name, rec in recorders.items():
            for a in rec.maps:
                side = int(round(a.shape[-1] ** 0.5))
                m = torch.nn.functional.adaptive_avg_pool2d(mask[None, None], side).flatten() > 0.5
                a = a[0]
                if m.any() and (~m).any():
                    inside.setdefault(name, []).append(a[m].mean().item())
                    outside.setdefault(name, []).append(a[~m].mean().item())
    print("| layer | a_s inside the subject | outside | ratio |")
    print("|---|---:|---:|---:|")
    for name in inside:
        i, o = np.mean(inside[name]), np.mean(outside[name])
        print("| %s | %.4f | %.4f | %.2f |" % (name.replace(".processor", ""), i, o, i / o))


if __name__ == "__main__":
    main()
