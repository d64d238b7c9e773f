#!/usr/bin/env python3
"""A full-size float16 SDXL-shaped diffusers folder with random weights, for measuring loading.

    HF_HUB_OFFLINE=1 python3 tools/make_sdxl_folder.py OUT

Assembles StableDiffusionXLPipeline from the real SDXL configs in tools/bench_configs/
(UNet, VAE, CLIP ViT-L and OpenCLIP ViT-bigG text encoders, Euler scheduler) and the
small tokenizer fixture there, initialized as diffusers and transformers initialize new
models (built in float16, so the 2.6 B-parameter UNet never exists as float32), and
writes it with `save_pretrained`: 6.9 GB of float16 files. A measurement input, not a
fixture: write it under an ignored path such as /tmp.
"""
import argparse
import json
import os

import torch

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_configs")


def config(name):
    with open(os.path.join(CONFIGS, name)) as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    args = parser.parse_args()
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float16)
    pipeline_configs = os.path.join(CONFIGS, "sd15_pipeline")
    tokenizer = os.path.join(pipeline_configs, "tokenizer")
    vae = dict(config("sd_vae.json"), scaling_factor=0.13025, force_upcast=True)
    pipe = StableDiffusionXLPipeline(
        vae=AutoencoderKL.from_config(vae),
        unet=UNet2DConditionModel.from_config(config("sdxl_unet.json")),
        text_encoder=CLIPTextModel(CLIPTextConfig(**config("sd15_text.json"))),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**config("sdxl_text2.json"))),
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer),
        tokenizer_2=CLIPTokenizer.from_pretrained(tokenizer, pad_token="!"),
        scheduler=EulerDiscreteScheduler.from_pretrained(os.path.join(pipeline_configs, "scheduler")))
    pipe = pipe.to(dtype=torch.float16)
    pipe.save_pretrained(args.out, safe_serialization=True)
    print(f"wrote {args.out} (float16)")


if __name__ == "__main__":
    main()
