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


if __name__ == "__main__":
    torch.set_num_threads(1)  # summation order of float32 reductions fixed
    with tempfile.TemporaryDirectory() as tmp:
        for flavour, kind in CASES:
            make_case(flavour, kind, tmp)
