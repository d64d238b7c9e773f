#!/usr/bin/env python3
"""PyTorch side of `nest-bench compare`: one benchmark case per process.

    HF_HUB_OFFLINE=1 python3 tools/bench_torch.py CASE [--repeats N] [--threads T]

Builds the same model as the Swift case (configs in tools/bench_configs/, random
weights: timing does not depend on their values), runs one warm-up and the best
of N timed calls under torch.no_grad (except the training step), and prints one
JSON line: {"case", "seconds", "peak_rss_mib"}. Peak RSS is the whole process's
(getrusage), as for the Swift child. An optional dependency: torch, diffusers
and transformers (CPU build).
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_configs")


def config(name):
    with open(os.path.join(CONFIGS, name)) as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def unet(name):
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel.from_config(config(name)).eval()


class NestedProcessor:
    """Cross-attention with Nested Attention in the residual form the engine uses:
    out = Attention(Q, K, V) + a_s * (softmax(Q K~^T / sqrt d) V~ - V_s), per head,
    with K~, V~ computed once per generation (here: once, before timing)."""

    def __init__(self, subjects):
        self.subjects = subjects  # list of (token index, K~ [1, M, W], V~ [1, M, W])

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *a, **k):
        q, key, value = attn.to_q(hidden_states), attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        b, n, width = q.shape
        h = attn.heads
        d = width // h
        qh = q.view(b, n, h, d).transpose(1, 2)
        kh = key.view(b, -1, h, d).transpose(1, 2)
        vh = value.view(b, -1, h, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(qh, kh, vh)
        probs = torch.softmax(qh @ kh.transpose(-1, -2) * attn.scale, dim=-1)
        for index, kn, vn in self.subjects:
            knh = kn.view(1, -1, h, d).transpose(1, 2).expand(b, -1, -1, -1)
            vnh = vn.view(1, -1, h, d).transpose(1, 2).expand(b, -1, -1, -1)
            vstar = F.scaled_dot_product_attention(qh, knh, vnh)
            out = out + probs[:, :, :, index:index + 1] * (vstar - vh[:, :, index:index + 1, :])
        out = out.transpose(1, 2).reshape(b, n, width)
        return attn.to_out[1](attn.to_out[0](out))


def bind_nested(model, subjects, tokens=16, gen=None):
    processors = {}
    for name, proc in model.attn_processors.items():
        if name.endswith("attn2.processor"):
            module = dict(model.named_modules())[name[:-len(".processor")]]
            width = module.to_k.out_features
            subs = [(idx, torch.randn(1, tokens, width, generator=gen), torch.randn(1, tokens, width, generator=gen))
                    for idx in subjects]
            processors[name] = NestedProcessor(subs)
        else:
            processors[name] = proc
    model.set_attn_processor(processors)


def unet_config(family):
    """The UNet config of a case family: the published SD 1.5 / SDXL ones, or
    the tiny SD 1-style fixture UNet (tools/model_fixtures) for quick checks."""
    if family == "tiny":
        from model_fixtures.unet import CONFIGS as FIXTURE_UNETS
        return dict(FIXTURE_UNETS["sd1"])
    return config("sdxl_unet.json" if family == "sdxl" else "sd15_unet.json")


class UNetCall(torch.nn.Module):
    """One UNet forward with positional tensors in and one tensor out, the form
    tools/bench_openvino.py traces; `added` are SDXL's text_embeds and time_ids."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, sample, timestep, context, *added):
        kwargs = {"added_cond_kwargs": {"text_embeds": added[0], "time_ids": added[1]}} if added else {}
        return self.model(sample, timestep, encoder_hidden_states=context, return_dict=False, **kwargs)[0]


class VAEDecodeCall(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latents):
        return self.vae.decode(latents, return_dict=False)[0]


