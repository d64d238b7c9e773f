"""The recipe's sampling reproduces its committed reference image (which
`nest generate` is checked against in Tests/NestCLITests/TorchRecipeGenerateTests.swift)."""
import json
import os

import numpy as np
from safetensors.torch import load_file

from conftest import ROOT, model_folder
from nest_torch.sample import generate

FIXTURES = os.path.join(ROOT, "Tests", "NestTrainingTests", "Fixtures", "torch_recipe")


def test_sampling_reproduces_the_committed_image(tmp):
    folder = os.path.join(FIXTURES, "generation")
    g = json.load(open(os.path.join(folder, "case.json")))
    image = generate(model_folder(tmp, "sd1"), os.path.join(FIXTURES, "sd1-nested", "trained.json"),
                     [os.path.join(folder, "reference.png")], g["prompt"], g["seed"], g["steps"], g["guidance"],
                     options={"lam": g["value_norm"], "weight": g["token_weight"]})
    expected = load_file(os.path.join(folder, "images.safetensors"))
    assert np.abs(image - expected["image"].numpy()).max() <= 1e-5
    assert np.abs(image - expected["base"].numpy()).max() > 10 / 255, "the adapter must change the image"
