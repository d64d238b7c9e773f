#!/usr/bin/env python3
"""diffusers' side of tools/bench_load.sh: load a diffusers folder and generate once.

    HF_HUB_OFFLINE=1 python3 tools/bench_load_diffusers.py FOLDER --steps N --size S --out PNG

The same call as `nest generate --model FOLDER --steps N --width S --height S
--guidance 7.5 --seed 1`: float32 on the CPU, Euler as the folder's scheduler
says. Prints the seconds spent in from_pretrained, so the loading share of the
whole-process time (which /usr/bin/time measures) is visible.
"""
import argparse
import time

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    from diffusers import DiffusionPipeline
    start = time.perf_counter()
    pipe = DiffusionPipeline.from_pretrained(args.folder, torch_dtype=torch.float32)
    loaded = time.perf_counter() - start
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a photo of a cat on the beach", num_inference_steps=args.steps, guidance_scale=7.5,
                 height=args.size, width=args.size, generator=torch.Generator().manual_seed(1)).images[0]
    image.save(args.out)
    print(f"diffusers: loaded in {loaded:.1f} s, generated in {time.perf_counter() - start - loaded:.1f} s")


if __name__ == "__main__":
    main()
