"""How well a world model draws individuals from their trait words alone, in one fixed context.

Takes a dataset written by `nest world dataset --describe 1 --trait-words full --masks --only ...`
with one context (e.g. background=forest,style=flat,accessory=none,companion=no,position=center
and one framing), so every render of an individual differs only by its render seed (the
background's details and the subject's small offsets). For each individual, `nest generate`
draws its first record's caption (the full trait words, no image) with a few seeds; each image
is scored as `nest eval` scores identity, on the subject alone: its distance to each
individual's first render is the mean squared difference of 32×32 box-filtered pixels inside
that render's subject mask, and the true individual should be the nearest (top-1, chance 1 /
individuals); the rank is the fraction of the others farther away (0.5 by chance). The
validation row scores each individual's second render the same way (the truth at an unseen
render seed) and, passed through the model's autoencoder (diffusers, posterior mean), the
ceiling the autoencoder leaves any generation; the last row scores generations against the
wrong individual (chance).

    python3 tools/score_words_drawing.py --model runs/sw/model --data runs/sw/held --seeds 2 --out runs/sw/score
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image


def features(path, mode="RGB"):
    a = np.asarray(Image.open(path).convert(mode), dtype=np.float32)
    s = a.shape[0] // 32
    return a.reshape(32, s, 32, s, -1).mean(axis=(1, 3))


def score(images, gallery, masks):
    """Top-1 and rank of each (image, true index) against the gallery, inside each entry's mask."""
    top, ranks = [], []
    for path, truth in images:
        d = (((gallery - features(path)[None]) ** 2).mean(axis=3) * masks).sum(axis=(1, 2)) / masks.sum(axis=(1, 2))
        top.append(float(np.argmin(d) == truth))
        others = np.delete(d, truth)
        ranks.append(float(np.mean(others > d[truth])))
    return np.mean(top), np.mean(ranks), np.std(ranks) / np.sqrt(len(ranks))


def autoencoded(model, images, folder):
    """Each image encoded and decoded by the model folder's VAE, written to `folder`."""
    import torch
    from diffusers import AutoencoderKL
    os.makedirs(folder, exist_ok=True)
    vae = AutoencoderKL.from_pretrained(os.path.join(model, "vae")).eval()
    out = []
    for n, (path, truth) in enumerate(images):
        x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
        with torch.no_grad():
            y = vae.decode(vae.encode(x).latent_dist.mean).sample[0]
        target = os.path.join(folder, f"{n:03d}.png")
        Image.fromarray(((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()).save(target)
        out.append((target, truth))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--nest", default=".build/release/nest")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    # Images already in OUT are scored again, not redrawn, but only if drawn with these settings.
    os.makedirs(a.out, exist_ok=True)
    settings = {"model": os.path.abspath(a.model), "data": os.path.abspath(a.data), "seeds": a.seeds,
                "steps": a.steps, "guidance": a.guidance}
    recorded = os.path.join(a.out, "settings.json")
    if os.path.exists(recorded) and json.load(open(recorded)) != settings:
        sys.exit(f"{a.out} holds images drawn with other settings ({recorded}); choose a new folder")
    json.dump(settings, open(recorded, "w"))
    records = [json.loads(line) for line in open(os.path.join(a.data, "manifest.jsonl"))]
    first, second = {}, {}
    for r in records:
        (second if r["identity"] in first else first).setdefault(r["identity"], r)
    ids = sorted(first)
    gallery = np.stack([features(os.path.join(a.data, first[i]["image"])) for i in ids])
    masks = np.stack([features(os.path.join(a.data, first[i]["mask"]), "L")[..., 0] > 127 for i in ids]).astype(np.float32)
    generated = []
    for k, i in enumerate(ids):
        out = os.path.join(a.out, f"{k:03d}.png")
        paths = [out] if a.seeds == 1 else [out.replace(".png", f"-{j}.png") for j in range(1, a.seeds + 1)]
        if not all(os.path.exists(q) for q in paths):
            run = subprocess.run([a.nest, "generate", "--model", a.model, "--prompt", first[i]["caption"],
                                  "--seed", str(1000 + k), "--count", str(a.seeds), "--steps", str(a.steps),
                                  "--guidance", str(a.guidance), "-o", out], capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"nest generate failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}")
        missing = [q for q in paths if not os.path.exists(q)]
        if missing:
            found = sorted(f for f in os.listdir(a.out) if f.startswith(f"{k:03d}"))
            sys.exit(f"expected {missing[0]}; nest wrote {found}")
        generated += [(q, k) for q in paths]
    truth = [(os.path.join(a.data, second[i]["image"]), k) for k, i in enumerate(ids) if i in second]
    shifted = [(q, (k + 1) % len(ids)) for q, k in generated]
    through = autoencoded(a.model, truth, os.path.join(a.out, "vae"))
    rows = [("ground truth, another render", truth), ("the same through the VAE", through),
            ("generated from the trait words", generated),
            ("generated, scored against another individual", shifted)]
    lines = [f"{len(ids)} individuals, chance top-1 {1 / len(ids):.3f}, rank 0.5",
             "| images | n | top-1 | rank (± s.e.) |", "|---|---:|---:|---:|"]
    for name, images in rows:
        t, r, se = score(images, gallery, masks)
        lines.append(f"| {name} | {len(images)} | {t:.3f} | {r:.3f} ± {se:.3f} |")
    text = "\n".join(lines)
    print(text)
    open(os.path.join(a.out, "score.md"), "w").write(text + "\n")


if __name__ == "__main__":
    main()
