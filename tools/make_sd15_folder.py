#!/usr/bin/env python3
"""A full-size SD 1.5-shaped diffusers folder with random weights, for measuring loading.

    HF_HUB_OFFLINE=1 python3 tools/make_sd15_folder.py OUT [--float16]

Assembles StableDiffusionPipeline from the real SD 1.5 configs in tools/bench_configs/
(UNet, VAE, CLIP ViT-L text encoder, Euler scheduler) and the small tokenizer fixture
there (loading cost does not depend on the vocabulary), initialized as diffusers and
transformers initialize new models, and writes it with `save_pretrained`: 4.3 GB of
float32 files, or 2.1 GB with --float16. The folder is a measurement input, not a
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
    parser.add_argument("--float16", action="store_true", help="save float16 weights")
    args = parser.parse_args()
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    torch.manual_seed(0)
    pipeline_configs = os.path.join(CONFIGS, "sd15_pipeline")
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_config(config("sd_vae.json")),
        unet=UNet2DConditionModel.from_config(config("sd15_unet.json")),
        text_encoder=CLIPTextModel(CLIPTextConfig(**config("sd15_text.json"))),
        tokenizer=CLIPTokenizer.from_pretrained(os.path.join(pipeline_configs, "tokenizer")),
        scheduler=EulerDiscreteScheduler.from_pretrained(os.path.join(pipeline_configs, "scheduler")),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if args.float16:
        pipe = pipe.to(dtype=torch.float16)
    pipe.save_pretrained(args.out, safe_serialization=True)
    print(f"wrote {args.out} ({'float16' if args.float16 else 'float32'})")


if __name__ == "__main__":
    main()
