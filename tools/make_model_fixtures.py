#!/usr/bin/env python3
"""Tiny Stable Diffusion–family models and reference outputs for the Swift model tests.

Run from the repository root (CPU-only PyTorch is enough; nothing is downloaded):
    pip install torch==2.13.0+cpu diffusers transformers safetensors
    HF_HUB_OFFLINE=1 python3 tools/make_model_fixtures.py [--only unet,vae,clip]

For each flavour — sd1 (conv proj_in, quick_gelu), sd2 (linear projection, upcast
attention, per-block head counts), sdxl (text_time conditioning, several transformer
layers per block, two text encoders with projection) — every component module in
tools/model_fixtures/ builds tiny random-weight models from configs. This script then
perturbs every parameter (so no norm sits at one and no bias at zero, which would hide
bugs), saves each model with `save_pretrained` into
Tests/NestModelsTests/Fixtures/<flavour>/<folder>/ (a diffusers folder), and saves the
module's reference inputs and outputs to <flavour>/reference_<module>.safetensors.

A component module defines:
    FOLDERS: list of folder names it may produce (e.g. ["text_encoder", "text_encoder_2"])
    build(flavour) -> {folder: model}          # models from configs, random weights
    references(flavour, models) -> {name: tensor}
"""
import argparse
import importlib
import json
import os
import sys
import zlib

import torch
from safetensors.torch import save_file

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(ROOT, "Tests", "NestModelsTests", "Fixtures")
FLAVOURS = ["sd1", "sd2", "sdxl"]
MODULES = ["unet", "vae", "clip"]
sys.path.insert(0, os.path.dirname(__file__))


def seed_for(*parts):
    return zlib.crc32("/".join(parts).encode()) & 0x7FFFFFFF


@torch.no_grad()
def perturb(model, seed):
    """Moves every parameter away from its initial value, deterministically."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
        noise = torch.randn(p.shape, generator=g)
        # Vectors (norm scales, biases, embeddings' rows) get a visible shift; matrices a mild one.
        p.add_(noise * (0.1 if p.ndim <= 1 else 0.02))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=",".join(MODULES), help="comma-separated component modules")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for flavour in FLAVOURS:
        folder = os.path.join(OUT, flavour)
        os.makedirs(folder, exist_ok=True)
        for module_name in args.only.split(","):
            module = importlib.import_module(f"model_fixtures.{module_name}")
            torch.manual_seed(seed_for(flavour, module_name))
            models = module.build(flavour)
            for sub, model in models.items():
                perturb(model, seed_for(flavour, module_name, sub))
                model.eval()
                model.save_pretrained(os.path.join(folder, sub), safe_serialization=True)
            torch.manual_seed(seed_for(flavour, module_name, "inputs"))
            refs = module.references(flavour, models)
            save_file({k: v.detach().float().contiguous() for k, v in refs.items()},
                      os.path.join(folder, f"reference_{module_name}.safetensors"),
                      metadata={"torch": torch.__version__})
            print(f"{flavour}: {module_name}: {sorted(models)} and {len(refs)} reference tensors")
        write_model_index(flavour, folder)


def write_model_index(flavour, folder):
    """A model_index.json naming the components present, as diffusers writes it."""
    classes = {
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
    }
    pipeline = "StableDiffusionXLPipeline" if flavour == "sdxl" else "StableDiffusionPipeline"
    index = {"_class_name": pipeline, "_diffusers_version": "0.42.1"}
    for name, cls in classes.items():
        if os.path.isdir(os.path.join(folder, name)):
            index[name] = cls
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
