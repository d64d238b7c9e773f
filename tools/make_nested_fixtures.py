#!/usr/bin/env python3
"""Nested Attention on a whole UNet: PyTorch/diffusers references for the Swift binding.

    HF_HUB_OFFLINE=1 python3 tools/make_nested_fixtures.py

For the sd1 and sdxl flavours of tools/model_fixtures/unet.py this builds the tiny
UNet (weights perturbed as tools/make_model_fixtures.py does), two random nested
adapters in our adapter format (NAME.json + NAME.safetensors: `resampler.*` in the
original IP-Adapter layout and `layers.N.to_k/to_v.weight`), random CLIP-like image
features per subject, and runs the UNet on a guidance batch [uncond, cond] with
`NestedAttnProcessor` (below) on the bound cross-attention layers.

The processor is written in the DIRECT per-query form of the paper (Patashnik et
al. 2025), per head:
    a_i   = softmax(q_i K^T / sqrt(d) + log w_j at each subject token s_j)
    v*_ij = softmax(q_i K~_j^T / sqrt(d)) V~_j      (optionally rescaled to lambda_j * |V_{s_j}|)
    out_i = sum_{t not a subject token} a_it V_t + sum_j a_{i s_j} v*_ij
while Swift computes the residual form, so agreement checks the algebra as well.

Adapter A lists every cross-attention layer by its attn_processors key; adapter B
lists every second one, in reverse order and by bare module path (both spellings
are accepted), so `layers.N` must follow the adapter's list, not the UNet's order.

Writes Tests/NestPersonalizationTests/Fixtures/nested/<flavour>/{unet/, adapter_a.*,
adapter_b.*, reference.safetensors}.
"""
import ast
import json
import math
import os
import sys

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.embeddings import IPAdapterPlusImageProjection
from safetensors.torch import save_file

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(TOOLS, ".."))
OUT = os.path.join(ROOT, "Tests", "NestPersonalizationTests", "Fixtures", "nested")
sys.path.insert(0, TOOLS)
from make_model_fixtures import perturb, seed_for  # noqa: E402
from model_fixtures.unet import CONFIGS, POOLED_DIM  # noqa: E402

LATENT = (2, 4, 16, 16)  # [uncond, cond]
TOKENS = 77
TIMESTEP = 500
FEATURES = (1, 10, 16)  # CLIP-like penultimate hidden states: [1, patches, hidden]
# Nested projections are drawn larger than a to_k/to_v init so the subject visibly moves the
# output (a_s is about 1/77 at random): a wrong read-out then fails by far more than 1e-4.
NESTED_GAIN = 6.0
RESAMPLER = dict(embed_dims=16, hidden_dims=32, depth=2, dim_head=8, heads=4, num_queries=4, ffn_ratio=2)


def load_to_original_layout():
    """to_original_layout from make_personalization_fixtures.py, without running that script
    (it writes its own fixture file at import time)."""
    path = os.path.join(TOOLS, "make_personalization_fixtures.py")
    tree = ast.parse(open(path).read())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "to_original_layout")
    namespace = {"torch": torch}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), path, "exec"), namespace)
    return namespace["to_original_layout"]


to_original_layout = load_to_original_layout()


