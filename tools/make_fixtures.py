#!/usr/bin/env python3
"""Reference fixtures for the engine's operation tests, computed by PyTorch.

Run from the repository root:
    pip install torch==2.13.0+cpu safetensors
    python3 tools/make_fixtures.py

Writes Tests/NestEngineTests/Fixtures/ops.safetensors. For every case it stores
the inputs, the output, a random upstream gradient `gout`, and the gradients
of sum(out * gout) with respect to each input (`grad.<input>`). Image tensors
are stored channels-last (NHWC) and conv weights in PyTorch's OIHW layout,
exactly as checkpoints hold them; the Swift tests transpose at load like the
engine does.
"""
import os
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(1234)
torch.set_default_dtype(torch.float32)
out = {}


def rnd(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_(True)


def record(name, inputs, fn, to_store=None):
    """inputs: dict name -> tensor (leaf, requires_grad); fn(**inputs) -> output."""
    y = fn(**inputs)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    stored = to_store(inputs) if to_store else inputs
    for k, v in stored.items():
        out[f"{name}.{k}"] = v.detach().contiguous()
    for k, v in inputs.items():
        if v.grad is not None:
            grad = v.grad
            if to_store and k + "_grad_layout" in stored:
                grad = stored[k + "_grad_layout"]
            out[f"{name}.grad.{k}"] = grad.detach().contiguous()
    out[f"{name}.out"] = y.detach().contiguous()
    out[f"{name}.gout"] = g.contiguous()


nchw = lambda t: t.permute(0, 3, 1, 2)
nhwc = lambda t: t.permute(0, 2, 3, 1)

# Linear layers and matmul.
record("linear", {"x": rnd(2, 5, 12), "w": rnd(7, 12), "b": rnd(7)},
       lambda x, w, b: F.linear(x, w, b))
record("matmul", {"a": rnd(3, 4, 6), "b": rnd(3, 6, 5)}, lambda a, b: a @ b)
record("matmul_tb", {"a": rnd(3, 4, 6), "b": rnd(3, 5, 6)}, lambda a, b: a @ b.transpose(-1, -2))
record("matmul_shared", {"a": rnd(2, 4, 6), "b": rnd(6, 3)}, lambda a, b: a @ b)

# Convolutions (inputs NHWC, weights OIHW; computed in NCHW by torch).
for name, (n, h, w, c, o, k, s, p) in {
    "conv3x3": (2, 9, 7, 5, 6, 3, 1, 1),
    "conv3x3_s2": (1, 9, 8, 4, 3, 3, 2, 1),
    "conv1x1": (2, 4, 5, 6, 7, 1, 1, 0),
    "conv4x4_s2_p0": (1, 10, 9, 3, 4, 4, 2, 0),
}.items():
    record(name, {"x": rnd(n, h, w, c), "w": rnd(o, c, k, k, scale=0.3), "b": rnd(o)},
           lambda x, w, b, s=s, p=p: nhwc(F.conv2d(nchw(x), w, b, stride=s, padding=p)))

# Normalization.
record("group_norm", {"x": rnd(2, 3, 4, 8, scale=2.0), "w": rnd(8), "b": rnd(8)},
       lambda x, w, b: nhwc(F.group_norm(nchw(x) + 0.5, 4, w, b, eps=1e-5)))
record("layer_norm", {"x": rnd(3, 5, 16, scale=2.0), "w": rnd(16), "b": rnd(16)},
       lambda x, w, b: F.layer_norm(x + 1.0, (16,), w, b, eps=1e-5))
record("softmax", {"x": rnd(4, 3, 19, scale=3.0)}, lambda x: torch.softmax(x, -1))

# Activations.
record("silu", {"x": rnd(3, 50, scale=4.0)}, lambda x: F.silu(x))
record("gelu", {"x": rnd(3, 50, scale=4.0)}, lambda x: F.gelu(x))
record("gelu_tanh", {"x": rnd(3, 50, scale=4.0)}, lambda x: F.gelu(x, approximate="tanh"))
record("quick_gelu", {"x": rnd(3, 50, scale=4.0)}, lambda x: x * torch.sigmoid(1.702 * x))
record("geglu", {"x": rnd(2, 5, 2 * 24, scale=2.0)},
       lambda x: (lambda a, g: a * F.gelu(g))(*x.chunk(2, dim=-1)))

# Attention: stored [B, N, H*d]; torch wants [B, H, N, d].
def heads(t, h):
    b, n, hd = t.shape
    return t.reshape(b, n, h, hd // h).transpose(1, 2)

def merge(t):
    b, h, n, d = t.shape
    return t.transpose(1, 2).reshape(b, n, h * d)

for name, (b, nq, nk, h, d, dv, causal) in {
    "attention": (2, 37, 23, 3, 8, 8, False),
    "attention_long": (1, 300, 700, 2, 16, 16, False),  # several key blocks
    "attention_causal": (2, 17, 17, 2, 8, 8, True),
    "attention_dv": (1, 9, 77, 2, 8, 12, False),
}.items():
    record(name, {"q": rnd(b, nq, h * d), "k": rnd(b, nk, h * d), "v": rnd(b, nk, h * dv)},
           lambda q, k, v, h=h, causal=causal: merge(F.scaled_dot_product_attention(
               heads(q, h), heads(k, h), heads(v, h), is_causal=causal)))

# Broadcasting arithmetic.
record("add_bcast", {"a": rnd(2, 3, 4, 5), "b": rnd(2, 1, 1, 5)}, lambda a, b: a + b)
record("mul_bcast", {"a": rnd(2, 3, 4, 5), "b": rnd(3, 1, 5)}, lambda a, b: a * b)
record("sub_bcast", {"a": rnd(4, 1), "b": rnd(3)}, lambda a, b: a - b)
record("div", {"a": rnd(3, 4), "b": (torch.rand(3, 4) + 0.5).requires_grad_(True)}, lambda a, b: a / b)

# Shape operations.
record("permute", {"x": rnd(2, 3, 4, 5)}, lambda x: x.permute(0, 3, 1, 2))
record("concat", {"a": rnd(2, 3, 4), "b": rnd(2, 5, 4)}, lambda a, b: torch.cat([a, b], 1))
record("slice", {"x": rnd(3, 10, 4)}, lambda x: x[:, 2:7, :])
record("upsample", {"x": rnd(2, 3, 4, 5)}, lambda x: nhwc(F.interpolate(nchw(x), scale_factor=2.0, mode="nearest")))
ids = torch.tensor([[3, 0, 7, 3], [1, 1, 9, 2]])
out["embedding.ids"] = ids.float()
record("embedding", {"table": rnd(10, 6)}, lambda table: F.embedding(ids, table))

# Reductions and loss.
record("mean_axes", {"x": rnd(2, 3, 4, 5)}, lambda x: x.mean(dim=(1, 2)))
record("sum_all", {"x": rnd(3, 7)}, lambda x: x.sum())
record("mse", {"a": rnd(4, 6), "b": rnd(4, 6)}, lambda a, b: F.mse_loss(a, b))

# AdamW: three steps on fixed gradients, then clip_grad_norm_.
w0 = torch.randn(5, 3)
grads = [torch.randn(5, 3) for _ in range(3)]
p = torch.nn.Parameter(w0.clone())
opt = torch.optim.AdamW([p], lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
for i, g in enumerate(grads):
    p.grad = g.clone()
    opt.step()
    out[f"adamw.after{i + 1}"] = p.detach().clone()
out["adamw.w0"] = w0
for i, g in enumerate(grads):
    out[f"adamw.grad{i + 1}"] = g
c1, c2 = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(2, 3))
c1.grad, c2.grad = torch.randn(4) * 3, torch.randn(2, 3) * 3
out["clip.g1"], out["clip.g2"] = c1.grad.clone(), c2.grad.clone()
norm = torch.nn.utils.clip_grad_norm_([c1, c2], max_norm=1.5)
out["clip.norm"] = norm.reshape(1)
out["clip.g1_after"], out["clip.g2_after"] = c1.grad.clone(), c2.grad.clone()

path = os.path.join(os.path.dirname(__file__), "..", "Tests", "NestEngineTests", "Fixtures", "ops.safetensors")
os.makedirs(os.path.dirname(path), exist_ok=True)
save_file({k: v.float().contiguous() for k, v in out.items()}, path, metadata={"torch": torch.__version__})
print(f"wrote {len(out)} tensors to {os.path.normpath(path)} (torch {torch.__version__})")
