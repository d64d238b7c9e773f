#!/usr/bin/env python3
"""torch.randn reference values for the Swift TorchGenerator.

    pip install torch==2.13.0+cpu && python3 tools/make_random_fixtures.py
Writes Tests/NestDiffusionTests/Fixtures/randn.json: for several seeds, the values of
successive torch.randn calls on one generator (sizes below 16, multiples of 16, ragged).
"""
import json
import os
import torch

cases = []
for seed in (0, 1, 42, 2**32 + 5, 123456789):
    g = torch.Generator("cpu").manual_seed(seed)
    draws = []
    for shape in ((1, 4, 8, 8), (5,), (2, 3, 7), (16,), (1,), (3, 3)):
        draws.append({"shape": list(shape), "values": torch.randn(shape, generator=g).flatten().tolist()})
    cases.append({"seed": seed, "draws": draws})
path = os.path.join(os.path.dirname(__file__), "..", "Tests", "NestDiffusionTests", "Fixtures", "randn.json")
with open(path, "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f)
print("wrote", os.path.normpath(path))