class NestedAttnProcessor:
    """diffusers attention processor: cross-attention with nested attention, direct form.

    subjects: list of dicts with "index" (token position per batch item or None),
    "keys"/"values" ([1, M, H*d] nested keys and values for this layer), "lam", "weight".
    """

    def __init__(self, subjects):
        self.subjects = subjects

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        assert encoder_hidden_states is not None and attention_mask is None and hidden_states.ndim == 3
        q = attn.to_q(hidden_states)
        k = attn.to_k(encoder_hidden_states)
        v = attn.to_v(encoder_hidden_states)
        b, n, width = q.shape
        t = k.shape[1]
        heads = attn.heads
        d = width // heads
        qh = q.view(b, n, heads, d).transpose(1, 2)  # [b, h, n, d]
        kh = k.view(b, t, heads, d).transpose(1, 2)
        vh = v.view(b, t, heads, d).transpose(1, 2)
        bias = torch.zeros(b, 1, 1, t)
        keep = torch.ones(b, 1, 1, t)  # 0 at subject tokens: their values are replaced
        for s in self.subjects:
            for item, index in enumerate(s["index"]):
                if index is not None:
                    bias[item, 0, 0, index] = math.log(s["weight"])
                    keep[item, 0, 0, index] = 0
        a = torch.softmax(qh @ kh.transpose(-1, -2) * attn.scale + bias, dim=-1)  # [b, h, n, t]
        out = (a * keep) @ vh  # sum over the ordinary tokens
        per_item = []
        for item in range(b):
            o = out[item]  # [h, n, d]
            for s in self.subjects:
                index = s["index"][item]
                if index is None:
                    continue
                kn = s["keys"][0].view(-1, heads, d).transpose(0, 1)  # [h, m, d]
                vn = s["values"][0].view(-1, heads, d).transpose(0, 1)
                vstar = torch.softmax(qh[item] @ kn.transpose(-1, -2) * attn.scale, dim=-1) @ vn  # [h, n, d]
                if s["lam"] is not None:
                    target = s["lam"] * vh[item, :, index].norm(dim=-1)  # [h]
                    vstar = vstar / vstar.norm(dim=-1, keepdim=True) * target[:, None, None]
                o = o + a[item, :, :, index:index + 1] * vstar
            per_item.append(o)
        out = torch.stack(per_item).transpose(1, 2).reshape(b, n, width)
        return attn.to_out[1](attn.to_out[0](out))


def make_adapter(name, token, unet, layer_keys, listed, bare_paths, seed):
    """A random nested adapter over `listed` (indices into layer_keys), saved in our format."""
    g = torch.Generator().manual_seed(seed)
    cross_dim = unet.config.cross_attention_dim
    resampler = IPAdapterPlusImageProjection(output_dims=cross_dim, **RESAMPLER)
    perturb(resampler, seed + 1)
    modules = dict(unet.named_modules())
    layers, tensors = [], {}
    for n, i in enumerate(listed):
        key = layer_keys[i]
        width = modules[key[:-len(".processor")]].to_k.out_features
        layers.append({"path": key[:-len(".processor")] if bare_paths else key, "width": width})
        for proj in ("to_k", "to_v"):
            tensors[f"layers.{n}.{proj}.weight"] = torch.randn(width, cross_dim, generator=g) * (NESTED_GAIN / math.sqrt(cross_dim))
    for key, value in to_original_layout(resampler.state_dict()).items():
        tensors[f"resampler.{key}"] = value
    config = {
        "format": "nest-adapter", "version": 1, "kind": "nested",
        "placeholder_token": token, "class_word": token.strip("<>"),
        "image_encoder": {"hidden_size": FEATURES[2], "image_size": 224, "feature_layer": -2},
        "resampler": {"embedding_dim": RESAMPLER["embed_dims"], "width": RESAMPLER["hidden_dims"],
                      "output_dim": cross_dim, "depth": RESAMPLER["depth"], "heads": RESAMPLER["heads"],
                      "head_dim": RESAMPLER["dim_head"], "queries": RESAMPLER["num_queries"],
                      "ff_mult": RESAMPLER["ffn_ratio"]},
        "layers": layers,
        "defaults": {"value_normalization": None, "token_weight": 1.0, "scale": 1.0},
    }
    return {"name": name, "token": token, "config": config, "tensors": tensors, "resampler": resampler,
            "bound": [layer_keys[i] for i in listed]}


def save_adapter(folder, adapter):
    with open(os.path.join(folder, f"{adapter['name']}.json"), "w") as f:
        json.dump(adapter["config"], f, indent=2, sort_keys=True)
        f.write("\n")
    save_file({k: v.contiguous() for k, v in adapter["tensors"].items()},
              os.path.join(folder, f"{adapter['name']}.safetensors"))


