#!/usr/bin/env python3
"""Reference outputs for Nested Attention, written straight from the paper's formula.

    pip install torch==2.13.0+cpu safetensors && python3 tools/make_personalization_fixtures.py

For each case, per batch item and head, with text keys K, values V, subject tokens s_j,
nested keys/values (K~_j, V~_j):
    a_i   = softmax(q_i K^T / sqrt(d) + log w at each s_j)
    v*_ij = softmax(q_i K~_j^T / sqrt(d)) V~_j       (optionally rescaled to lambda * |V_{s_j}|)
    out_i = sum_{t not a subject token} a_it V_t + sum_j a_{i s_j} v*_ij
or, for a subject whose adapter adds its value ("nested_value": "add"), a_{i s_j} (V_{s_j} + v*_ij).
This is the direct (non-residual) form; the Swift code computes the residual form, so
agreement checks the algebra too. Gradients of sum(out * gout) w.r.t. every input come
from torch autograd. Writes Tests/NestPersonalizationTests/Fixtures/nested_attention.safetensors.
"""
import math
import os
import torch
from safetensors.torch import save_file

torch.manual_seed(31)
out = {}


def nested(q, k, v, subjects, heads, weight=1.0, lam=None):
    b, n, width = q.shape
    d = width // heads
    qh = q.reshape(b, n, heads, d)
    kh = k.reshape(b, -1, heads, d)
    vh = v.reshape(b, -1, heads, d)
    results = []
    for item in range(b):
        per_head = []
        for h in range(heads):
            logits = qh[item, :, h] @ kh[item, :, h].T / math.sqrt(d)
            tokens = [s["index"][item] for s in subjects if s["index"][item] >= 0]
            bias = torch.zeros(logits.shape[1])
            for t in tokens:
                bias[t] = math.log(weight)
            a = torch.softmax(logits + bias, dim=-1)
            mask = torch.ones(logits.shape[1])
            for s in subjects:
                if s["index"][item] >= 0 and not s.get("adds", False):
                    mask[s["index"][item]] = 0
            o = (a * mask) @ vh[item, :, h]
            for s in subjects:
                t = s["index"][item]
                if t < 0:
                    continue
                kn = s["keys"][min(item, s["keys"].shape[0] - 1)].reshape(-1, heads, d)[:, h]
                vn = s["values"][min(item, s["values"].shape[0] - 1)].reshape(-1, heads, d)[:, h]
                vstar = torch.softmax(qh[item, :, h] @ kn.T / math.sqrt(d), dim=-1) @ vn
                if lam is not None:
                    vstar = vstar / vstar.norm(dim=-1, keepdim=True) * lam * vh[item, t, h].norm()
                o = o + a[:, t:t + 1] * vstar
            per_head.append(o)
        results.append(torch.stack(per_head, dim=1).reshape(n, width))
    return torch.stack(results)


def case(name, b, n, t, m, heads, d, subject_indices, weight=1.0, lam=None, shared_batch=False, adds=()):
    q = torch.randn(b, n, heads * d, requires_grad=True)
    k = torch.randn(b, t, heads * d, requires_grad=True)
    v = torch.randn(b, t, heads * d, requires_grad=True)
    subjects = []
    leaves = {"q": q, "k": k, "v": v}
    for j, index in enumerate(subject_indices):
        kb = 1 if shared_batch else b
        kn = torch.randn(kb, m, heads * d, requires_grad=True)
        vn = torch.randn(kb, m, heads * d, requires_grad=True)
        subjects.append({"index": index, "keys": kn, "values": vn, "adds": j in adds})
        leaves[f"keys{j}"] = kn
        leaves[f"values{j}"] = vn
        out[f"{name}.index{j}"] = torch.tensor(index, dtype=torch.float32)
        out[f"{name}.adds{j}"] = torch.tensor([1.0 if j in adds else 0.0])
    y = nested(q, k, v, subjects, heads, weight, lam)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    for key, leaf in leaves.items():
        out[f"{name}.{key}"] = leaf.detach()
        out[f"{name}.grad.{key}"] = leaf.grad.detach()
    out[f"{name}.out"] = y.detach()
    out[f"{name}.gout"] = g


case("single", b=2, n=10, t=7, m=5, heads=2, d=4, subject_indices=[[3, 1]])
case("uncond_branch", b=2, n=9, t=7, m=6, heads=2, d=4, subject_indices=[[-1, 4]])  # [uncond, cond]
case("two_subjects", b=2, n=12, t=8, m=4, heads=3, d=4, subject_indices=[[2, 2], [5, 6]])
case("weighted", b=1, n=11, t=6, m=5, heads=2, d=4, subject_indices=[[2]], weight=2.5)
case("normalized", b=2, n=8, t=6, m=5, heads=2, d=4, subject_indices=[[1, 3]], lam=2.0)
case("shared_keys", b=2, n=8, t=6, m=5, heads=2, d=4, subject_indices=[[-1, 2]], shared_batch=True)

# The IP-Adapter Plus resampler: diffusers' IPAdapterPlusImageProjection as the
# reference, its weights renamed to the original IP-Adapter layout that the Swift
# Resampler (and real IP-Adapter-Plus files) use.
from diffusers.models.embeddings import IPAdapterPlusImageProjection


def to_original_layout(state):
    original = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] != "layers":
            original[key] = value
            continue
        n, rest = parts[1], ".".join(parts[2:])
        renames = {"ln0.": "0.norm1.", "ln1.": "0.norm2.", "attn.to_q.": "0.to_q.", "attn.to_out.0.": "0.to_out.",
                   "ff.0.": "1.0.", "ff.1.net.0.proj.": "1.1.", "ff.1.net.2.": "1.3."}
        for old, new in renames.items():
            if rest.startswith(old):
                original[f"layers.{n}.{new}{rest[len(old):]}"] = value
                break
        else:
            if rest.startswith("attn.to_k."):
                suffix = rest[len("attn.to_k."):]
                original[f"layers.{n}.0.to_kv.{suffix}"] = torch.cat([value, state[f"layers.{n}.attn.to_v.{suffix}"]], 0)
            elif not rest.startswith("attn.to_v."):
                raise KeyError(key)
    return original


with torch.no_grad():
    proj = IPAdapterPlusImageProjection(embed_dims=16, output_dims=24, hidden_dims=32, depth=2, dim_head=8,
                                        heads=4, num_queries=6, ffn_ratio=2)
    for p in proj.parameters():
        p.add_(torch.randn_like(p) * 0.1)
    features = torch.randn(2, 10, 16)
    reference = proj(features)
for key, value in to_original_layout(proj.state_dict()).items():
    out[f"resampler.weights.{key}"] = value.clone()
out["resampler.features"] = features
out["resampler.out"] = reference

# Subjects that add v* to their token's value (drawn after the resampler's
# weights, so the cases above keep their numbers).
case("added", b=2, n=10, t=7, m=5, heads=2, d=4, subject_indices=[[-1, 3]], adds=(0,))
case("added_mixed", b=2, n=12, t=8, m=4, heads=3, d=4, subject_indices=[[2, 1], [5, 6]], weight=2.0, adds=(1,))
case("added_normalized", b=2, n=8, t=6, m=5, heads=2, d=4, subject_indices=[[1, 3]], lam=1.5, adds=(0,))

path = os.path.join(os.path.dirname(__file__), "..", "Tests", "NestPersonalizationTests", "Fixtures", "nested_attention.safetensors")
save_file({k: v.contiguous() for k, v in out.items()}, path, metadata={"torch": torch.__version__})
print("wrote", len(out), "tensors to", os.path.normpath(path))
