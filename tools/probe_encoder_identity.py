#!/usr/bin/env python3
"""How much of an individual a world image encoder sees.

Nested Attention can only carry into a generation what its image encoder
extracts from the reference photo. This diagnostic asks the encoder directly,
on individuals none of the adapters trained on (a dataset written with
`nest world dataset --portraits N`):

  * re-identification: the features of each individual's first reference
    photo against the second reference photo (same framing, another render
    seed) and against its scenes (other framings, backgrounds, styles) of all
    individuals in the set; top-1 of the nearest neighbour by cosine
    similarity of standardized features (chance 1/N);
  * traits: a ridge regression from the features to the renderer's trait
    vector, fitted on another dataset's individuals and scored on these (R^2
    per continuous trait, accuracy per categorical one).

Rows: raw pixels (16x16 box filter, as the identity metric sees them), then
each encoder: a model folder's image_encoder/, or an adapter's safetensors
(its tuned copy under `image_encoder.`). Features: the class token after the
last layer norm ("pooled") and the mean of the patch tokens of the layer the
adapters read ("tokens", hidden_states[-2]).

  HF_HUB_OFFLINE=1 python3 tools/probe_encoder_identity.py --test runs/probe/held64 \
      --fit runs/gen2/data-b --encoder base=runs/w3/model/image_encoder \
      --encoder recipe=runs/w3/model/adapters/critter.safetensors
"""
import argparse
import json
import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import CLIPVisionConfig, CLIPVisionModel

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
CATEGORICAL = {"marking", "appendageStyle", "limbStyle"}


