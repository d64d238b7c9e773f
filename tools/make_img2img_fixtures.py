#!/usr/bin/env python3
"""Few-step sampling and image-to-image references from diffusers 0.42.1.

    pip install torch==2.13.0+cpu diffusers transformers safetensors pillow
    HF_HUB_OFFLINE=1 python3 tools/make_img2img_fixtures.py

Uses the tiny SD1 and SDXL pipelines of tools/make_pipeline_fixtures.py
(Tests/NestDiffusionTests/Fixtures/pipelines/, loaded from disk) and writes
Tests/NestDiffusionTests/Fixtures/img2img/:

- lcm_unet/: the SD1 UNet with an LCM guidance-scale embedding (`time_cond_proj_dim`
  8, a perturbed `time_embedding.cond_proj`), stored as float16; lcm_scheduler/: an
  LCMScheduler config. The Swift tests assemble the "lcm" model folder from sd1 with
  these two swapped in, as the script does.
- init_*.png: the init images (smooth colour fields with noise; one 33×49 so that
  diffusers' image processor rounds it down to 32×48 with a Lanczos resize).
- cases.json + images.safetensors: per case, the 8-bit image of `output_type="np"`:
  LCM (plain UNet with guidance 1 and 2, the guidance-embedding UNet), trailing
  Euler / Euler ancestral with guidance 0 (SDXL-Turbo/Lightning settings), and
  image-to-image with StableDiffusionImg2ImgPipeline / StableDiffusionXLImg2ImgPipeline
  at several strengths and schedulers. A case with width/height resizes the init
  image through the pipeline's own `image_processor.preprocess(image, height, width)`.
- lcm_timesteps.json: LCMScheduler timesteps for several (steps, original steps).
- images.safetensors also holds lanczos_WxH: init_33x49.png resized by Pillow's Lanczos.
"""
import json
import os
import shutil

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, LCMScheduler, StableDiffusionImg2ImgPipeline,
                       StableDiffusionPipeline, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline,
                       UNet2DConditionModel)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "Tests", "NestDiffusionTests", "Fixtures")
PIPELINES = os.path.join(FIXTURES, "pipelines")
OUT = os.path.join(FIXTURES, "img2img")
SCHEDULERS = {"euler": EulerDiscreteScheduler, "euler-a": EulerAncestralDiscreteScheduler,
              "ddim": DDIMScheduler, "dpm++2m": DPMSolverMultistepScheduler, "lcm": LCMScheduler}

CASES = [
    # name, flavour, scheduler (None: the folder's), spacing, steps, guidance, seed, count, prompt, negative,
    # init image, strength, width, height
    ("lcm_g1", "sd1", "lcm", None, 4, 1.0, 41, 1, "a photo of a cat", None, None, None, None, None),
    ("lcm_g2_batch", "sd1", "lcm", None, 3, 2.0, 42, 2, "a critter wearing a red hat", "lowres", None, None, None, None),
    ("lcm_embedding", "lcm", None, None, 4, 8.0, 43, 1, "a robot on the beach", None, None, None, None, None),
    ("turbo_euler_trailing", "sdxl", "euler", "trailing", 2, 0.0, 44, 1, "a photo of a dog", None, None, None, None, None),
    ("turbo_euler_a_1step", "sdxl", "euler-a", "trailing", 1, 0.0, 45, 1, "a cat in the snow", None, None, None, None, None),
    ("euler_a_trailing_g0", "sd1", "euler-a", "trailing", 3, 0.0, 46, 2, "a small dog", None, None, None, None, None),
    ("i2i_euler_030", "sd1", "euler", None, 10, 7.5, 51, 1, "a photo of a cat", None, "init_32x32.png", 0.3, None, None),
    ("i2i_euler_a_075_batch", "sd1", "euler-a", None, 4, 7.5, 52, 2, "a critter on the beach", "lowres",
     "init_32x32.png", 0.75, None, None),
    ("i2i_ddim_075_rounded", "sd1", "ddim", None, 4, 5.0, 53, 1, "a robot at night", None, "init_33x49.png", 0.75, None, None),
    ("i2i_lcm_050", "sd1", "lcm", None, 4, 1.0, 54, 1, "a photo of a cat", None, "init_32x32.png", 0.5, None, None),
    ("i2i_dpm_060_resized", "sd1", "dpm++2m", None, 5, 7.5, 55, 1, "a dog in the forest", None, "init_33x49.png", 0.6, 40, 24),
    ("i2i_lcm_embedding_075", "lcm", None, None, 4, 6.0, 56, 1, "a critter wearing a hat", None, "init_32x32.png", 0.75, None, None),
    ("i2i_sdxl_euler_060", "sdxl", "euler", None, 5, 5.0, 57, 1, "a photo of a cat", None, "init_32x32.png", 0.6, None, None),
]

RESIZES = [(32, 48), (40, 24), (70, 90), (17, 60)]
LCM_SCHEDULES = [(1, 50), (2, 50), (4, 50), (6, 50), (7, 50), (8, 50), (3, 25), (50, 50), (5, 37), (4, 1000)]


