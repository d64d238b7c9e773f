#!/usr/bin/env python3
"""Are a world model's samples as sharp and as varied as the world itself?

An underfit diffusion model draws the average of what a caption allows: soft
edges, and a subject whose colours are a blend of many individuals'. This
diagnostic measures both against the ground truth, with no learned metric:

- it picks contexts (domain + every scene aspect) that the dataset renders for
  at least SEEDS different individuals, and one caption of each that names no
  trait of the subject (so the caption allows any individual);
- it draws that caption with `nest generate` at SEEDS seeds;
- per context it reports, for the samples and for SEEDS truths of that context:
  sharpness, the mean absolute 4-neighbour Laplacian (0-255 scale), and
  and diversity, the mean absolute pixel difference between every pair of
  images.

A model that draws crisp, distinct individuals scores near the truth in both;
one that draws the blend scores low in sharpness, and one that draws the same
picture at every seed low in diversity.

    python3 tools/sample_diversity.py --model runs/w3/model \\
        --data runs/w3/data/manifest.jsonl [--contexts 6] [--seeds 8]

Takes about a second per image for the world's models.
"""
import argparse
import collections
import itertools
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image


def load(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float32)


def sharpness(image):
    lap = (4 * image[1:-1, 1:-1] - image[:-2, 1:-1] - image[2:, 1:-1]
           - image[1:-1, :-2] - image[1:-1, 2:])
    return float(np.abs(lap).mean())


def diversity(images):
    return float(np.mean([np.abs(a - b).mean() for a, b in itertools.combinations(images, 2)]))


def plain_caption(record):
    """The record's caption if it names no trait of its subject, else None: trait
    words stand between the article and the noun ("a pale olive critter"), so a
    caption that says "a critter" (or "a bot") of its own subject names none."""
    caption, domain = record["caption"], record["domain"]
    return caption if f" a {domain}" in f" {caption}" else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="a dataset's manifest.jsonl")
    parser.add_argument("--contexts", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5)
    parser.add_argument("--nest", default=".build/release/nest")
    parser.add_argument("--sheet", help="write a PNG: per context a row of truths, then a row of samples")
    args = parser.parse_args()

    root = os.path.dirname(os.path.abspath(args.data))
    groups = collections.defaultdict(list)
    with open(args.data) as f:
        for line in f:
            record = json.loads(line)
            key = (record["domain"], json.dumps(record["context"], sort_keys=True))
            groups[key].append(record)
    # Largest groups first, alternating domains; each needs a trait-free caption.
    chosen = []
    for key, records in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        individuals = {r["identity"] for r in records}
        caption = next((c for c in map(plain_caption, records) if c), None)
        if len(individuals) >= args.seeds and caption:
            chosen.append((key, records, caption))
    by_domain = collections.defaultdict(list)
    for item in chosen:
        by_domain[item[0][0]].append(item)
    picks = [item for pair in itertools.zip_longest(*by_domain.values()) for item in pair if item]
    picks = picks[:args.contexts]
    if not picks:
        sys.exit(f"no context of {args.data} has {args.seeds} individuals and a caption without trait words")

    rows, sheet = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for index, ((domain, _), records, caption) in enumerate(picks):
            out = os.path.join(tmp, f"c{index}.png")
            subprocess.run([args.nest, "generate", "--model", args.model, "--prompt", caption,
                            "--steps", str(args.steps), "--guidance", str(args.guidance), "--seed", "1",
                            "--count", str(args.seeds), "-o", out, "--overwrite"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            samples = [load(os.path.join(tmp, f"c{index}-{k + 1}.png")) for k in range(args.seeds)]
            seen, truths = set(), []
            for record in records:
                if record["identity"] in seen:
                    continue
                seen.add(record["identity"])
                truths.append(load(os.path.join(root, record["image"])))
                if len(truths) == args.seeds:
                    break
            row = {"domain": domain, "caption": caption,
                   "truth_sharpness": np.mean([sharpness(t) for t in truths]),
                   "sample_sharpness": np.mean([sharpness(s) for s in samples]),
                   "truth_diversity": diversity(truths), "sample_diversity": diversity(samples)}
            rows.append(row)
            sheet.append(np.concatenate(truths, 1))
            sheet.append(np.concatenate(samples, 1))

    keys = ["sharpness", "diversity"]
    print(f"{'context':52s} " + " ".join(f"{k:>17s}" for k in keys))
    print(f"{'':52s} " + " ".join(f"{'truth  sample':>17s}" for _ in keys))
    for row in rows:
        cells = [f"{row['truth_' + k]:8.1f}{row['sample_' + k]:8.1f} "
                 for k in keys]
        print(f"{row['caption'][:52]:52s} " + " ".join(cells))
    means = [f"{np.mean([r['truth_' + k] for r in rows]):8.1f}"
             f"{np.mean([r['sample_' + k] for r in rows]):8.1f} " for k in keys]
    print(f"{'mean over ' + str(len(rows)) + ' contexts':52s} " + " ".join(means))
    if args.sheet:
        Image.fromarray(np.concatenate(sheet, 0).astype(np.uint8)).save(args.sheet)


if __name__ == "__main__":
    main()
