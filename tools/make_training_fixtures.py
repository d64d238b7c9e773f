#!/usr/bin/env python3
"""Gradient references for the trainers: one denoising step of a tiny UNet and one
VAE step, computed by PyTorch autograd on the model fixtures' weights.

    pip install torch==2.13.0+cpu diffusers safetensors
    HF_HUB_OFFLINE=1 python3 tools/make_training_fixtures.py

UNet (sd1 and sdxl fixtures): x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps with SD's
scaled-linear betas; loss = mean((unet(x_t, t, context) - eps)^2) (sdxl: text_time
conditioning; sd2-like v-prediction is covered by the scheduler's velocity target).
VAE (sd1): posterior sample with fixed noise, loss = mean((decode(z) - x)^2) + 1e-3 * mean(KL).
Writes Tests/NestTrainingTests/Fixtures/gradients.safetensors: inputs, the loss, and the
gradient of every parameter, named "<model>.grad.<parameter name>".
"""
import os
import torch
from safetensors.torch import save_file
from diffusers import AutoencoderKL, UNet2DConditionModel

ROOT = os.path.join(os.path.dirname(__file__), "..")
MODELS = os.path.join(ROOT, "Tests", "NestModelsTests", "Fixtures")
torch.manual_seed(5)
out = {}

betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float32) ** 2
alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)

for flavour in ("sd1", "sdxl"):
    unet = UNet2DConditionModel.from_pretrained(os.path.join(MODELS, flavour, "unet"))
    cfg = unet.config
    x0 = torch.randn(2, cfg.in_channels, 8, 8)
    eps = torch.randn_like(x0)
    t = torch.tensor([37, 812])
    abar = alphas_cumprod[t].reshape(-1, 1, 1, 1)
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    context = torch.randn(2, 7, cfg.cross_attention_dim)
    added = None
    if cfg.addition_embed_type == "text_time":
        pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        added = {"text_embeds": torch.randn(2, pooled), "time_ids": torch.tensor([[8.0, 8, 0, 0, 8, 8], [16, 8, 2, 0, 8, 8]])}
        out[f"{flavour}.text_embeds"], out[f"{flavour}.time_ids"] = added["text_embeds"], added["time_ids"]
    pred = unet(xt, t, encoder_hidden_states=context, added_cond_kwargs=added).sample
    loss = torch.mean((pred - eps) ** 2)
    loss.backward()
    out.update({f"{flavour}.x0": x0, f"{flavour}.eps": eps, f"{flavour}.t": t.float(), f"{flavour}.context": context,
                f"{flavour}.loss": loss.detach().reshape(1)})
    for name, p in unet.named_parameters():
        out[f"{flavour}.grad.{name}"] = p.grad.detach().clone()

vae = AutoencoderKL.from_pretrained(os.path.join(MODELS, "sd1", "vae"))
x = torch.rand(2, 3, 16, 16) * 2 - 1
noise = torch.randn(2, vae.config.latent_channels, 8, 8)
dist = vae.encode(x).latent_dist
z = dist.mean + dist.std * noise
recon = vae.decode(z).sample
kl = dist.kl().mean()
loss = torch.mean((recon - x) ** 2) + 1e-3 * kl
loss.backward()
out.update({"vae.x": x, "vae.noise": noise, "vae.loss": loss.detach().reshape(1)})
for name, p in vae.named_parameters():
    out[f"vae.grad.{name}"] = p.grad.detach().clone()

path = os.path.join(ROOT, "Tests", "NestTrainingTests", "Fixtures", "gradients.safetensors")
save_file({k: v.contiguous().float() for k, v in out.items()}, path, metadata={"torch": torch.__version__})
print("wrote", len(out), "tensors to", os.path.normpath(path))
