#!/usr/bin/env python3
"""diffusers scheduler reference values for the Swift schedulers.

    HF_HUB_OFFLINE=1 python3 tools/make_scheduler_fixtures.py
(diffusers 0.42.1, torch 2.13 CPU.) Writes Tests/NestDiffusionTests/Fixtures/schedulers.json:

- configs: scheduler_config.json dictionaries (the real SD1.5 / SD2.1 / SDXL ones and
  variations), each loaded with `<Class>.from_config`, as a user switching schedulers does;
- schedules: timesteps, sigmas and init_noise_sigma for many step counts;
- trajectories: a deterministic denoising loop (the "model" is a fixed function of the
  scaled sample and the timestep), recording prev_sample after the first and the last step;
- training: DDPM-style add_noise / get_velocity targets; inference_noise: add_noise at a
  start step (img2img);
- train_schedule: alphas_cumprod for a few beta schedules.
"""
import json
import math
import os

import torch
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler)

CLASSES = {"euler": EulerDiscreteScheduler, "euler-a": EulerAncestralDiscreteScheduler,
           "ddim": DDIMScheduler, "dpm++2m": DPMSolverMultistepScheduler}
SHAPE = (1, 4, 4, 4)  # 64 values: four 16-blocks, so randn takes its vectorised path like real latents

# The shipped scheduler configs (scheduler/scheduler_config.json of each model repository).
SD15 = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
        "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
        "clip_sample": False}