def load_set(folder, domain):
    """Per individual: its reference photos and scenes, in manifest order."""
    people = {}
    with open(os.path.join(folder, "manifest.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec["domain"] != domain:
                continue
            p = people.setdefault(rec["identity"], {"refs": rec["references"], "scenes": []})
            p["scenes"].append(rec["image"])
    traits = json.load(open(os.path.join(folder, "identities.json")))
    ids = sorted(people)
    return folder, ids, [people[i] for i in ids], [traits[i] for i in ids]


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0


def box16(img):
    h, w, c = img.shape
    return img.reshape(16, h // 16, 16, w // 16, c).mean(axis=(1, 3)).ravel()


class Encoder:
    def __init__(self, source, config_dir):
        config = CLIPVisionConfig.from_pretrained(config_dir)
        self.model = CLIPVisionModel(config).eval()
        weights = load_file(source if source.endswith(".safetensors") else os.path.join(source, "model.safetensors"))
        prefix = "image_encoder." if any(k.startswith("image_encoder.") for k in weights) else ""
        head = prefix + "vision_model."
        state = {k[len(head):]: v.float() for k, v in weights.items() if k.startswith(head)}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        missing = [k for k in missing if "position_ids" not in k]
        if missing:
            raise SystemExit(f"{source}: missing {missing[:3]}")

    @torch.no_grad()
    def __call__(self, images):
        x = (np.stack(images) - MEAN) / STD
        out = self.model(pixel_values=torch.from_numpy(x).permute(0, 3, 1, 2), output_hidden_states=True)
        tokens = out.hidden_states[-2][:, 1:].mean(dim=1)
        return {"pooled": out.pooler_output.numpy(), "tokens": tokens.numpy()}


def standardize(a, ref):
    mu, sd = ref.mean(0), ref.std(0) + 1e-6
    z = (a - mu) / sd
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def reid(query, gallery, ref):
    """Top-1 nearest-neighbour re-identification; query[i] and gallery[i] are one individual."""
    q, g = standardize(query, ref), standardize(gallery, ref)
    return float(np.mean(np.argmax(q @ g.T, axis=1) == np.arange(len(q))))


def trait_matrix(traits):
    names = [k for k in sorted(traits[0]) if k not in ("domain", "markingSeed")]
    cols = []
    for n in names:
        v = [t[n] for t in traits]
        if n.endswith("Hue"):  # circular: regress its cosine and sine
            r = np.radians(np.array(v, dtype=np.float64))
            cols += [(n + ".cos", np.cos(r)), (n + ".sin", np.sin(r))]
        else:
            cols.append((n, np.array(v)))
    return cols


def trait_scores(fit_x, fit_traits, test_x, test_traits):
    """The ridge strength is chosen on the last fifth of the fit set (whole individuals), then refitted."""
    cut = (len(fit_traits) * 4 // 5) * (len(fit_x) // len(fit_traits))
    per = len(fit_x) // len(fit_traits)
    best = max((1e-1, 1.0, 10.0, 100.0, 1000.0), key=lambda r: np.mean(list(
        ridge_scores(fit_x[:cut], fit_traits[:cut // per], fit_x[cut:], fit_traits[cut // per:], r).values())))
    return ridge_scores(fit_x, fit_traits, test_x, test_traits, best)


def ridge_scores(fit_x, fit_traits, test_x, test_traits, ridge):
    fit_traits = [t for t in fit_traits for _ in range(len(fit_x) // len(fit_traits))]
    test_traits = [t for t in test_traits for _ in range(len(test_x) // len(test_traits))]
    mu, sd = fit_x.mean(0), fit_x.std(0) + 1e-6
    a, b = (fit_x - mu) / sd, (test_x - mu) / sd
    a1, b1 = np.hstack([a, np.ones((len(a), 1))]), np.hstack([b, np.ones((len(b), 1))])
    solve = np.linalg.solve(a1.T @ a1 + ridge * np.eye(a1.shape[1]), a1.T)
    scores = {}
    for (name, y_fit), (_, y_test) in zip(trait_matrix(fit_traits), trait_matrix(test_traits)):
        base = name.split(".")[0]
        if base in CATEGORICAL:
            classes = sorted(set(y_fit) | set(y_test))
            onehot = np.array([[yy == c for c in classes] for yy in y_fit], dtype=np.float64)
            pred = b1 @ (solve @ onehot)
            scores[base] = float(np.mean(np.array(classes)[pred.argmax(1)] == y_test))
        else:
            y_fit = np.asarray(y_fit, dtype=np.float64)
            pred = b1 @ (solve @ y_fit)
            y_test = np.asarray(y_test, dtype=np.float64)
            r2 = 1 - np.sum((pred - y_test) ** 2) / np.sum((y_test - y_test.mean()) ** 2)
            scores[name] = float(r2)
    return scores


def all_references(extract, folder, people):
    """Every reference photo, individual by individual (the fit set's samples)."""
    n = min(len(p["refs"]) for p in people)
    return np.vstack([extract([pixels(os.path.join(folder, r)) for r in p["refs"][:n]]) for p in people])


def features(extract, folder, people):
    refs0 = extract([pixels(os.path.join(folder, p["refs"][0])) for p in people])
    refs1 = extract([pixels(os.path.join(folder, p["refs"][1])) for p in people])
    scenes = extract([pixels(os.path.join(folder, p["scenes"][0])) for p in people])
    return refs0, refs1, scenes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--test", required=True, help="dataset of individuals to score (with --portraits references)")
    ap.add_argument("--fit", required=True, help="dataset whose individuals fit the trait regression")
    ap.add_argument("--domain", default="critter")
    ap.add_argument("--config", default=None, help="image encoder config folder (default: the first --encoder's model)")
    ap.add_argument("--encoder", action="append", default=[], help="NAME=PATH (image_encoder folder or adapter safetensors)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    test_folder, _, test_people, test_traits = load_set(args.test, args.domain)
    fit_folder, _, fit_people, fit_traits = load_set(args.fit, args.domain)
    print(f"{len(test_people)} test individuals ({args.test}), {len(fit_people)} fit individuals ({args.fit})")
    rows = [("pixels 16x16", {"box16": lambda imgs: np.stack([box16(i) for i in imgs])})]
    config_dir = args.config
    for spec in args.encoder:
        name, path = spec.split("=", 1)
        if config_dir is None:
            config_dir = path if os.path.isdir(path) else None
        if config_dir is None:
            raise SystemExit("--config is needed when the first --encoder is an adapter file")
        enc = Encoder(path, config_dir)
        rows.append((name, {"pooled": lambda imgs, e=enc: e(imgs)["pooled"], "tokens": lambda imgs, e=enc: e(imgs)["tokens"]}))
    print("| features | re-id ref→ref | re-id ref→scene | mean R² (continuous) | worst traits | categorical acc |")
    print("|---|---:|---:|---:|---|---|")
    for name, kinds in rows:
        for kind, extract in kinds.items():
            t0, t1, ts = features(extract, test_folder, test_people)
            f0 = all_references(extract, fit_folder, fit_people)
            ref = np.vstack([t0, t1, ts])
            sc = trait_scores(f0, fit_traits, t0, test_traits)
            cont = {k: v for k, v in sc.items() if k not in CATEGORICAL}
            worst = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cont.items(), key=lambda kv: kv[1])[:3])
            cat = ", ".join(f"{k} {sc[k]:.2f}" for k in sorted(CATEGORICAL))
            print(f"| {name} ({kind}) | {reid(t0, t1, ref):.2f} | {reid(t0, ts, ref):.2f} | "
                  f"{np.mean(list(cont.values())):.2f} | {worst} | {cat} |", flush=True)


if __name__ == "__main__":
    main()
