"""`accelerate launch -m nest_torch.train --config RUN.json [--resume]`:
trains a subject adapter (nested, ip-adapter or single-token) on a frozen
diffusers SD-family model, reading the run config and manifest of
`nest train adapter` and writing our adapter format at every checkpoint.

`training.batch_size` is the global batch of one micro-step: every process
takes its slice of it, and each sample's randomness (dropout, reference,
augmentation, noise, timestep) is keyed by (seed, step, position in the global
batch), so a run gives the same weights on 1 or N processes."""
import argparse
import contextlib
import json
import os
import sys
import time

import torch
from accelerate import Accelerator
from transformers import CLIPVisionModel

from .adapter import PersonalizationAdapter, make_config
from .attention import cross_attention_paths
from . import ema
from .base import BaseModel
from .config import load_run_config, read_manifest
from .data import RecordLoader, sample_rng
from .run_folder import checkpoint_folder, load_checkpoint, save_checkpoint
from .step import bound, loss_of, prepare


def build_adapter(config, base, seed):
    """The adapter a run config describes, sized from the base model (AdapterTrainingRun.swift)."""
    spec, r = config.adapter, config.adapter["resampler"]
    kind = spec.get("kind", "nested")
    vision = base.image_encoder.config
    unet = base.unet
    layers = []
    for path in cross_attention_paths(unet):
        module = unet.get_submodule(path[: -len(".processor")])
        layers.append({"path": path, "width": module.to_q.out_features})
    resampler = {"embedding_dim": vision.hidden_size, "width": r["width"],
                 "output_dim": r.get("output_dim") or base.cross_attention_dim, "depth": r["depth"], "heads": r["heads"],
                 "head_dim": r.get("head_dim") or 64, "queries": r["queries"], "ff_mult": r.get("ff_mult") or 4}
    tuned = bool(spec.get("train_image_encoder"))
    adapter_config = make_config(kind, spec["placeholder_token"], spec["class_word"], vision.hidden_size,
                                 vision.image_size, resampler, layers, context_width=base.cross_attention_dim,
                                 feature_layer=spec.get("feature_layer", -2), tuned=tuned,
                                 nested_value=spec.get("nested_value"))
    torch.manual_seed(seed)
    adapter = PersonalizationAdapter(adapter_config)
    if adapter_config.get("nested_value") == "add":
        # v* starts at zero, so the first step is the base model's and the token keeps its class value.
        with torch.no_grad():
            for projection in adapter.layers:
                projection.to_v.weight.zero_()
    if tuned:
        # Starts from the model's encoder; only the adapter's copy trains.
        own = CLIPVisionModel(vision)
        own.vision_model.load_state_dict(base.image_encoder.vision_model.state_dict())
        adapter.attach_image_encoder(own.float())
    return adapter


def global_batch(step, batch_size, count, seed):
    """Sample indices of micro-step `step`: a fresh seeded shuffle every epoch, so
    the step alone says where the data is (no position to save for a resume)."""
    out = []
    for g in range(step * batch_size, (step + 1) * batch_size):
        epoch, position = divmod(g, count)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        out.append(int(order[position]))
    return out


