#!/usr/bin/env python3
"""A Nested Attention encoder in the IP-Adapter lineage, for `nest adapter import`.

    HF_HUB_OFFLINE=1 python3 tools/make_nested_import_fixtures.py

The published Nested Attention encoder (Patashnik et al. 2025) is loaded by code
derived from IP-Adapter's SDXL Plus loader. This script is a PyTorch reference written
from the paper in that shape, on the tiny SDXL pipeline of
Tests/NestDiffusionTests/Fixtures/pipelines/sdxl with the tiny CLIPVisionModelWithProjection
of Tests/NestModelsTests/Fixtures/sdxl/image_encoder:

  * IP-Adapter Plus XL's resampler (diffusers' IPAdapterPlusImageProjection, saved under
    the original `image_proj.*` names) with 1024 query tokens over CLIP's penultimate
    hidden states;
  * one attention processor per UNet attention layer, gathered in an nn.ModuleList in
    `unet.attn_processors` order as IP-Adapter does, so the cross-attention processors'
    `to_k_ip` / `to_v_ip` are saved as `ip_adapter.N.to_k_ip.weight` with N = 1, 3, 5, …;
  * in each cross-attention, the nested keys and values K~ = E·to_k_ip, V~ = E·to_v_ip,
    per head the per-query value v*_i = softmax(q_i K~^T / sqrt(d)) V~ rescaled to
    vq_normalize_factor · |V_s| (V_s: the placeholder token's own value), put in place of
    V_s for query i; `special_token_weight` w adds log w to the placeholder's logits
    before the softmax (its attention is multiplied by w, then renormalized);
  * a `<person>` token in both tokenizers with the embedding of `person` in both text
    encoders; the unconditional prompt has no placeholder, so it gets no nested values.

Random weights, seeded, rounded to float16 (the file is float16; the reference computes
with exactly those values). Writes Tests/NestPersonalizationTests/Fixtures/nested_import/:
  nested_encoder.safetensors              the checkpoint (image_proj.* + ip_adapter.N.*)
  nested_encoder_unknown_key.safetensors  the same plus one key no rule knows
  reference.png                           the subject photo (24x24: the tiny CLIP's size)
  case.json                               prompt, seed, steps, guidance and the encoder's settings
  images.safetensors                      "image": the reference's generation ([H, W, 3] in 0...1)
"""
import json
import math
import os
import sys

import numpy as np
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.embeddings import IPAdapterPlusImageProjection
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(TOOLS, ".."))
sys.path.insert(0, TOOLS)
from make_model_fixtures import perturb, seed_for  # noqa: E402
from make_nested_fixtures import to_original_layout  # noqa: E402

PIPELINE = os.path.join(ROOT, "Tests", "NestDiffusionTests", "Fixtures", "pipelines", "sdxl")
MODELS = os.path.join(ROOT, "Tests", "NestModelsTests", "Fixtures", "sdxl")
OUT = os.path.join(ROOT, "Tests", "NestPersonalizationTests", "Fixtures", "nested_import")

QUERIES = 1024  # the published demo's num_tokens
VQ_NORMALIZE_FACTOR = 2.0
SPECIAL_TOKEN_WEIGHT = 8.0
# IP-Adapter Plus XL's resampler at a tiny width (the real one: 1280 wide, depth 4, 20 heads of 64).
RESAMPLER = dict(hidden_dims=32, depth=2, dim_head=64, heads=2, num_queries=QUERIES, ffn_ratio=4)
# Nested projections larger than a to_k/to_v init, so the nested keys pick sharply and the subject shows.
NESTED_GAIN = 4.0
CASE = {"prompt": "a photo of <person> at the beach", "negative_prompt": "lowres, bad anatomy",
        "seed": 7, "steps": 3, "guidance": 5.0, "width": 64, "height": 64, "scheduler": "euler",
        "placeholder": "<person>", "class_word": "person",
        "vq_normalize_factor": VQ_NORMALIZE_FACTOR, "special_token_weight": SPECIAL_TOKEN_WEIGHT,
        "queries": QUERIES, "photo": "reference.png", "checkpoint": "nested_encoder.safetensors",
        "unknown_key": "ip_adapter.1.norm_ip.weight"}


