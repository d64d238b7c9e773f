#!/usr/bin/env python3
"""Gradients of a nested adapter trained through a frozen tiny UNet: PyTorch autograd references.

    HF_HUB_OFFLINE=1 python3 tools/make_adapter_gradient_fixtures.py

Reads what tools/make_nested_fixtures.py committed (the tiny sd1/sdxl UNets and
adapter_a, in our adapter format) and changes none of it. For each flavour and case:
random CLIP-like features E_in -> resampler -> tokens E -> per-layer K~ = E W~_K,
V~ = E W~_V, used by `NestedAttnProcessor` (the direct per-query form of the paper)
on every layer adapter_a binds; random latents, per-item timesteps, text context and
target noise; loss = mean((unet(...) - eps)^2); backward. Only the adapter's
parameters require gradients (the UNet is frozen).

The reference runs in float64 (weights and inputs are float32 values, so both sides
see the same numbers) and saves the loss and the gradient of every adapter
parameter under our adapter format's names: `resampler.*` in the original IP-Adapter
layout (to_kv's gradient is the concatenation of the to_k and to_v gradients) and
`layers.N.to_k.weight` / `layers.N.to_v.weight`, as "<case>.grad.<name>".

Writes Tests/NestPersonalizationTests/Fixtures/nested/<flavour>/gradients.safetensors.
"""
import json
import os
import sys

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.embeddings import IPAdapterPlusImageProjection
from safetensors.torch import load_file, save_file

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)
# make_nested_fixtures.py only writes under `if __name__ == "__main__"`, so importing it is safe.
from make_model_fixtures import seed_for  # noqa: E402
from make_nested_fixtures import FEATURES, OUT, RESAMPLER, NestedAttnProcessor, to_original_layout  # noqa: E402
from model_fixtures.unet import POOLED_DIM  # noqa: E402

BATCH = 2
TOKENS = 77
ADAPTER = "adapter_a"
# (case, token index per batch item, lambda, w): two conditional items with different token
# positions; then guidance-style [uncond, cond] with value normalization and a token weight.
CASES = [
    ("plain", [3, 8], None, 1.0),
    ("scaled", [None, 5], 1.5, 2.0),
]


def from_original_layout(original):
    """Inverse of to_original_layout: the original IP-Adapter names back to diffusers'."""
    renames = {"0.norm1.": "ln0.", "0.norm2.": "ln1.", "0.to_q.": "attn.to_q.", "0.to_out.": "attn.to_out.0.",
               "1.0.": "ff.0.", "1.1.": "ff.1.net.0.proj.", "1.3.": "ff.1.net.2."}
    state = {}
    for key, value in original.items():
        parts = key.split(".")
        if parts[0] != "layers":
            state[key] = value
            continue
        n, rest = parts[1], ".".join(parts[2:])
        if rest.startswith("0.to_kv."):
            suffix = rest[len("0.to_kv."):]
            k, v = value.chunk(2, dim=0)
            state[f"layers.{n}.attn.to_k.{suffix}"], state[f"layers.{n}.attn.to_v.{suffix}"] = k, v
            continue
        old = next(o for o in renames if rest.startswith(o))
        state[f"layers.{n}.{renames[old]}{rest[len(old):]}"] = value
    return state


def load_adapter(folder):
    """adapter_a as torch parameters: the resampler module and the per-layer projection weights."""
    config = json.load(open(os.path.join(folder, f"{ADAPTER}.json")))
    tensors = load_file(os.path.join(folder, f"{ADAPTER}.safetensors"))
    resampler = IPAdapterPlusImageProjection(output_dims=config["resampler"]["output_dim"], **RESAMPLER)
    original = {k[len("resampler."):]: v for k, v in tensors.items() if k.startswith("resampler.")}
    resampler.load_state_dict(from_original_layout(original), strict=True)
    resampler.double().requires_grad_(True)
    projections = {k: torch.nn.Parameter(v.double()) for k, v in tensors.items() if k.startswith("layers.")}
    assert set(to_original_layout(resampler.state_dict())) == set(original)
    return config, resampler, projections


def flavour_fixtures(flavour):
    folder = os.path.join(OUT, flavour)
    unet = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet")).double().eval()
    unet.requires_grad_(False)
    config, resampler, projections = load_adapter(folder)
    bound = [entry["path"] for entry in config["layers"]]
    assert all(p.endswith(".attn2.processor") for p in bound)

    g = torch.Generator().manual_seed(seed_for("adapter-gradients", flavour))
    width = unet.config.cross_attention_dim
    refs = {"features": torch.randn(FEATURES, generator=g),
            "sample": torch.randn(BATCH, 4, 16, 16, generator=g),
            "timesteps": torch.tensor([100.0, 700.0]),
            "encoder_hidden_states": torch.randn(BATCH, TOKENS, width, generator=g),
            "eps": torch.randn(BATCH, 4, 16, 16, generator=g)}
    added = None
    if unet.config.addition_embed_type == "text_time":
        refs["text_embeds"] = torch.randn(BATCH, POOLED_DIM, generator=g)
        refs["time_ids"] = torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]] * BATCH)
        added = {k: refs[k].double() for k in ("text_embeds", "time_ids")}

    params = dict(resampler.named_parameters())
    for case, index, lam, weight in CASES:
        refs[f"{case}.index"] = torch.tensor([-1 if i is None else i for i in index], dtype=torch.float32)
        refs[f"{case}.lambda"] = torch.tensor([lam or 0.0])
        refs[f"{case}.weight"] = torch.tensor([weight])
        for p in list(params.values()) + list(projections.values()):
            p.grad = None
        tokens = resampler(refs["features"].double())
        processors = {k: AttnProcessor2_0() for k in unet.attn_processors}
        for n, key in enumerate(bound):
            keys = tokens @ projections[f"layers.{n}.to_k.weight"].T
            values = tokens @ projections[f"layers.{n}.to_v.weight"].T
            processors[key] = NestedAttnProcessor([{"index": index, "keys": keys, "values": values,
                                                   "lam": lam, "weight": weight}])
        unet.set_attn_processor(processors)
        pred = unet(refs["sample"].double(), refs["timesteps"].double(), refs["encoder_hidden_states"].double(),
                    added_cond_kwargs=added).sample
        loss = ((pred - refs["eps"].double()) ** 2).mean()
        loss.backward()
        refs[f"{case}.loss"] = loss.detach().reshape(1)
        grads = to_original_layout({k: p.grad for k, p in params.items()})
        grads = {f"resampler.{k}": v for k, v in grads.items()}
        grads.update({k: p.grad for k, p in projections.items()})
        for name, grad in grads.items():
            refs[f"{case}.grad.{name}"] = grad
        largest = max(v.abs().max().item() for v in grads.values())
        print(f"{flavour} {case}: loss {loss.item():.6f}, {len(grads)} adapter gradients, largest {largest:.3e}")
    save_file({k: v.detach().float().contiguous() for k, v in refs.items()},
              os.path.join(folder, "gradients.safetensors"), metadata={"torch": torch.__version__})


if __name__ == "__main__":
    for flavour in ["sd1", "sdxl"]:
        flavour_fixtures(flavour)
