#!/usr/bin/env python3
"""End-to-end text-to-image references: tiny SD1-like, SD2-like and SDXL-like
pipelines, and the images diffusers generates with each scheduler.

    pip install torch==2.13.0+cpu diffusers transformers safetensors
    HF_HUB_OFFLINE=1 python3 tools/make_pipeline_fixtures.py

Each pipeline is assembled from the tiny UNet and VAE of tools/model_fixtures/, tiny CLIP
text encoders sized to the tokenizer fixtures (tools/make_tokenizer_fixtures.py), and a
scheduler config; every parameter is perturbed, then `save_pretrained` writes
Tests/NestDiffusionTests/Fixtures/pipelines/<flavour>/. SD1 keeps the classic tokenizer
layout (vocab.json + merges.txt), the others the tokenizer.json layout; SDXL's second
tokenizer pads with "!". For every case (scheduler, seed, size, prompts, guidance) the
image from `output_type="np"` is stored in pipelines/images.safetensors and the case list
in pipelines/cases.json.
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from make_model_fixtures import perturb, seed_for  # noqa: E402
from model_fixtures import unet as unet_fixtures, vae as vae_fixtures  # noqa: E402
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,  # noqa: E402
                       EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "Tests", "NestDiffusionTests", "Fixtures")
OUT = os.path.join(ROOT, "pipelines")
VOCAB = 720  # the tokenizer fixtures hold 697 tokens (+ placeholders)
EOS = 696

SCHEDULERS = {"euler": EulerDiscreteScheduler, "euler-a": EulerAncestralDiscreteScheduler,
              "ddim": DDIMScheduler, "dpm++2m": DPMSolverMultistepScheduler}
SD15_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      steps_offset=1, clip_sample=False, set_alpha_to_one=False, prediction_type="epsilon")


def text_encoder(hidden, eos, act, projection=None, layers=2):
    cfg = CLIPTextConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden + 3,
                         num_hidden_layers=layers, num_attention_heads=2, max_position_embeddings=77,
                         hidden_act=act, projection_dim=projection or hidden, eos_token_id=eos,
                         bos_token_id=695 if eos != 2 else 0, pad_token_id=1)
    return CLIPTextModelWithProjection(cfg) if projection else CLIPTextModel(cfg)


def build(flavour):
    torch.manual_seed(seed_for("pipeline", flavour))
    unet = unet_fixtures.build(flavour)["unet"]
    vae = vae_fixtures.build(flavour)["vae"]
    tok = CLIPTokenizer.from_pretrained(os.path.join(ROOT, "tokenizer_classic"))
    if flavour == "sd1":
        te = text_encoder(16, 2, "quick_gelu")
        sched = DDIMScheduler(**SD15_SCHEDULER)
        parts = [unet, vae, te]
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    elif flavour == "sd2":
        te = text_encoder(16, 2, "gelu")
        sched = DDIMScheduler(**dict(SD15_SCHEDULER, prediction_type="v_prediction"))
        parts = [unet, vae, te]
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    else:
        te1 = text_encoder(8, 2, "quick_gelu")
        te2 = text_encoder(16, EOS, "gelu", projection=16)
        tok2 = CLIPTokenizer.from_pretrained(os.path.join(ROOT, "tokenizer_2"))
        xl = {k: v for k, v in SD15_SCHEDULER.items() if k not in ("clip_sample", "set_alpha_to_one")}
        sched = EulerDiscreteScheduler(**dict(xl, timestep_spacing="leading", interpolation_type="linear"))
        parts = [unet, vae, te1, te2]
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok2,
                                         unet=unet, scheduler=sched, force_zeros_for_empty_prompt=True)
    for i, model in enumerate(parts):
        perturb(model, seed_for("pipeline", flavour, str(i)))
    return pipe


CASES = [
    # flavour, scheduler, karras, seed, width, height, steps, prompt, negative, guidance, rescale, count
    ("sd1", "euler", False, 7, None, None, 4, "a photo of a cat", None, 7.5, 0.0, 1),
    ("sd1", "euler-a", False, 8, None, None, 4, "a critter wearing a red hat", "lowres", 7.5, 0.0, 1),
    ("sd1", "ddim", False, 9, None, None, 4, "a photo of a dog on the beach", None, 5.0, 0.0, 1),
    ("sd1", "dpm++2m", False, 10, None, None, 5, "a robot at night, sketch", None, 7.5, 0.0, 1),
    ("sd1", "dpm++2m", True, 11, 48, 32, 5, "a cat in the forest", "bad anatomy", 7.5, 0.7, 1),
    ("sd1", "euler", True, 12, 32, 64, 4, "a small dog", None, 1.0, 0.0, 2),
    ("sd2", "ddim", False, 21, None, None, 4, "a photo of a cat", None, 7.5, 0.0, 1),
    ("sd2", "euler", False, 22, 64, 48, 4, "a critter on the beach", "monochrome", 7.5, 0.0, 1),
    ("sd2", "euler-a", False, 23, None, None, 4, "a robot in the city", None, 6.0, 0.0, 1),
    ("sd2", "dpm++2m", True, 24, 48, 64, 5, "a dog wearing a blue scarf", None, 7.5, 0.0, 1),
    ("sdxl", "euler", False, 31, None, None, 4, "a photo of a cat", None, 5.0, 0.0, 1),
    ("sdxl", "euler-a", False, 32, 48, 32, 4, "a critter wearing a hat", "lowres, bad anatomy", 5.0, 0.0, 1),
    ("sdxl", "ddim", False, 33, None, None, 4, "a robot at sunset", "", 5.0, 0.0, 2),
    ("sdxl", "dpm++2m", True, 34, 32, 48, 5, "a dog in the snow", None, 7.0, 0.5, 1),
]


def main():
    torch.set_grad_enabled(False)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    pipes = {}
    for flavour in ("sd1", "sd2", "sdxl"):
        pipe = build(flavour)
        folder = os.path.join(OUT, flavour)
        pipe.save_pretrained(folder, safe_serialization=True)
        if flavour == "sd1":
            # Keep SD1's tokenizer in the classic layout real hub folders have.
            shutil.rmtree(os.path.join(folder, "tokenizer"))
            shutil.copytree(os.path.join(ROOT, "tokenizer_classic"), os.path.join(folder, "tokenizer"))
        # Reload from disk: an in-memory scheduler config remembers which keys took
        # defaults (`_use_default_values`) and `from_config` then drops them, so a
        # DDIM config's "leading" spacing would not carry over to Euler. Users load
        # folders from disk, which is the behaviour to match.
        cls = StableDiffusionXLPipeline if flavour == "sdxl" else StableDiffusionPipeline
        extra = {} if flavour == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
        pipes[flavour] = cls.from_pretrained(folder, **extra)
        pipes[flavour].set_progress_bar_config(disable=True)
    base_configs = {flavour: pipe.scheduler.config for flavour, pipe in pipes.items()}
    images, cases = {}, []
    for i, (flavour, kind, karras, seed, width, height, steps, prompt, negative, guidance, rescale, count) in enumerate(CASES):
        pipe = pipes[flavour]
        config = base_configs[flavour]
        extra = {"use_karras_sigmas": True} if karras else {}
        pipe.scheduler = SCHEDULERS[kind].from_config(config, **extra)
        kwargs = dict(prompt=prompt, negative_prompt=negative, num_inference_steps=steps, guidance_scale=guidance,
                      guidance_rescale=rescale, num_images_per_prompt=count, output_type="np",
                      generator=torch.Generator("cpu").manual_seed(seed), width=width, height=height)
        image = pipe(**kwargs).images
        name = f"case{i}"
        images[name] = torch.from_numpy(image).float().contiguous()
        cases.append(dict(name=name, flavour=flavour, scheduler=kind, karras=karras, seed=seed, width=width,
                          height=height, steps=steps, prompt=prompt, negative_prompt=negative, guidance=guidance,
                          guidance_rescale=rescale, count=count, shape=list(image.shape)))
        print(name, flavour, kind, image.shape)
    save_file(images, os.path.join(OUT, "images.safetensors"), metadata={"torch": torch.__version__})
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)


if __name__ == "__main__":
    main()
