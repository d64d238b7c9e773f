"""The adapter: subject encoder (resampler) and per-layer projections, in this
project's adapter format (`NAME.json` + `NAME.safetensors`).

Mirrors Sources/NestPersonalization/{Resampler,NestedAdapter,AdapterConfig}.swift:
the same modules, the same tensor names, the same JSON keys, so a file written
here loads in `nest generate` and a file written by `nest train adapter` loads here.
"""
import copy
import json
import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from .config import check_nested_value

KINDS = ("nested", "ip-adapter", "single-token")


class PerceiverAttention(nn.Module):
    """Queries attend to [features, queries]; keys and values from one projection (`to_kv`)."""

    def __init__(self, width, heads, head_dim):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.to_q = nn.Linear(width, heads * head_dim, bias=False)
        self.to_kv = nn.Linear(width, 2 * heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, width, bias=False)

    def forward(self, features, latents):
        x, l = self.norm1(features), self.norm2(latents)
        k, v = self.to_kv(torch.cat([x, l], dim=1)).chunk(2, dim=-1)
        return self.to_out(multihead(self.to_q(l), k, v, self.heads))


def multihead(q, k, v, heads):
    """softmax(Q·Kᵀ/√d)·V per head; q: [B, N, H·d], k, v: [B, T, H·d] → [B, N, H·d]."""
    b, n, width = q.shape
    split = lambda x: x.reshape(b, x.shape[1], heads, width // heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(b, n, width)


class Resampler(nn.Module):
    """Perceiver resampler of IP-Adapter Plus (our subject encoder): M learned
    queries attend to the image features and to themselves, depth times, then
    go to the output width. Names follow the original IP-Adapter layout."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = dict(cfg)
        w = cfg["width"]
        self.latents = nn.Parameter(torch.randn(1, cfg["queries"], w) / w ** 0.5)
        self.proj_in = nn.Linear(cfg["embedding_dim"], w)
        self.proj_out = nn.Linear(w, cfg["output_dim"])
        self.norm_out = nn.LayerNorm(cfg["output_dim"])
        inner = w * cfg["ff_mult"]
        self.layers = nn.ModuleList(nn.ModuleList([
            PerceiverAttention(w, cfg["heads"], cfg["head_dim"]),
            # LayerNorm → Linear → GELU → Linear: indices 0, 1, 3 carry weights, as in the original.
            nn.Sequential(nn.LayerNorm(w), nn.Linear(w, inner, bias=False), nn.GELU(), nn.Linear(inner, w, bias=False)),
        ]) for _ in range(cfg["depth"]))

    def forward(self, features):
        x = self.proj_in(features)
        l = self.latents.expand(features.shape[0], -1, -1)
        for attention, feed_forward in self.layers:
            l = attention(x, l) + l
            l = feed_forward(l) + l
        return self.norm_out(self.proj_out(l))


class Projection(nn.Module):
    """One bound layer's K̃/Ṽ (nested) or K_ip/V_ip (ip-adapter) projection of the encoder tokens."""

    def __init__(self, token_width, width):
        super().__init__()
        self.to_k = nn.Linear(token_width, width, bias=False)
        self.to_v = nn.Linear(token_width, width, bias=False)


class PersonalizationAdapter(nn.Module):
    """Everything that trains: `resampler.*`, `layers.N.to_{k,v}.weight`
    (nested, ip-adapter), `token_proj.*` (single-token), `image_encoder.*` (tuned)."""

    def __init__(self, config):
        super().__init__()
        check_config(config)
        self.config = copy.deepcopy(config)
        self.resampler = Resampler(config["resampler"])
        d = config["resampler"]["output_dim"]
        kind = config["kind"]
        self.layers = nn.ModuleList([] if kind == "single-token" else [Projection(d, l["width"]) for l in config["layers"]])
        self.token_proj = nn.Linear(d, config["context_width"]) if kind == "single-token" else None
        self.image_encoder = None

    @property
    def kind(self):
        return self.config["kind"]

    def attach_image_encoder(self, vision_model):
        """A tuned adapter trains (and saves) its own copy of the model's CLIP vision tower."""
        self.image_encoder = vision_model

    def encode(self, features):
        """Encoder tokens E [B, M, D] from CLIP hidden states [B, S, hidden]."""
        return self.resampler(features)

    def subject_vector(self, tokens):
        """Single-token kind: one context vector [B, 1, C] from the mean encoder token."""
        return self.token_proj(tokens.mean(dim=1, keepdim=True))

    def layer_keys_values(self, tokens):
        return [(p.to_k(tokens), p.to_v(tokens)) for p in self.layers]

    def forward(self, features=None, pixels=None, keep=None):
        """Everything the adapter contributes to one UNet pass, in one call (so a
        data-parallel wrapper sees every trained parameter used in its forward):
        encoder tokens, per-layer projections, the single-token vector.
        A tuned adapter computes `features` from `pixels` with its own encoder."""
        if self.image_encoder is not None:
            layer = self.config["image_encoder"]["feature_layer"]
            features = self.image_encoder(pixel_values=pixels, output_hidden_states=True).hidden_states[layer]
            if self.kind == "ip-adapter":
                features = features * keep.view(-1, 1, 1).to(features.dtype)
        tokens = self.encode(features.to(self.resampler.latents.dtype))
        return {"tokens": tokens, "kv": self.layer_keys_values(tokens),
                "vector": self.subject_vector(tokens) if self.kind == "single-token" else None}

    def save(self, path):
        """Writes NAME.json + NAME.safetensors (atomically: temporary files, then rename)."""
        stem = os.path.splitext(path)[0]
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, stem + ".safetensors.tmp", metadata={"format": "nest-adapter"})
        with open(stem + ".json.tmp", "w") as f:
            json.dump(self.config, f, indent=2, sort_keys=True)
        os.replace(stem + ".safetensors.tmp", stem + ".safetensors")
        os.replace(stem + ".json.tmp", stem + ".json")