class PlainProcessor(torch.nn.Module):
    """Self-attention layers keep diffusers' processor; a Module only so the list numbers every layer."""

    def __init__(self):
        super().__init__()
        self.inner = AttnProcessor2_0()

    def __call__(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


class NestedProcessor(torch.nn.Module):
    """Cross-attention with nested attention, in the direct per-query form of the paper."""

    def __init__(self, token_width, width):
        super().__init__()
        self.to_k_ip = torch.nn.Linear(token_width, width, bias=False)
        self.to_v_ip = torch.nn.Linear(token_width, width, bias=False)
        self.tokens = None  # E: [1, M, token_width], set per generation
        self.positions = []  # per batch item: the placeholder's index, or None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        assert encoder_hidden_states is not None and attention_mask is None and hidden_states.ndim == 3
        q, k, v = attn.to_q(hidden_states), attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        b, n, width = q.shape
        t, heads = k.shape[1], attn.heads
        d = width // heads
        split = lambda x: x.view(x.shape[0], -1, heads, d).transpose(1, 2)  # noqa: E731  [b, h, len, d]
        qh, kh, vh = split(q), split(k), split(v)
        bias, keep = torch.zeros(b, 1, 1, t), torch.ones(b, 1, 1, t)
        for item, s in enumerate(self.positions):
            if s is not None:
                bias[item, 0, 0, s] = math.log(SPECIAL_TOKEN_WEIGHT)
                keep[item, 0, 0, s] = 0
        a = torch.softmax(qh @ kh.transpose(-1, -2) * attn.scale + bias, dim=-1)  # [b, h, n, t]
        out = (a * keep) @ vh
        kn, vn = split(self.to_k_ip(self.tokens))[0], split(self.to_v_ip(self.tokens))[0]  # [h, M, d]
        rows = []
        for item, s in enumerate(self.positions):
            o = out[item]
            if s is not None:
                v_star = torch.softmax(qh[item] @ kn.transpose(-1, -2) * attn.scale, dim=-1) @ vn  # [h, n, d]
                target = VQ_NORMALIZE_FACTOR * vh[item, :, s].norm(dim=-1)  # [h]
                v_star = v_star / v_star.norm(dim=-1, keepdim=True) * target[:, None, None]
                o = o + a[item, :, :, s:s + 1] * v_star
            rows.append(o)
        out = torch.stack(rows).transpose(1, 2).reshape(b, n, width)
        return attn.to_out[1](attn.to_out[0](out))


def add_placeholder(pipe, token, class_word):
    """The token in both tokenizers, its embedding row copied from the class word's first token."""
    for tokenizer, encoder in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
        source = tokenizer(class_word, add_special_tokens=False).input_ids[0]
        tokenizer.add_tokens([token])
        new = tokenizer.convert_tokens_to_ids(token)
        if new >= encoder.get_input_embeddings().weight.shape[0]:
            encoder.resize_token_embeddings(len(tokenizer))
        table = encoder.get_input_embeddings().weight
        table[new] = table[source]


def half_exact(module):
    """Every parameter rounded to a value float16 holds exactly (the checkpoint is float16)."""
    for p in module.parameters():
        p.copy_(p.half().float())


def photo():
    g = np.random.default_rng(seed_for("nested_import", "photo"))
    pixels = g.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
    pixels[6:18, 8:16] = [220, 180, 150]  # a face-coloured patch, so the photo is not pure noise
    return Image.fromarray(pixels)


def build_encoder(pipe, encoder_width):
    """The resampler and the processors (IP-Adapter's ModuleList over attn_processors), random and seeded."""
    token_width = pipe.unet.config.cross_attention_dim
    torch.manual_seed(seed_for("nested_import", "init"))  # the modules' own initialization, under perturb's noise
    resampler = IPAdapterPlusImageProjection(embed_dims=encoder_width, output_dims=token_width, **RESAMPLER)
    perturb(resampler, seed_for("nested_import", "resampler"))
    half_exact(resampler)
    g = torch.Generator().manual_seed(seed_for("nested_import", "layers"))
    modules = dict(pipe.unet.named_modules())
    processors = {}
    for key in pipe.unet.attn_processors:
        if key.endswith("attn1.processor"):
            processors[key] = PlainProcessor()
            continue
        width = modules[key[:-len(".processor")]].to_k.out_features
        p = NestedProcessor(token_width, width)
        for linear in (p.to_k_ip, p.to_v_ip):
            linear.weight.copy_(torch.randn(width, token_width, generator=g) * (NESTED_GAIN / math.sqrt(token_width)))
        half_exact(p)
        processors[key] = p
    adapter_modules = torch.nn.ModuleList(processors.values())
    tensors = {f"image_proj.{k}": v for k, v in to_original_layout(resampler.state_dict()).items()}
    tensors.update({f"ip_adapter.{k}": v for k, v in adapter_modules.state_dict().items()})
    return resampler, processors, {k: v.half().contiguous() for k, v in tensors.items()}


def generate(pipe):
    return pipe(prompt=CASE["prompt"], negative_prompt=CASE["negative_prompt"], num_inference_steps=CASE["steps"],
                guidance_scale=CASE["guidance"], width=CASE["width"], height=CASE["height"], output_type="np",
                generator=torch.Generator("cpu").manual_seed(CASE["seed"])).images[0]


@torch.no_grad()
def main():
    os.makedirs(OUT, exist_ok=True)
    pipe = StableDiffusionXLPipeline.from_pretrained(PIPELINE)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    encoder = CLIPVisionModelWithProjection.from_pretrained(os.path.join(MODELS, "image_encoder")).eval()
    processor = CLIPImageProcessor.from_pretrained(os.path.join(MODELS, "feature_extractor"))
    add_placeholder(pipe, CASE["placeholder"], CASE["class_word"])
    resampler, processors, tensors = build_encoder(pipe, encoder.config.hidden_size)

    picture = photo()
    picture.save(os.path.join(OUT, CASE["photo"]))
    pixels = processor(images=[picture], return_tensors="pt").pixel_values
    features = encoder(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
    tokens = resampler(features)
    assert tokens.shape == (1, QUERIES, pipe.unet.config.cross_attention_dim), tokens.shape

    ids = pipe.tokenizer(CASE["prompt"]).input_ids
    position = ids.index(pipe.tokenizer.convert_tokens_to_ids(CASE["placeholder"]))
    base = generate(pipe)
    for p in processors.values():
        if isinstance(p, NestedProcessor):
            p.tokens, p.positions = tokens, [None, position]  # [unconditional, conditional]
    pipe.unet.set_attn_processor(processors)
    image = generate(pipe)
    change = float(abs(image - base).max()) * 255
    print(f"image {image.shape}, placeholder at {position}; nested attention moves it by up to {change:.1f}/255")
    assert change > 5, "the encoder must change the image by far more than the 1/255 the parity test allows"

    save_file(tensors, os.path.join(OUT, CASE["checkpoint"]))
    extra = dict(tensors)
    extra[CASE["unknown_key"]] = torch.ones(tensors["ip_adapter.1.to_k_ip.weight"].shape[0]).half()
    save_file(extra, os.path.join(OUT, "nested_encoder_unknown_key.safetensors"))
    save_file({"image": torch.from_numpy(image).float().contiguous()}, os.path.join(OUT, "images.safetensors"),
              metadata={"torch": torch.__version__})
    with open(os.path.join(OUT, "case.json"), "w") as f:
        json.dump(CASE, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"{len(tensors)} tensors; ip_adapter numbers {sorted({int(k.split('.')[1]) for k in tensors if k.startswith('ip_adapter.')})}")


if __name__ == "__main__":
    main()