def init_image(width, height, seed):
    """A smooth colour field with pixel noise: structure for the VAE, deterministic bytes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([128 + 100 * np.sin(x / 5.0), 128 + 100 * np.cos(y / 7.0), 128 + 60 * np.sin((x + y) / 9.0)], -1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def lcm_unet(sd1_unet):
    torch.manual_seed(7)
    unet = UNet2DConditionModel.from_config(dict(sd1_unet.config, time_cond_proj_dim=8))
    missing, unexpected = unet.load_state_dict(sd1_unet.state_dict(), strict=False)
    assert missing == ["time_embedding.cond_proj.weight"] and not unexpected, (missing, unexpected)
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        unet.time_embedding.cond_proj.weight.copy_(torch.randn(unet.time_embedding.cond_proj.weight.shape, generator=g) * 0.5)
    folder = os.path.join(OUT, "lcm_unet")
    unet.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    return UNet2DConditionModel.from_pretrained(folder, torch_dtype=torch.float32)


def load_pipelines():
    sd1 = StableDiffusionPipeline.from_pretrained(os.path.join(PIPELINES, "sd1"), safety_checker=None,
                                                  requires_safety_checker=False)
    sdxl = StableDiffusionXLPipeline.from_pretrained(os.path.join(PIPELINES, "sdxl"))
    lcm_scheduler = LCMScheduler.from_config(sd1.scheduler.config, original_inference_steps=50, timestep_scaling=10.0)
    lcm_scheduler.save_config(os.path.join(OUT, "lcm_scheduler"))
    lcm_scheduler = LCMScheduler.from_pretrained(os.path.join(OUT, "lcm_scheduler"))
    lcm = StableDiffusionPipeline(**dict(sd1.components, unet=lcm_unet(sd1.unet), scheduler=lcm_scheduler))
    return {"sd1": sd1, "sdxl": sdxl, "lcm": lcm}


def run(pipes, case):
    name, flavour, kind, spacing, steps, guidance, seed, count, prompt, negative, init, strength, width, height = case
    text = pipes[flavour]
    scheduler = text.scheduler
    if kind is not None:
        extra = {"timestep_spacing": spacing} if spacing else {}
        scheduler = SCHEDULERS[kind].from_config(text.scheduler.config, **extra)
    kwargs = dict(prompt=prompt, negative_prompt=negative, num_inference_steps=steps, guidance_scale=guidance,
                  num_images_per_prompt=count, output_type="np", generator=torch.Generator("cpu").manual_seed(seed))
    if init is None:
        pipe = type(text)(**dict(text.components, scheduler=scheduler))
    else:
        cls = StableDiffusionXLImg2ImgPipeline if flavour == "sdxl" else StableDiffusionImg2ImgPipeline
        pipe = cls(**dict(text.components, scheduler=scheduler))
        image = Image.open(os.path.join(OUT, init)).convert("RGB")
        if width is not None:
            image = pipe.image_processor.preprocess(image, height=height, width=width)
        kwargs.update(image=image, strength=strength)
    pipe.set_progress_bar_config(disable=True)
    return pipe(**kwargs).images


def main():
    torch.set_grad_enabled(False)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    init_image(32, 32, 1).save(os.path.join(OUT, "init_32x32.png"))
    init_image(33, 49, 2).save(os.path.join(OUT, "init_33x49.png"))
    pipes = load_pipelines()
    images, cases = {}, []
    for case in CASES:
        image = run(pipes, case)
        name = case[0]
        # The 8-bit image users get (diffusers' numpy_to_pil: round(x·255)).
        images[name] = torch.from_numpy((image * 255).round().astype(np.uint8)).contiguous()
        keys = ["name", "flavour", "scheduler", "spacing", "steps", "guidance", "seed", "count", "prompt",
                "negative_prompt", "init_image", "strength", "width", "height"]
        cases.append(dict(zip(keys, case), shape=list(image.shape)))
        print(name, image.shape)
    # Pillow's Lanczos, which diffusers' VaeImageProcessor resizes with (down, up, mixed).
    source = Image.open(os.path.join(OUT, "init_33x49.png")).convert("RGB")
    for width, height in RESIZES:
        resized = np.asarray(source.resize((width, height), resample=Image.Resampling.LANCZOS))
        images[f"lanczos_{width}x{height}"] = torch.from_numpy(resized.copy()).contiguous()
    save_file(images, os.path.join(OUT, "images.safetensors"), metadata={"torch": torch.__version__})
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
    schedules = []
    for steps, original in LCM_SCHEDULES:
        s = LCMScheduler.from_config(pipes["sd1"].scheduler.config, original_inference_steps=original)
        s.set_timesteps(steps)
        schedules.append(dict(steps=steps, original_inference_steps=original, timesteps=s.timesteps.tolist()))
    with open(os.path.join(OUT, "lcm_timesteps.json"), "w") as f:
        json.dump(schedules, f, indent=1)


if __name__ == "__main__":
    main()
