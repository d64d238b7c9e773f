"""`accelerate launch -m nest_torch.unet_train --config RUN.json [--resume]`:
trains the base UNet of a diffusers SD-family folder on a frozen VAE and text
encoder, reading the run config and manifest of `nest train unet` and writing
`<output>/unet/` (the model's config and the trained — with `ema`, the averaged —
weights) at every checkpoint: the stage `nest train unet` runs on a CPU, sized for
accelerators. A UNet folder that holds only `config.json` starts from random
weights, so a larger UNet is a config edit away.

The objective is UNetTrainer.swift's: ε or v (the scheduler's prediction_type)
at timesteps uniform over the schedule, captions dropped to "" with
`caption_dropout`, plain or min-SNR-γ weighting, AdamW with warmup and cosine
decay, gradient clipping, the moving average with its warmup, and the
attention localization term (AttentionLocalization.swift). Each sample's
randomness (flip, dropout, timestep, posterior noise, ε) is keyed by (seed,
step, position in the global batch), so a run gives the same weights on 1 or
N processes; the draws are Python's, not the Swift trainer's."""
import argparse
import json
import os
import random
import shutil
import sys
import time

import torch
from accelerate import Accelerator
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

from . import ema
from .attention import cross_attention_paths
from .base import BaseModel
from .data import augment, load_rgb, sample_rng
from .run_folder import checkpoint_folder, load_checkpoint, save_checkpoint
from .step import add_noise
from .train import global_batch
from .unet_config import load_unet_config, read_image_manifest


class LocalizingProcessor:
    """Plain cross-attention that also keeps, with gradients, the heads' mean
    attention of every query to one text position per item (AttentionLocalization.swift)."""

    def __init__(self):
        self.tokens, self.maps = [], []

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q = attn.head_to_batch_dim(attn.to_q(hidden_states))
        k = attn.head_to_batch_dim(attn.to_k(context))
        v = attn.head_to_batch_dim(attn.to_v(context))
        p = attn.get_attention_scores(q, k, attention_mask)  # [B·H, N, T]
        out = attn.batch_to_head_dim(torch.bmm(p, v))
        if encoder_hidden_states is not None and any(t is not None for t in self.tokens):
            b, heads = hidden_states.shape[0], attn.heads
            probabilities = p.view(b, heads, p.shape[1], p.shape[2])
            columns = [probabilities[i, :, :, t] if t is not None else probabilities.new_zeros(probabilities.shape[1:3])
                       for i, t in enumerate(self.tokens)]
            self.maps.append(torch.stack(columns).mean(dim=1))  # [B, N]
        return attn.to_out[1](attn.to_out[0](out))