class Run:
    def __init__(self, config_path, resume=False, gradient_checkpointing=False, accelerator=None):
        self.config = c = load_run_config(config_path)
        self.options = o = c.training
        self.accelerator = acc = accelerator or Accelerator()
        if o.batch_size % acc.num_processes:
            raise ValueError(f"training.batch_size {o.batch_size} is not a multiple of the {acc.num_processes} processes")
        self.output = c.resolve(c.output)
        self.checkpoint_dir = checkpoint_folder(self.output, resume)
        if acc.is_main_process and (c.sample_every or c.validation_batches):
            print("warning: sample_every and validation_batches are `nest train adapter` features the recipe "
                  "does not have; sample a checkpoint with python -m nest_torch.sample", file=sys.stderr)
        self.samples, problems = read_manifest(c.resolve(c.data), c.adapter["placeholder_token"], c.bad_records)
        if acc.is_main_process:
            os.makedirs(self.output, exist_ok=True)
            for line, problem in problems:
                print(f"{c.data}: line {line}: {problem} (skipped)", file=sys.stderr)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(acc.mixed_precision, torch.float32)
        self.base = base = BaseModel(c.resolve(c.model), dtype=dtype, device=acc.device)
        base.add_placeholder(c.adapter["placeholder_token"], c.adapter["class_word"])
        if gradient_checkpointing:
            base.unet.enable_gradient_checkpointing()
        self.adapter = build_adapter(c, base, o.seed)
        self.optimizer = torch.optim.AdamW(self.adapter.parameters(), lr=o.learning_rate, betas=(0.9, 0.999),
                                           eps=1e-8, weight_decay=o.weight_decay)
        self.module, self.optimizer = acc.prepare(self.adapter, self.optimizer)
        self.ema = [p.detach().clone() for p in self.adapter.parameters()] if o.ema is not None else None
        self.loader = RecordLoader(self.samples, o, base.clip_crop_size(), base.image_processing)
        self.step = 0
        if resume:
            self.load_checkpoint()

    def load_checkpoint(self):
        self.step = load_checkpoint(self.accelerator, self.checkpoint_dir, self.ema)["step"]

    def local_items(self, step):
        """This process's slice of the global batch: (items, their generators)."""
        o, acc = self.options, self.accelerator
        per = o.batch_size // acc.num_processes
        indices = global_batch(step, o.batch_size, len(self.samples), o.seed)
        positions = range(acc.process_index * per, (acc.process_index + 1) * per)
        rngs = [sample_rng(o.seed, step, p) for p in positions]
        return [self.loader.item(indices[p], rng) for p, rng in zip(positions, rngs)], rngs

    def train_step(self, batch=None):
        """One micro-step; an optimizer update every `gradient_accumulation` of them.
        Returns the global mean loss. `batch`: a prepared batch to use instead of
        the data's (the parity fixtures feed fixed noise and timesteps this way)."""
        o, acc = self.options, self.accelerator
        if batch is None:
            items, rngs = self.local_items(self.step)
            batch = prepare(self.base, self.adapter, items, rngs, o)
        update = (self.step + 1) % o.gradient_accumulation == 0
        sync = contextlib.nullcontext() if update else acc.no_sync(self.module)
        with sync, bound(self.base, self.adapter, batch, self.module) as run:
            with acc.autocast():
                loss = loss_of(run(), batch)
            acc.backward(loss / o.gradient_accumulation)
        if update:
            if o.gradient_clip is not None:
                acc.clip_grad_norm_(self.adapter.parameters(), o.gradient_clip)
            for group in self.optimizer.param_groups:
                group["lr"] = o.rate(self.step // o.gradient_accumulation)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                ema.update(self.ema, self.adapter.parameters(), o.ema)
        self.step += 1
        return acc.reduce(loss.detach().float(), reduction="mean").item()

    def save_checkpoint(self):
        """Resumable state (atomically replaced) and the adapter in our format."""
        save_checkpoint(self.accelerator, self.checkpoint_dir, {"step": self.step, "seed": self.options.seed},
                        self.ema, self.save_adapter)

    def save_adapter(self):
        self.adapter.save(os.path.join(self.output, "adapter.json"))
        if self.ema is not None:
            with ema.swapped_in(self.adapter.parameters(), self.ema):
                self.adapter.save(os.path.join(self.output, "adapter-ema.json"))

    def run(self, stop_after=None):
        """Trains until `training.steps` (or `stop_after` micro-steps, for tests)."""
        c, o, acc = self.config, self.options, self.accelerator
        start, first = time.time(), self.step
        log = open(os.path.join(self.output, "log.jsonl"), "a") if acc.is_main_process else None
        while self.step < o.steps and (stop_after is None or self.step - first < stop_after):
            loss = self.train_step()
            rate = (self.step - first) * o.batch_size / max(time.time() - start, 1e-9)
            if log and (self.step % c.log_every == 0 or self.step == o.steps):
                entry = {"step": self.step, "loss": round(loss, 6), "lr": o.rate((self.step - 1) // o.gradient_accumulation),
                         "samples_per_s": round(rate, 3), "processes": acc.num_processes,
                         "epoch": (self.step * o.batch_size - 1) // len(self.samples)}
                if torch.cuda.is_available():
                    entry["max_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                log.write(json.dumps(entry) + "\n")
                log.flush()
            if self.step % c.checkpoint_every == 0 or self.step == o.steps:
                self.save_checkpoint()
        if log:
            log.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute UNet activations in the backward pass (less memory, ~30%% slower)")
    parser.add_argument("--cpu", action="store_true",
                        help="run on CPU even with accelerators present; with `accelerate launch --multi_gpu "
                             "--num_processes N` this is data parallel over N CPU processes (gloo)")
    args = parser.parse_args(argv)
    run = Run(args.config, resume=args.resume, gradient_checkpointing=args.gradient_checkpointing,
              accelerator=Accelerator(cpu=True) if args.cpu else None)
    run.run()


if __name__ == "__main__":
    main()
