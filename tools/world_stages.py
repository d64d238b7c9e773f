#!/usr/bin/env python3
"""Carries tools/train_world.sh's progress between machines in a small form.

    python3 tools/world_stages.py save WORK DEST [--without-moments]   # after (part of) a run
    python3 tools/world_stages.py restore DEST WORK   # before running the script again elsewhere

`save` keeps, per stage folder of WORK (vae, clip, unet, critter, bot, ...):
a finished stage's trained files as float16 safetensors plus its configs,
log and `done` marker; an unfinished stage's checkpoint with the weights and
their moving average in float16 and AdamW's moments in bfloat16 (the second
moment reaches 1e-12 and below, under float16's range), plus its log;
`--without-moments` leaves the moments out (half the size: the resumed run
restarts AdamW, zero moments at its step 0). The
data folders are not kept: the script writes them again, byte for byte, from
their seeds. `restore` copies that back; `nest train --resume` reads any of
these dtypes into float32, so a resumed stage continues from rounded weights
and moments (not bit-exactly where it stopped).
"""
import os
import shutil
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

STAGE_FILES = {"log.jsonl", "done", "adapter.json", "config.json"}


def narrow(path, out, moments_bf16, keep_moments=True):
    with safe_open(path, "pt") as f:
        metadata = f.metadata() or {}
        tensors = {}
        for name in f.keys():
            if name.startswith("optimizer.") and not keep_moments:
                continue
            t = f.get_tensor(name)
            if t.dtype == torch.float32:
                bf16 = moments_bf16 and name.startswith("optimizer.")
                t = t.to(torch.bfloat16 if bf16 else torch.float16)
            tensors[name] = t.contiguous()
    save_file(tensors, out, metadata=metadata)


def save(work, dest, keep_moments=True):
    os.makedirs(dest, exist_ok=True)
    for stage in sorted(os.listdir(work)):
        src = os.path.join(work, stage)
        if not os.path.isdir(src) or not os.path.exists(os.path.join(src, "log.jsonl")):
            continue
        target = os.path.join(dest, stage)
        shutil.rmtree(target, ignore_errors=True)
        finished = os.path.exists(os.path.join(src, "done"))
        for root, _, files in os.walk(src):
            rel = os.path.relpath(root, src)
            if rel.startswith("samples"):
                continue
            for name in files:
                path = os.path.join(root, name)
                out = os.path.join(target, rel, name)
                if name == "clip.safetensors":  # the two encoders' files hold the same tensors
                    continue
                if name == "checkpoint.safetensors":
                    if finished:
                        continue
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    narrow(path, out, moments_bf16=True, keep_moments=keep_moments)
                elif name.endswith(".safetensors") and finished:
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    narrow(path, out, moments_bf16=False)
                elif name in STAGE_FILES or (finished and name.endswith(".json")):
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    shutil.copy2(path, out)
        config = os.path.join(work, stage + ".json")
        if os.path.exists(config):
            shutil.copy2(config, os.path.join(dest, stage + ".json"))
        print(f"{stage}: {'finished' if finished else 'checkpoint'} -> {target}")


def restore(dest, work):
    os.makedirs(work, exist_ok=True)
    for stage in sorted(os.listdir(dest)):
        src = os.path.join(dest, stage)
        if not os.path.isdir(src):
            continue
        target = os.path.join(work, stage)
        if os.path.exists(target):
            print(f"{stage}: {target} exists, left as it is")
            continue
        shutil.copytree(src, target)
        print(f"{stage}: restored to {target}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--without-moments"]
    if len(args) != 3 or args[0] not in ("save", "restore") or (args[0] == "restore" and len(args) != len(sys.argv) - 1):
        sys.exit(__doc__)
    if args[0] == "save":
        save(args[1], args[2], keep_moments="--without-moments" not in sys.argv)
    else:
        restore(args[1], args[2])