SD21 = {"_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
        "num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": False,
        "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None}
SDXL = {"_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.19.0.dev0", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
        "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
        "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
        "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False}
SCALED = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}

CONFIGS = {
    "sd15": SD15, "sd21": SD21, "sdxl": SDXL,
    "sd15_leading": {**SCALED, "timestep_spacing": "leading", "steps_offset": 1, "clip_sample": False,
                     "set_alpha_to_one": False},
    "karras": {**SCALED, "timestep_spacing": "leading", "steps_offset": 1, "use_karras_sigmas": True},
    "v_trailing": {**SCALED, "prediction_type": "v_prediction", "timestep_spacing": "trailing",
                   "steps_offset": 1, "clip_sample": False, "set_alpha_to_one": False},
    "linspace": {"timestep_spacing": "linspace", "clip_sample": False},  # linear betas (the defaults)
    "cosine": {"beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "linspace", "clip_sample": False},
    "zero_snr": {**SCALED, "prediction_type": "v_prediction", "timestep_spacing": "trailing",
                 "rescale_betas_zero_snr": True, "clip_sample": False, "set_alpha_to_one": False},
    "alpha_one_clip": {**SCALED, "timestep_spacing": "leading", "steps_offset": 1, "clip_sample": True,
                       "clip_sample_range": 1.5, "set_alpha_to_one": True},
    "sample_pred": {**SCALED, "prediction_type": "sample", "timestep_spacing": "leading", "steps_offset": 1,
                    "clip_sample": False},
    "svd_like": {**SCALED, "prediction_type": "v_prediction", "timestep_spacing": "leading",
                 "steps_offset": 1, "use_karras_sigmas": True, "sigma_min": 0.002, "sigma_max": 700.0,
                 "timestep_type": "continuous"},
    "exponential": {**SCALED, "timestep_spacing": "leading", "steps_offset": 1,
                    "use_exponential_sigmas": True},
    "final_sigma_min": {**SCALED, "timestep_spacing": "trailing", "final_sigmas_type": "sigma_min"},
    "heun": {**SCALED, "solver_type": "heun", "use_karras_sigmas": True},
    "euler_at_final": {**SCALED, "euler_at_final": True, "lower_order_final": False,
                       "final_sigmas_type": "sigma_min"},
    "order1": {**SCALED, "solver_order": 1, "timestep_spacing": "trailing"},
    "no_lower_final": {**SCALED, "lower_order_final": False, "final_sigmas_type": "sigma_min",
                       "timestep_spacing": "trailing"},
    "lambda_clipped": {"beta_schedule": "squaredcos_cap_v2", "lambda_min_clipped": -5.1},
}

# (kind, config) pairs: configs each scheduler class really receives in use.
PAIRS = {
    "euler": ["sd15", "sdxl", "sd21", "karras", "v_trailing", "linspace", "cosine", "zero_snr",
              "sample_pred", "svd_like", "exponential", "final_sigma_min"],
    "euler-a": ["sd15", "sdxl", "v_trailing", "linspace", "cosine", "zero_snr"],
    "ddim": ["sd21", "sd15", "sdxl", "v_trailing", "linspace", "cosine", "zero_snr", "alpha_one_clip",
             "sample_pred"],
    "dpm++2m": ["sd15", "sdxl", "karras", "v_trailing", "linspace", "cosine", "zero_snr", "sample_pred",
                "exponential", "final_sigma_min", "heun", "euler_at_final", "order1", "no_lower_final",
                "sd15_leading", "lambda_clipped"],
}
SWEEP = [1, 2, 3, 4, 5, 7, 10, 16, 25, 33, 50]
TRAJECTORY_STEPS = [4, 10, 25]
# diffusers' Euler ancestral computes sigma_down = sqrt(sigma_to^2 - sigma_up^2), which rounds
# below zero (NaN samples) when sigma_from dwarfs sigma_to, as with the cosine schedule: the
# Swift port clamps at 0, so this pair is checked for timesteps and sigmas only.
NO_TRAJECTORY = {("euler-a", "cosine")}


def floats(t):
    """float32 values, written with 9 significant digits (exact round trip)."""
    return [float("%.9g" % v) for v in torch.as_tensor(t, dtype=torch.float32).flatten().tolist()]


def make(kind, config):
    return CLASSES[kind].from_config(CONFIGS[config])


def model(scaled, t, offset):
    """The stand-in denoiser: float32 ops in this order, mirrored by the Swift test."""
    return 0.3 * scaled + 0.1 * math.sin(float(t) / 100.0) + offset


def trajectory(kind, config, steps, start, offset, seed, eta):
    s = make(kind, config)
    s.set_timesteps(steps)
    sample = start * s.init_noise_sigma
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    keep = {0, steps - 1}
    records = {}
    for i, t in enumerate(s.timesteps):
        output = model(s.scale_model_input(sample, t), t, offset)
        kwargs = {"generator": generator} if kind in ("euler-a", "ddim") else {}
        if kind == "ddim" and eta:
            kwargs["eta"] = eta
        sample = s.step(output, t, sample, **kwargs).prev_sample
        if i in keep:
            assert torch.isfinite(sample).all(), f"{kind} {config} {steps}: non-finite sample at step {i}"
            records[str(i)] = floats(sample)
    return records


def main():
    start = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1234))
    offset = 0.05 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(99))

    schedules = []
    for kind, configs in PAIRS.items():
        for config in configs:
            for steps in SWEEP:
                s = make(kind, config)
                s.set_timesteps(steps)
                sigmas = floats(s.sigmas) if kind != "ddim" else None
                schedules.append({"kind": kind, "config": config, "steps": steps,
                                  "timesteps": floats(s.timesteps.float()), "sigmas": sigmas,
                                  "init_noise_sigma": float(s.init_noise_sigma)})

    trajectories = []
    for kind, configs in PAIRS.items():
        for config in configs:
            if (kind, config) in NO_TRAJECTORY or config == "lambda_clipped":
                continue
            for steps in TRAJECTORY_STEPS:
                seed = 7 + steps if kind == "euler-a" else None
                trajectories.append({"kind": kind, "config": config, "steps": steps, "seed": seed, "eta": 0.0,
                                     "records": trajectory(kind, config, steps, start, offset, seed, 0.0)})
    for steps in (10, 25):  # DDIM with eta > 0 draws noise like the ancestral sampler
        trajectories.append({"kind": "ddim", "config": "sd15", "steps": steps, "seed": 3, "eta": 0.7,
                             "records": trajectory("ddim", "sd15", steps, start, offset, 3, 0.7)})

    # Training targets (DDPM style: alphas_cumprod indexed by the training timestep).
    clean = torch.randn((2,) + SHAPE[1:], generator=torch.Generator().manual_seed(5))
    noise = torch.randn((2,) + SHAPE[1:], generator=torch.Generator().manual_seed(6))
    timesteps = torch.tensor([10, 777])
    ddim = make("ddim", "sd15")
    training = {"clean": floats(clean), "noise": floats(noise), "timesteps": timesteps.tolist(),
                "noisy": floats(ddim.add_noise(clean, noise, timesteps)),
                "velocity": floats(ddim.get_velocity(clean, noise, timesteps))}

    # img2img: noise the clean latents to the level of inference step 3 of 10.
    inference_noise = []
    for kind, config in (("euler", "sd15"), ("euler-a", "sdxl"), ("ddim", "sd21"), ("dpm++2m", "karras")):
        s = make(kind, config)
        s.set_timesteps(10)
        if hasattr(s, "set_begin_index"):
            s.set_begin_index(3)
        noisy = s.add_noise(clean[:1], noise[:1], s.timesteps[3:4])
        inference_noise.append({"kind": kind, "config": config, "steps": 10, "step": 3, "values": floats(noisy)})

    train_schedule = {}
    for config in ("sd15", "linspace", "cosine", "zero_snr"):
        s = make("euler", config)
        train_schedule[config] = floats(s.alphas_cumprod)

    out = {"diffusers": __import__("diffusers").__version__, "torch": torch.__version__,
           "shape": list(SHAPE), "start": floats(start), "offset": floats(offset), "configs": CONFIGS,
           "schedules": schedules, "trajectories": trajectories, "training": training,
           "inference_noise": inference_noise, "train_schedule": train_schedule}
    path = os.path.join(os.path.dirname(__file__), "..", "Tests", "NestDiffusionTests", "Fixtures",
                        "schedulers.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes;", len(schedules), "schedules,",
          len(trajectories), "trajectories")


if __name__ == "__main__":
    main()
