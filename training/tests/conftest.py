"""Tiny models and data for the recipe's tests, from the Swift tests' committed
fixtures (random-weight diffusers folders): nothing is downloaded."""
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "training"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
PIPELINES = os.path.join(ROOT, "Tests", "NestDiffusionTests", "Fixtures", "pipelines")
ENCODERS = os.path.join(ROOT, "Tests", "NestModelsTests", "Fixtures", "sd1")


def model_folder(tmp, flavour):
    """The tiny `flavour` pipeline plus the tiny CLIP image encoder, as one model folder
    (what AdapterTrainerTests.swift assembles too)."""
    folder = os.path.join(tmp, f"model-{flavour}")
    if os.path.isdir(folder):
        return folder
    os.makedirs(folder)
    source = os.path.join(PIPELINES, flavour)
    for name in os.listdir(source):
        if name != "model_index.json":
            os.symlink(os.path.join(source, name), os.path.join(folder, name))
    for name in ("image_encoder", "feature_extractor"):
        os.symlink(os.path.join(ENCODERS, name), os.path.join(folder, name))
    index = json.load(open(os.path.join(source, "model_index.json")))
    index["image_encoder"] = ["transformers", "CLIPVisionModelWithProjection"]
    index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    json.dump(index, open(os.path.join(folder, "model_index.json"), "w"))
    return folder


def image(path, seed, size=32):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, 3)
    y, x = np.mgrid[0:size, 0:size]
    pixels = np.stack([(base[c] + x * 5 * (c + 1) + y * 3) % 256 for c in range(3)], axis=-1).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def make_run(tmp, flavour="sd1", kind="nested", training=None, count=6, **extra):
    """A run config + manifest over `count` synthetic records; returns the config path."""
    data = os.path.join(tmp, "data")
    os.makedirs(data, exist_ok=True)
    lines = []
    for i in range(count):
        image(os.path.join(data, f"t{i}.png"), i)
        image(os.path.join(data, f"r{i}.png"), 100 + i)
        lines.append(json.dumps({"image": f"t{i}.png", "caption": f"a photo of <critter> number {i}",
                                 "references": [f"r{i}.png"]}))
    with open(os.path.join(data, "train.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    config = {"model": model_folder(tmp, flavour), "data": "data/train.jsonl", "output": f"runs/{kind}",
              "adapter": {"placeholder_token": "<critter>", "class_word": "cat", "kind": kind,
                          "resampler": {"width": 32, "depth": 1, "heads": 2, "head_dim": 16, "queries": 4}},
              "training": dict({"resolution": 32, "batch_size": 2, "steps": 4, "learning_rate": 1e-3, "seed": 3},
                               **(training or {})),
              "checkpoint_every": 2, "log_every": 1}
    config.update(extra)
    path = os.path.join(tmp, f"run-{kind}.json")
    json.dump(config, open(path, "w"), indent=1)
    return path


@pytest.fixture
def tmp(tmp_path):
    return str(tmp_path)
