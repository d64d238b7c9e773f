"""What both stages of the recipe do with their output folder: refuse to write over
a run unless resuming, and keep one resumable checkpoint, replaced atomically (a kill
while saving keeps the previous one)."""
import json
import os
import shutil

import torch


def checkpoint_folder(output, resume):
    """`output/checkpoint`, after checking that the run may start (or resume) there."""
    folder = os.path.join(output, "checkpoint")
    if os.path.isdir(folder) and not resume:
        raise ValueError(f"{output} already holds a run; pass --resume to continue it (or choose another output)")
    if resume and not os.path.isdir(folder):
        raise ValueError(f"--resume: no checkpoint at {folder}")
    return folder


def save_checkpoint(accelerator, folder, state, ema=None, written=None):
    """The accelerate state plus `state.json` (and `ema.pt`) into `folder`, atomically;
    then `written()` on the main process (the stage's own files)."""
    staging = folder + ".tmp"
    accelerator.save_state(staging)
    if accelerator.is_main_process:
        with open(os.path.join(staging, "state.json"), "w") as f:
            json.dump(state, f)
        if ema is not None:
            torch.save([t.cpu() for t in ema], os.path.join(staging, "ema.pt"))
        old = folder + ".old"
        if os.path.isdir(folder):
            os.replace(folder, old)
        os.replace(staging, folder)
        shutil.rmtree(old, ignore_errors=True)
        if written is not None:
            written()
    accelerator.wait_for_everyone()


def load_checkpoint(accelerator, folder, ema=None):
    """Restores the accelerate state (and the EMA shadows in place); returns `state.json`."""
    accelerator.load_state(folder)
    with open(os.path.join(folder, "state.json")) as f:
        state = json.load(f)
    if ema is not None:
        for shadow, value in zip(ema, torch.load(os.path.join(folder, "ema.pt"))):
            shadow.copy_(value)
    return state
