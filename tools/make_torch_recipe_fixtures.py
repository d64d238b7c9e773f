#!/usr/bin/env python3
"""Swift-vs-PyTorch parity of the adapter trainer: the training recipe
(training/nest_torch) trains a tiny adapter for 3 AdamW steps on fixed batches;
Tests/NestTrainingTests/TorchRecipeParityTests.swift runs AdapterTrainer on exactly
the same inputs and compares the loss of every step and the weights at the end.

    pip install -r training/requirements.txt   # torch: the CPU wheel
    HF_HUB_OFFLINE=1 python3 tools/make_torch_recipe_fixtures.py

Model: the tiny sd1 / sdxl pipeline fixtures (Tests/NestDiffusionTests/Fixtures/pipelines)
plus the tiny CLIP image encoder (Tests/NestModelsTests/Fixtures/sd1/image_encoder), put
together as AdapterTrainerTests.swift does. Per step the batch holds captions (after
guidance dropout: one item with the text dropped, one with the image dropped, one with
both), CLIP input pixels, noisy latents, timesteps and the regression target; the
conditioning (text context, image features) each side computes itself from those.

Writes Tests/NestTrainingTests/Fixtures/torch_recipe/<flavour>-<kind>/:
  initial.{json,safetensors}   the adapter before training (our adapter format)
  trained.{json,safetensors}   the recipe's adapter after 3 steps
  batches.safetensors          step<s>.{noisy,timesteps,target,pixels,keep,index,context}, losses
  case.json                    captions per step and the training options
and, for `nest generate`, Tests/NestTrainingTests/Fixtures/torch_recipe/generation/:
  reference.png                the subject photo
  images.safetensors           "image": the recipe's own sampling (nest_torch.sample) with
                               sd1-nested/trained.json, λ = 4, w = 8 ([H, W, 3] in 0...1);
                               "base": the same without the adapter (to show it matters)
  case.json                    prompt, seed, steps, guidance, λ, w
"""
import json
import os
import shutil
import sys
import tempfile

import torch
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "training"))
sys.path.insert(0, os.path.join(ROOT, "training", "tests"))
from conftest import make_run  # noqa: E402
from conftest import image, model_folder  # noqa: E402
from nest_torch.base import add_placeholder  # noqa: E402
from nest_torch.sample import generate, load_pipeline  # noqa: E402
from nest_torch.step import add_noise, conditioning  # noqa: E402
from nest_torch.train import Run  # noqa: E402

OUT = os.path.join(ROOT, "Tests", "NestTrainingTests", "Fixtures", "torch_recipe")
STEPS = 3
RESOLUTION = 32
# Captions after dropout, and whether the image is kept: text dropped (the caption is the
# placeholder alone), image dropped, both dropped (empty caption).
BATCHES = [(["a photo of <critter> on the beach", "<critter> in a red hat"], [True, True]),
           (["<critter>", "a photo of <critter> in the snow"], [True, False]),
           (["", "a small <critter> sleeping"], [False, True])]
TRAINING = {"resolution": RESOLUTION, "batch_size": 2, "steps": STEPS, "learning_rate": 1e-3, "weight_decay": 1e-2,
            "gradient_clip": 1.0, "seed": 5, "drop_image": 0, "drop_text": 0, "drop_both": 0}
CASES = [("sd1", "nested"), ("sdxl", "nested"), ("sd1", "ip-adapter"), ("sd1", "single-token")]


def fixed_batch(run, step, captions, keep):
    g = torch.Generator().manual_seed(1000 * step + 7)
    base = run.base
    latent = (len(captions), base.vae.config.latent_channels, RESOLUTION // 8, RESOLUTION // 8)
    z0, eps = torch.randn(latent, generator=g), torch.randn(latent, generator=g)
    timesteps = torch.tensor([137 + 311 * i + 97 * step for i in range(len(captions))])
    noisy, target = add_noise(base, z0, eps, timesteps)
    size = base.clip_crop_size()
    pixels = torch.randn(len(captions), 3, size, size, generator=g)
    batch = conditioning(base, run.adapter, captions, keep, pixels, RESOLUTION)
    batch.update(noisy=noisy, timesteps=timesteps, target=target)
    return batch


def make_case(flavour, kind, tmp):
    config = make_run(tmp, flavour=flavour, kind=kind, training=TRAINING, count=2)
    run = Run(config)
    folder = os.path.join(OUT, f"{flavour}-{kind}")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    run.adapter.save(os.path.join(folder, "initial.json"))
    tensors, losses = {}, []
    for step, (captions, keep) in enumerate(BATCHES):
        batch = fixed_batch(run, step, captions, keep)
        losses.append(run.train_step(batch))
        for key in ("noisy", "target", "pixels", "keep", "context"):
            tensors[f"step{step}.{key}"] = batch[key].float()
        tensors[f"step{step}.timesteps"] = batch["timesteps"].float()
        tensors[f"step{step}.index"] = torch.tensor([-1.0 if i is None else float(i) for i in batch["index"]])
    tensors["losses"] = torch.tensor(losses, dtype=torch.float64).float()
    run.adapter.save(os.path.join(folder, "trained.json"))
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(folder, "batches.safetensors"),
              metadata={"torch": torch.__version__})
    json.dump({"captions": [c for c, _ in BATCHES], "training": TRAINING, "losses": losses},
              open(os.path.join(folder, "case.json"), "w"), indent=1)
    print(f"{flavour} {kind}: losses {losses}")


GENERATION = {"prompt": "a photo of <critter> on the beach", "seed": 11, "steps": 4, "guidance": 7.5,
              "value_norm": 4.0, "token_weight": 8.0}


def make_generation(tmp):
    folder = os.path.join(OUT, "generation")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    reference = os.path.join(folder, "reference.png")
    image(reference, 42)  # 32x32: the tiny CLIP's own size, so preprocessing does not resample
    model = model_folder(tmp, "sd1")
    g = GENERATION
    picture = generate(model, os.path.join(OUT, "sd1-nested", "trained.json"), [reference], g["prompt"], g["seed"],
                       g["steps"], g["guidance"], options={"lam": g["value_norm"], "weight": g["token_weight"]})
    pipe = load_pipeline(model)
    add_placeholder([pipe.tokenizer], [pipe.text_encoder], "<critter>", "cat")
    base = pipe(g["prompt"], num_inference_steps=g["steps"], guidance_scale=g["guidance"], output_type="np",
                generator=torch.Generator("cpu").manual_seed(g["seed"])).images[0]
    save_file({"image": torch.from_numpy(picture).float().contiguous(), "base": torch.from_numpy(base).float().contiguous()},
              os.path.join(folder, "images.safetensors"))
    json.dump(GENERATION, open(os.path.join(folder, "case.json"), "w"), indent=1)
    print(f"generation: {picture.shape}, the adapter moves the image by up to {abs(picture - base).max() * 255:.1f}/255")


if __name__ == "__main__":
    torch.set_num_threads(1)  # summation order of float32 reductions fixed
    with tempfile.TemporaryDirectory() as tmp:
        for flavour, kind in CASES:
            make_case(flavour, kind, tmp)
        make_generation(tmp)