def check_config(config):
    if config.get("format", "nest-adapter") != "nest-adapter" or config.get("version", 1) != 1:
        raise ValueError(f"not a nest-adapter version 1 config: {config.get('format')} {config.get('version')}")
    if config["kind"] not in KINDS:
        raise ValueError(f"adapter kind {config['kind']!r} is not one of {KINDS}")
    if config["kind"] == "single-token" and not config.get("context_width"):
        raise ValueError("a single-token adapter needs 'context_width'")
    check_nested_value(config.get("nested_value"), config["kind"], "nested_value")


def make_config(kind, placeholder, class_word, encoder_hidden, encoder_image_size, resampler, layers,
                context_width=None, feature_layer=-2, tuned=False, nested_value=None):
    """The adapter JSON, key for key as AdapterConfig.swift writes it (nil values left out)."""
    config = {"format": "nest-adapter", "version": 1, "kind": kind, "placeholder_token": placeholder,
              "class_word": class_word,
              "image_encoder": {"hidden_size": encoder_hidden, "image_size": encoder_image_size,
                                "feature_layer": feature_layer, "tuned": tuned},
              "resampler": dict(resampler), "layers": [dict(l) for l in layers],
              "defaults": {"token_weight": 1.0, "scale": 1.0}}
    if kind == "single-token":
        config["context_width"] = context_width
    if nested_value is not None:
        config["nested_value"] = nested_value
    return config


def load_adapter(path, vision_model_factory=None):
    """Reads NAME.json + NAME.safetensors; a tuned adapter needs `vision_model_factory()`
    to build its image encoder before the weights load."""
    stem = os.path.splitext(path)[0]
    with open(stem + ".json") as f:
        config = json.load(f)
    config.setdefault("defaults", {"token_weight": 1.0, "scale": 1.0})
    adapter = PersonalizationAdapter(config)
    if config["image_encoder"].get("tuned"):
        if vision_model_factory is None:
            raise ValueError(f"{path}: the adapter carries its own image encoder; pass the model's")
        adapter.attach_image_encoder(vision_model_factory())
    adapter.load_state_dict(load_file(stem + ".safetensors"), strict=True)
    return adapter