def localization_loss(maps, tokens, masks):
    """Per map and counted item: mean attention to the noun outside the subject minus
    the mean inside (mask coverage per cell), summed and divided by the items counted;
    None when no item counts. `masks`: [B, H, W] in 0...1."""
    b, h, w = masks.shape
    terms, counted = [], 0
    for m in maps:
        n = m.shape[1]
        side = round(n ** 0.5)
        if side * side != n or h % side or w % side:
            continue
        cover = torch.nn.functional.avg_pool2d(masks[:, None], (h // side, w // side))[:, 0].reshape(b, n)
        inside = cover.sum(dim=1, keepdim=True)
        outside = n - inside
        valid = torch.tensor([t is not None for t in tokens], device=cover.device)[:, None] & (inside > 0.5) & (outside > 0.5)
        weights = torch.where(valid, (1 - cover) / outside.clamp_min(1e-9) - cover / inside.clamp_min(1e-9),
                              torch.zeros_like(cover))
        terms.append((m.float() * weights).sum())
        counted += int(valid[:, 0].sum())
    return sum(terms) / counted if counted else None


def snr_weights(alphas, predicts_velocity, gamma):
    """min-SNR-γ weight of each sample (LossWeighting.swift): min(SNR, γ)/SNR for ε,
    min(SNR, γ)/(SNR + 1) for v; ε at SNR 0 weighs 1."""
    snr = (alphas.sqrt() / (1 - alphas).sqrt()) ** 2
    capped = torch.minimum(snr, torch.full_like(snr, gamma))
    if predicts_velocity:
        return capped / (snr + 1)
    return torch.where(snr == 0, torch.ones_like(snr), capped / snr.clamp_min(1e-30))


class UNetRun:
    def __init__(self, config_path, resume=False, accelerator=None):
        self.config = c = load_unet_config(config_path)
        self.accelerator = acc = accelerator or Accelerator()
        if c.batch_size % acc.num_processes:
            raise ValueError(f"batch_size {c.batch_size} is not a multiple of the {acc.num_processes} processes")
        self.output = c.resolve(c.output)
        self.checkpoint_dir = checkpoint_folder(self.output, resume)
        if acc.is_main_process and c.sample_every:
            print("warning: sample_every is a `nest train unet` feature the recipe does not have; "
                  "sample the written unet/ with `nest generate`", file=sys.stderr)
        if acc.is_main_process and c.precision == "bf16" and acc.mixed_precision != "bf16":
            print("warning: \"precision\": \"bf16\" — this recipe takes its precision from "
                  "`accelerate launch --mixed_precision bf16`; running in float32", file=sys.stderr)
        localizing = c.attention_localization is not None
        self.records, problems = read_image_manifest(c.resolve(c.data), need_masks=localizing)
        self.validation = read_image_manifest(c.resolve(c.validation_data))[0] if c.validation_data else []
        if acc.is_main_process:
            os.makedirs(self.output, exist_ok=True)
            for line, problem in problems:
                print(f"{c.data}: line {line}: {problem} (skipped)", file=sys.stderr)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(acc.mixed_precision, torch.float32)
        self.model_folder = c.resolve(c.model)
        self.base = base = BaseModel(self.model_folder, dtype=dtype, device=acc.device, for_adapters=False)
        channels = UNet2DConditionModel.load_config(os.path.join(self.model_folder, "unet"))["in_channels"]
        if base.vae.config.latent_channels != channels:
            raise ValueError(f"the UNet takes {channels} channels but the VAE's latents have {base.vae.config.latent_channels}")
        prediction = base.scheduler_config.get("prediction_type", "epsilon")
        if prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"UNet training: prediction_type '{prediction}' is not supported (epsilon or v_prediction)")
        self.unet = self._load_unet(c.seed).to(acc.device)
        self.unet.train()
        self.localized_ids = set()
        for word in (c.attention_localization or {}).get("words", []):
            ids = base.tokenizers[0](word, add_special_tokens=False).input_ids
            if len(ids) != 1:
                raise ValueError(f"attention_localization: '{word}' is {len(ids)} tokens for this tokenizer; each word must be one")
            self.localized_ids.add(ids[0])
        self.recorders = {}
        if localizing:
            for path in cross_attention_paths(self.unet):
                self.recorders[path[: -len(".processor")]] = LocalizingProcessor()
            processors = dict(self.unet.attn_processors)
            for path in self.recorders:
                processors[path + ".processor"] = self.recorders[path]
            self.unet.set_attn_processor(processors)
        self.optimizer = torch.optim.AdamW(self.unet.parameters(), lr=c.learning_rate, betas=(0.9, 0.999), eps=1e-8,
                                           weight_decay=c.weight_decay)
        self.module, self.optimizer = acc.prepare(self.unet, self.optimizer)
        self.ema = [p.detach().clone() for p in self.unet.parameters()] if c.ema is not None else None
        self.updates = 0
        self.posteriors = {}
        self.step = 0
        if resume:
            self.load_checkpoint()

    def _load_unet(self, seed):
        """The model's UNet: its weights when the folder has them, else random ones from its config."""
        folder = os.path.join(self.model_folder, "unet")
        has_weights = any(n.startswith("diffusion_pytorch_model") for n in os.listdir(folder))
        if has_weights:
            return UNet2DConditionModel.from_pretrained(folder, torch_dtype=torch.float32)
        torch.manual_seed(seed)
        return UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder))

    def load_checkpoint(self):
        state = load_checkpoint(self.accelerator, self.checkpoint_dir, self.ema)
        self.step, self.updates = state["step"], state["updates"]

    def posterior(self, path, flipped):
        """(mean, std) of the frozen VAE's posterior for an image, encoded once per (image, flip)."""
        key = (path, flipped)
        if key not in self.posteriors:
            pixels, _ = augment(load_rgb(path), self.config.resolution, random.Random(0), crop_scale=(1, 1),
                                crop_ratio=(1, 1), flip=False, jitter=0, flipped=flipped)
            with torch.no_grad():
                dist = self.base.vae.encode((pixels[None] * 2 - 1).to(self.accelerator.device, self.base.vae.dtype)).latent_dist
            self.posteriors[key] = (dist.mean[0].float(), dist.std[0].float())
        return self.posteriors[key]

    def mask(self, record):
        r = self.config.resolution
        m = load_rgb(record.mask)[0]
        if m.shape != (r, r):
            raise ValueError(f"line {record.line}: mask is {m.shape[1]}×{m.shape[0]}, the images are trained at {r}×{r}")
        return m

    def prepare(self, step):
        """This process's slice of the global batch at `step`: noisy latents, targets, conditioning."""
        c, acc, base = self.config, self.accelerator, self.base
        per = c.batch_size // acc.num_processes
        indices = global_batch(step, c.batch_size, len(self.records), c.seed)
        positions = range(acc.process_index * per, (acc.process_index + 1) * per)
        scale = base.vae.config.scaling_factor
        z0, eps, timesteps, captions, masks = [], [], [], [], []
        for p in positions:
            record, rng = self.records[indices[p]], sample_rng(c.seed, step, p)
            # Draw order: flip, caption dropout, timestep, then the noise from a generator of its own.
            flipped = c.flip and rng.random() < 0.5
            captions.append("" if rng.random() < c.caption_dropout else record.caption)
            timesteps.append(rng.randrange(base.noise.config.num_train_timesteps))
            generator = torch.Generator().manual_seed(rng.getrandbits(63))
            mean, std = self.posterior(record.image, flipped)
            z0.append((mean + std * torch.randn(mean.shape, generator=generator).to(mean.device)) * scale)
            eps.append(torch.randn(mean.shape, generator=generator))
            if self.recorders:
                masks.append(self.mask(record))
        z0 = torch.stack(z0)
        t = torch.tensor(timesteps, device=acc.device)
        noisy, target = add_noise(base, z0, torch.stack(eps).to(acc.device), t)
        context, pooled = base.encode_prompts(captions)
        batch = {"noisy": noisy, "target": target, "timesteps": t, "context": context, "captions": captions}
        if pooled is not None:
            batch["added"] = {"text_embeds": pooled, "time_ids": base.time_ids(len(captions), c.resolution)}
        if self.recorders:
            ids = base.ids(base.tokenizers[0], captions).tolist()
            batch["tokens"] = [None if not caption else next((i for i, x in enumerate(row) if x in self.localized_ids), None)
                               for caption, row in zip(captions, ids)]
            batch["masks"] = torch.stack(masks).to(acc.device)
        return batch

    def loss(self, batch):
        """(total loss, diffusion loss, localization term or None) of the module on `batch`."""
        c = self.config
        for recorder in self.recorders.values():
            recorder.tokens, recorder.maps = batch.get("tokens", []), []
        prediction = self.module(batch["noisy"], batch["timesteps"], batch["context"],
                                 added_cond_kwargs=batch.get("added")).sample.float()
        per_sample = ((prediction - batch["target"].float()) ** 2).flatten(1).mean(dim=1)
        if c.gamma is not None:
            alphas = self.base.alphas_cumprod(batch["timesteps"]).float()
            per_sample = per_sample * snr_weights(alphas, self.base.predicts_velocity, c.gamma)
        diffusion = per_sample.mean()
        term = None
        if self.recorders:
            maps = [m for r in self.recorders.values() for m in r.maps]
            term = localization_loss(maps, batch["tokens"], batch["masks"])
        total = diffusion if term is None else diffusion + c.attention_localization["weight"] * term
        return total, diffusion, term

    def train_step(self):
        """One optimizer update; returns the global mean diffusion loss and the localization term."""
        c, acc = self.config, self.accelerator
        batch = self.prepare(self.step)
        with acc.autocast():
            total, diffusion, term = self.loss(batch)
        acc.backward(total)
        acc.clip_grad_norm_(self.unet.parameters(), c.gradient_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = c.rate(self.updates)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.updates += 1
        if self.ema is not None:
            ema.update(self.ema, self.unet.parameters(), c.ema_decay(self.updates))
        self.step += 1
        loss = acc.reduce(diffusion.detach().float(), reduction="mean").item()
        return loss, (None if term is None else float(term.detach()))

    def swapped_in_average(self):
        """Context: the moving average in the UNet's weights (what sampling uses), the trained ones restored after."""
        return ema.swapped_in(self.unet.parameters(), self.ema)

    @torch.no_grad()
    def validation_loss(self):
        """Mean ε-units error over `validation_data` with the averaged weights: record k's
        timestep and noise come from seed k alone, posterior mean, no dropout (UNetValidation.swift's measure)."""
        if not self.validation:
            return None
        c, base, acc = self.config, self.base, self.accelerator
        total = 0.0
        for start in range(0, len(self.validation), c.batch_size):
            record_set = self.validation[start:start + c.batch_size]
            z0, eps, timesteps = [], [], []
            for k, record in enumerate(record_set, start=start):
                generator = torch.Generator().manual_seed(k * 0x9E3779B9 + 17)
                timesteps.append(int(torch.randint(base.noise.config.num_train_timesteps, (1,), generator=generator)))
                mean, _ = self.posterior(record.image, False)
                z0.append(mean * base.vae.config.scaling_factor)
                eps.append(torch.randn(mean.shape, generator=generator).to(mean.device))
            t = torch.tensor(timesteps, device=acc.device)
            noisy, _ = add_noise(base, torch.stack(z0), torch.stack(eps), t)
            context, pooled = base.encode_prompts([r.caption for r in record_set])
            added = {"text_embeds": pooled, "time_ids": base.time_ids(len(record_set), c.resolution)} if pooled is not None else None
            for recorder in self.recorders.values():
                recorder.tokens, recorder.maps = [], []
            with self.swapped_in_average():
                prediction = self.unet(noisy, t, context, added_cond_kwargs=added).sample.float()
            if base.predicts_velocity:
                a = base.alphas_cumprod(t).float().view(-1, 1, 1, 1)
                prediction = a.sqrt() * prediction + (1 - a).sqrt() * noisy
            total += float(((prediction - torch.stack(eps)) ** 2).mean()) * len(record_set)
        return total / len(self.validation)

    def save_unet(self):
        """`<output>/unet/`: the model's UNet config and the (averaged) weights, written atomically."""
        folder = os.path.join(self.output, "unet")
        staging = folder + ".tmp"
        os.makedirs(staging, exist_ok=True)
        shutil.copyfile(os.path.join(self.model_folder, "unet", "config.json"), os.path.join(staging, "config.json"))
        with self.swapped_in_average():
            weights = {k: v.detach().float().cpu().clone().contiguous() for k, v in self.unet.state_dict().items()}
        save_file(weights, os.path.join(staging, "diffusion_pytorch_model.safetensors"))
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.replace(staging, folder)

    def save_checkpoint(self):
        save_checkpoint(self.accelerator, self.checkpoint_dir,
                        {"step": self.step, "updates": self.updates, "seed": self.config.seed}, self.ema, self.save_unet)

    def run(self, stop_after=None):
        """Trains until `steps` (or `stop_after` more steps, for tests)."""
        c, acc = self.config, self.accelerator
        start, first = time.time(), self.step
        log = open(os.path.join(self.output, "log.jsonl"), "a") if acc.is_main_process else None
        while self.step < c.steps and (stop_after is None or self.step - first < stop_after):
            loss, term = self.train_step()
            rate = (self.step - first) * c.batch_size / max(time.time() - start, 1e-9)
            if log and (self.step % c.log_every == 0 or self.step == c.steps):
                entry = {"step": self.step, "loss": round(loss, 6), "lr": c.rate(self.updates - 1),
                         "samples_per_s": round(rate, 3), "processes": acc.num_processes,
                         "epoch": (self.step * c.batch_size - 1) // len(self.records)}
                if term is not None:
                    entry["localization"] = round(term, 6)
                if torch.cuda.is_available():
                    entry["max_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                log.write(json.dumps(entry) + "\n")
                log.flush()
            if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                self.save_checkpoint()
                held_out = self.validation_loss() if acc.is_main_process else None
                if log and held_out is not None:
                    log.write(json.dumps({"step": self.step, "validation_loss": round(held_out, 6)}) + "\n")
                    log.flush()
        if log:
            log.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even with accelerators present")
    args = parser.parse_args(argv)
    UNetRun(args.config, resume=args.resume, accelerator=Accelerator(cpu=True) if args.cpu else None).run()


if __name__ == "__main__":
    main()
