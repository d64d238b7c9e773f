#!/usr/bin/env python3
"""Reference for the UNet trainer's min-SNR-γ loss weighting (Hang et al. 2023), from
diffusers' own `compute_snr` and the reduction of its train_text_to_image script:
per-sample MSE × min(SNR, γ) / SNR (ε-prediction) or min(SNR, γ) / (SNR + 1)
(v-prediction), then the mean over the batch.

    pip install torch==2.13.0+cpu diffusers safetensors
    HF_HUB_OFFLINE=1 python3 tools/make_min_snr_fixtures.py

Schedule: Stable Diffusion's (scaled_linear, 0.00085 to 0.012, 1000 steps). The weights
are written for 12 timesteps spread over the schedule; one denoising step of the tiny sd1
UNet fixture (Tests/NestModelsTests/Fixtures/sd1/unet) on 3 samples gives the weighted
loss for both prediction types. Writes Tests/NestTrainingTests/Fixtures/min_snr.safetensors.
"""
import os
import torch
from safetensors.torch import save_file
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import compute_snr

ROOT = os.path.join(os.path.dirname(__file__), "..")
MODELS = os.path.join(ROOT, "Tests", "NestModelsTests", "Fixtures")
GAMMA = 5.0
torch.manual_seed(11)
torch.set_num_threads(1)
out = {}

scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000)
timesteps = torch.tensor([0, 1, 5, 20, 60, 100, 180, 300, 500, 700, 900, 999])
snr = compute_snr(scheduler, timesteps)
capped = torch.stack([snr, GAMMA * torch.ones_like(timesteps)], dim=1).min(dim=1)[0]
out.update({"timesteps": timesteps.float(), "snr": snr, "weights.epsilon": capped / snr, "weights.v_prediction": capped / (snr + 1)})

unet = UNet2DConditionModel.from_pretrained(os.path.join(MODELS, "sd1", "unet"))
cfg = unet.config
x0 = torch.randn(3, cfg.in_channels, 8, 8)
eps = torch.randn_like(x0)
t = torch.tensor([3, 250, 870])
context = torch.randn(3, 7, cfg.cross_attention_dim)
noisy = scheduler.add_noise(x0, eps, t)
with torch.no_grad():
    pred = unet(noisy, t, encoder_hidden_states=context).sample
step_snr = compute_snr(scheduler, t)
step_capped = torch.stack([step_snr, GAMMA * torch.ones_like(t)], dim=1).min(dim=1)[0]
for kind, target, weights in (("epsilon", eps, step_capped / step_snr),
                              ("v_prediction", scheduler.get_velocity(x0, eps, t), step_capped / (step_snr + 1))):
    per_sample = torch.nn.functional.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=[1, 2, 3])
    out[f"step.loss.{kind}"] = (per_sample * weights).mean().reshape(1)
    out[f"step.plain.{kind}"] = per_sample.mean().reshape(1)
out.update({"step.x0": x0, "step.eps": eps, "step.t": t.float(), "step.context": context})

path = os.path.join(ROOT, "Tests", "NestTrainingTests", "Fixtures", "min_snr.safetensors")
save_file({k: v.detach().contiguous().float() for k, v in out.items()}, path,
          metadata={"torch": torch.__version__, "gamma": str(GAMMA)})
print("wrote", len(out), "tensors to", os.path.normpath(path))
for k in ("weights.epsilon", "weights.v_prediction", "step.loss.epsilon", "step.loss.v_prediction"):
    print(k, out[k].tolist())
