#!/usr/bin/env python3
"""The identity objective of `nest train image-encoder`, in PyTorch, for side-by-side checks.

Fine-tunes a world image encoder so that two photos of one individual (any two of its
scenes and references, drawn per step) are positives and every other individual in the
batch a negative: InfoNCE both ways over the projected embeddings, temperature 0.1, AdamW
with warmup and cosine decay. Writes OUT/model.safetensors in the image_encoder layout
(+ config.json), which an adapter can read as the model's image_encoder/.

--trait-weight W adds a world-only supervision: a linear head from the embedding must
predict each individual's standardized trait vector (identities.json; hues as cosine and
sine, categorical traits one-hot), mean squared error times W.

  HF_HUB_OFFLINE=1 python3 tools/identity_encoder_torch.py --data runs/w3/data-critter-pm \
      --encoder runs/w3/model/image_encoder --out runs/idenc/enc1 --steps 800
"""
import argparse, json, os, random, shutil, time
import numpy as np, torch, torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)

ap = argparse.ArgumentParser()
ap.add_argument("--data", nargs="+", required=True)
ap.add_argument("--encoder", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--steps", type=int, default=800)
ap.add_argument("--batch", type=int, default=96)
ap.add_argument("--lr", type=float, default=3e-4)
ap.add_argument("--temperature", type=float, default=0.1)
ap.add_argument("--trait-weight", type=float, default=0.0)
a = ap.parse_args()
torch.manual_seed(0); random.seed(0)
torch.set_num_threads(int(os.environ.get("THREADS", "2")))

people = {}
traits = {}
def trait_vector(t):
    v = []
    for k in sorted(t):
        if k in ("domain", "markingSeed"): continue
        x = t[k]
        if k == "marking": v += [float(x == c) for c in ("none", "patch", "spots", "stripes")]
        elif k in ("appendageStyle", "limbStyle"): v += [float(x == c) for c in (0, 1, 2)]
        elif k.endswith("Hue"): v += [np.cos(np.radians(x)), np.sin(np.radians(x))]
        else: v.append(float(x))
    return v
for d in a.data:
    ids = json.load(open(os.path.join(d, "identities.json")))
    for line in open(os.path.join(d, "manifest.jsonl")):
        r = json.loads(line)
        key = (d, r["domain"], r["identity"])
        if key not in traits: traits[key] = trait_vector(ids[r["identity"]])
        p = people.setdefault(key, set())
        p.add(os.path.join(d, r["image"]))
        for ref in r["references"]:
            p.add(os.path.join(d, ref))
keys = list(people)
tv = torch.tensor([traits[k] for k in keys], dtype=torch.float32)
tv = (tv - tv.mean(0)) / (tv.std(0) + 1e-6)
people = [sorted(people[k]) for k in keys]
print(len(people), "individuals,", sum(map(len, people)), "images")
cache = {}
def load(path):
    if path not in cache:
        cache[path] = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    return cache[path]

config = CLIPVisionConfig.from_pretrained(a.encoder)
model = CLIPVisionModelWithProjection(config)
state = load_file(os.path.join(a.encoder, "model.safetensors"))
missing, unexpected = model.load_state_dict(state, strict=False)
print("missing", [k for k in missing if "position_ids" not in k], "unexpected", unexpected)
head = torch.nn.Linear(config.projection_dim, tv.shape[1])
opt = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=a.lr, weight_decay=0.01)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / 50) * 0.5 * (1 + np.cos(np.pi * min(s, a.steps) / a.steps)))
t0 = time.time()
for step in range(a.steps):
    chosen = random.sample(range(len(people)), a.batch)
    batch = [people[i] for i in chosen]
    views = [random.sample(p, 2) for p in batch]
    x = torch.stack([load(v[0]) for v in views] + [load(v[1]) for v in views])
    x = (x - MEAN) / STD
    raw = model(pixel_values=x).image_embeds
    trait_loss = F.mse_loss(head(raw), torch.cat([tv[chosen], tv[chosen]]))
    emb = F.normalize(raw, dim=-1)
    e1, e2 = emb[: a.batch], emb[a.batch:]
    logits = e1 @ e2.T / a.temperature
    target = torch.arange(a.batch)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) + a.trait_weight * trait_loss
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sched.step()
    if step % 25 == 0 or step == a.steps - 1:
        acc = (logits.argmax(1) == target).float().mean().item()
        print(f"step {step} loss {loss.item():.3f} traits {trait_loss.item():.3f} acc {acc:.2f} {time.time() - t0:.0f}s", flush=True)
os.makedirs(a.out, exist_ok=True)
save_file({k: v.contiguous() for k, v in model.state_dict().items() if "position_ids" not in k}, os.path.join(a.out, "model.safetensors"))
shutil.copy(os.path.join(a.encoder, "config.json"), a.out)