class TextCall(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(ids, return_dict=False)[0]


UNET_FAMILIES = ("sd15", "sdxl", "tiny")


def model_call(name):
    """(module, inputs) of a case that is one model forward, or None for the
    other cases. Draws its random inputs from a generator seeded 0 (weights:
    torch's global generator, seeded by the caller)."""
    g = torch.Generator().manual_seed(0)
    parts = name.split("-")
    if len(parts) >= 3 and parts[0] in UNET_FAMILIES and parts[1] == "unet":
        bf16 = parts[-1] == "bf16"  # the whole UNet in bfloat16 (oneDNN's bf16 kernels where the CPU has them)
        if bf16:
            parts = parts[:-1]
        size = int(parts[2])
        cfg = unet_config(parts[0])
        from diffusers import UNet2DConditionModel
        model = UNet2DConditionModel.from_config(cfg).eval()
        if len(parts) > 3:  # nested1 / nested2
            bind_nested(model, subjects=[5, 9][:int(parts[3][-1])], gen=g)
        x = torch.randn(2, 4, size, size, generator=g)
        ctx = torch.randn(2, 77, cfg["cross_attention_dim"], generator=g)
        if bf16:
            model, x, ctx = model.to(torch.bfloat16), x.to(torch.bfloat16), ctx.to(torch.bfloat16)
        added = ()
        if cfg.get("addition_embed_type") == "text_time":  # SDXL: pooled text embeds and 6 size/crop ids
            pooled = cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]
            added = (torch.randn(2, pooled, generator=g), torch.tensor([[1024., 1024, 0, 0, 1024, 1024]] * 2))
        return UNetCall(model), (x, torch.tensor([999, 999]), ctx) + added
    if name.startswith("vae-decode-"):
        from diffusers import AutoencoderKL
        size = int(name.split("-")[2])
        vae = AutoencoderKL.from_config(config("sd_vae.json")).eval()
        return VAEDecodeCall(vae), (torch.randn(1, 4, size // 8, size // 8, generator=g),)
    if name == "clip-text":
        from transformers import CLIPTextConfig, CLIPTextModel
        model = CLIPTextModel(CLIPTextConfig(**config("sd15_text.json"))).eval()
        return TextCall(model), (torch.randint(0, 49408, (2, 77), generator=g),)
    return None


def training_step(model, opt, g, bf16):
    """One optimizer step on a fixed batch of 8 world latents at 16x16 drawn
    from `g`; `bf16`: the forward under CPU autocast to bfloat16 (float32
    weights and optimizer state: PyTorch's mixed precision)."""
    x = torch.randn(8, 4, 16, 16, generator=g)
    ctx = torch.randn(8, 32, 128, generator=g)
    target = torch.randn(8, 4, 16, 16, generator=g)
    t = torch.randint(0, 1000, (8,), generator=g)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x, t, encoder_hidden_states=ctx).sample
        loss = F.mse_loss(out.float(), target)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return step


def case(name):
    """Returns a zero-argument callable doing one timed unit of work."""
    call = model_call(name)
    if call is not None:
        module, inputs = call
        return lambda: module(*inputs)
    g = torch.Generator().manual_seed(0)
    if name in ("generate-20", "generate-20-bf16"):
        # A whole SD 1.5 generation at 512x512: text encoding, 20 Euler steps with
        # guidance 7.5 (batch 2 UNet calls), VAE decode. Tokenizer: a small fixture
        # vocabulary (timing does not depend on it).
        from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
        folder = os.path.join(CONFIGS, "sd15_pipeline")
        pipe = StableDiffusionPipeline(
            vae=AutoencoderKL.from_config(config("sd_vae.json")), unet=unet("sd15_unet.json"),
            text_encoder=CLIPTextModel(CLIPTextConfig(**config("sd15_text.json"))),
            tokenizer=CLIPTokenizer.from_pretrained(os.path.join(folder, "tokenizer")),
            scheduler=EulerDiscreteScheduler.from_pretrained(os.path.join(folder, "scheduler")),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        if name.endswith("bf16"):
            pipe = pipe.to(dtype=torch.bfloat16)
        return lambda: pipe("a photo of a cat on the beach", num_inference_steps=20, guidance_scale=7.5,
                            height=512, width=512, output_type="np",
                            generator=torch.Generator().manual_seed(1)).images
    if name in ("train-step", "train-step-bf16"):
        # One AdamW step of a small UNet (the miniature world's) with a nested adapter's
        # projections as the only trainable parameters, batch 8 at 16x16 latents.
        from diffusers import UNet2DConditionModel
        model = UNet2DConditionModel.from_config(config("world_unet.json"))
        model.requires_grad_(False)
        params = []
        processors = {}
        for pname in model.attn_processors:
            if pname.endswith("attn2.processor"):
                module = dict(model.named_modules())[pname[:-len(".processor")]]
                width = module.to_k.out_features
                kp = torch.nn.Linear(128, width, bias=False)
                vp = torch.nn.Linear(128, width, bias=False)
                params += list(kp.parameters()) + list(vp.parameters())
                processors[pname] = (kp, vp)
        tokens = torch.randn(8, 16, 128, generator=g)

        class Trainable(NestedProcessor):
            def __init__(self, kp, vp):
                self.kp, self.vp = kp, vp

            def __call__(self, attn, hidden_states, encoder_hidden_states=None, *a, **k):
                self.subjects = [(3, self.kp(tokens), self.vp(tokens))]
                return NestedProcessor.__call__(self, attn, hidden_states, encoder_hidden_states)

        model.set_attn_processor({n: (Trainable(*processors[n]) if n in processors else p)
                                  for n, p in model.attn_processors.items()})
        opt = torch.optim.AdamW(params, lr=1e-4)
        return training_step(model, opt, g, name.endswith("bf16"))
    if name in ("train-unet", "train-unet-bf16"):
        # One AdamW step of the whole miniature-world UNet, batch 8 at 16x16 latents.
        from diffusers import UNet2DConditionModel
        model = UNet2DConditionModel.from_config(config("world_unet.json"))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        return training_step(model, opt, g, name.endswith("bf16"))
    raise SystemExit(f"bench_torch.py: unknown case {name}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("case")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    work = case(args.case)
    grad = torch.enable_grad() if args.case.startswith("train-") else torch.no_grad()
    with grad:
        start = time.perf_counter()
        work()
        best = time.perf_counter() - start  # with --repeats 0 the warm-up is the measurement
        if args.repeats > 0:
            best = math.inf
        for _ in range(args.repeats):
            start = time.perf_counter()
            work()
            best = min(best, time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"case": args.case, "seconds": best, "peak_rss_mib": peak}))


if __name__ == "__main__":
    main()