# (case name, [(adapter name, token index per item, lambda, w)])
CASES = [
    ("single", [("adapter_a", [None, 5], None, 1.0)]),
    ("two", [("adapter_a", [None, 5], None, 1.0), ("adapter_b", [None, 9], None, 1.0)]),
    ("lambda", [("adapter_a", [None, 5], 1.5, 1.0)]),
    ("weight", [("adapter_a", [None, 5], None, 3.0)]),
    ("mixed", [("adapter_a", [3, 5], 0.8, 1.0), ("adapter_b", [None, 2], None, 2.0)]),
]


@torch.no_grad()
def flavour_fixtures(flavour):
    folder = os.path.join(OUT, flavour)
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(seed_for("nested", flavour))
    unet = UNet2DConditionModel(**CONFIGS[flavour])
    perturb(unet, seed_for("nested", flavour, "unet"))
    unet.eval()
    unet.save_pretrained(os.path.join(folder, "unet"), safe_serialization=True)
    layer_keys = [k for k in unet.attn_processors if k.endswith(".attn2.processor")]
    adapters = {
        "adapter_a": make_adapter("adapter_a", "<cat>", unet, layer_keys, list(range(len(layer_keys))), False,
                                  seed_for("nested", flavour, "a")),
        "adapter_b": make_adapter("adapter_b", "<dog>", unet, layer_keys, list(range(len(layer_keys)))[1::2][::-1],
                                  True, seed_for("nested", flavour, "b")),
    }
    for adapter in adapters.values():
        save_adapter(folder, adapter)

    refs = {"sample": torch.randn(LATENT),
            "encoder_hidden_states": torch.randn(LATENT[0], TOKENS, unet.config.cross_attention_dim)}
    added = None
    if unet.config.addition_embed_type == "text_time":
        refs["text_embeds"] = torch.randn(LATENT[0], POOLED_DIM)
        refs["time_ids"] = torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]] * 2)
        added = {"text_embeds": refs["text_embeds"], "time_ids": refs["time_ids"]}
    encoded = {}
    for name, adapter in adapters.items():
        refs[f"{name}.features"] = torch.randn(FEATURES)
        encoded[name] = adapter["resampler"](refs[f"{name}.features"])
        refs[f"{name}.tokens"] = encoded[name]

    def run(processors):
        unet.set_attn_processor(processors)
        return unet(refs["sample"], TIMESTEP, refs["encoder_hidden_states"], added_cond_kwargs=added).sample

    plain = {k: AttnProcessor2_0() for k in unet.attn_processors}
    refs["out_base"] = run(dict(plain))
    for case, subjects in CASES:
        per_layer = {}
        for name, index, lam, weight in subjects:
            adapter = adapters[name]
            e = encoded[name]
            # The case's settings, for the Swift test to read (-1: no token; lambda 0: none).
            refs[f"{case}.{name}.index"] = torch.tensor([-1 if i is None else i for i in index], dtype=torch.float32)
            refs[f"{case}.{name}.lambda"] = torch.tensor([lam or 0.0])
            refs[f"{case}.{name}.weight"] = torch.tensor([weight])
            for n, key in enumerate(adapter["bound"]):
                wk, wv = adapter["tensors"][f"layers.{n}.to_k.weight"], adapter["tensors"][f"layers.{n}.to_v.weight"]
                per_layer.setdefault(key, []).append(
                    {"index": index, "keys": e @ wk.T, "values": e @ wv.T, "lam": lam, "weight": weight})
        processors = dict(plain)
        for key, subs in per_layer.items():
            processors[key] = NestedAttnProcessor(subs)
        refs[f"out_{case}"] = run(processors)
        change = (refs[f"out_{case}"] - refs["out_base"]).abs().max().item()
        print(f"{flavour} {case}: {len(per_layer)} layers nested, max change vs base {change:.4f}")
    save_file({k: v.float().contiguous() for k, v in refs.items()}, os.path.join(folder, "reference.safetensors"),
              metadata={"torch": torch.__version__, "timestep": str(TIMESTEP)})
    print(f"{flavour}: {len(layer_keys)} cross-attention layers; adapter_b binds {adapters['adapter_b']['bound']}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    for flavour in ["sd1", "sdxl"]:
        flavour_fixtures(flavour)
