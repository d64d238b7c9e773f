"""The recipe's math against the paper's direct form and against the fixtures
the Swift implementation is tested with."""
import math
import os

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

from conftest import ROOT
from nest_torch.adapter import load_adapter
from nest_torch.attention import bind, decoupled_attention, nested_cross_attention, replacing_token

NESTED = os.path.join(ROOT, "Tests", "NestPersonalizationTests", "Fixtures", "nested")


def direct(q, k, v, heads, index, keys, values, lam, weight, adds=False):
    """The paper's definition, literally: a per-query copy of V with row s replaced by v*_i
    (with `adds`, row s becomes V_s + v*_i)."""
    b, n, width = q.shape
    d = width // heads
    out = torch.zeros(b, n, width, dtype=q.dtype)
    for item in range(b):
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            qi, ki, vi = q[item, :, sl], k[item, :, sl], v[item, :, sl]
            logits = qi @ ki.T / math.sqrt(d)
            s = index[item]
            if s is None:
                out[item, :, sl] = torch.softmax(logits, -1) @ vi
                continue
            logits[:, s] += math.log(weight)
            a = torch.softmax(logits, -1)
            v_star = torch.softmax(qi @ keys[0, :, sl].T / math.sqrt(d), -1) @ values[0, :, sl]
            if lam is not None:
                v_star = v_star / v_star.norm(dim=-1, keepdim=True) * lam * vi[s].norm()
            per_query = vi.expand(n, -1, -1).clone()
            per_query[:, s] = v_star + vi[s] if adds else v_star
            out[item, :, sl] = (a[:, :, None] * per_query).sum(1)
    return out


@pytest.mark.parametrize("lam,weight,adds", [(None, 1.0, False), (1.5, 2.0, False), (0.7, 0.5, False),
                                             (None, 1.0, True), (1.5, 2.0, True)])
def test_residual_form_is_the_papers_direct_form(lam, weight, adds):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, n, 32, generator=g, dtype=torch.float64) for n in (20, 9, 9))
    keys, values = (torch.randn(1, 5, 32, generator=g, dtype=torch.float64) for _ in range(2))
    index = [3, None, 7]
    ours = nested_cross_attention(q, k, v, 4, [dict(index=index, keys=keys, values=values, lam=lam, weight=weight,
                                                    adds=adds)])
    assert torch.allclose(ours, direct(q, k, v, 4, index, keys, values, lam, weight, adds), atol=1e-10)
    # An item without the subject token is exactly the plain layer.
    plain = torch.softmax(q[1:2].view(1, 20, 4, 8).transpose(1, 2) @ k[1:2].view(1, 9, 4, 8).transpose(1, 2).transpose(-1, -2)
                          / math.sqrt(8), -1) @ v[1:2].view(1, 9, 4, 8).transpose(1, 2)
    assert torch.allclose(ours[1:2], plain.transpose(1, 2).reshape(1, 20, 32), atol=1e-12)


@pytest.mark.parametrize("case,heads,count,weight,lam", [("added", 2, 1, 1.0, None), ("added_mixed", 3, 2, 2.0, None),
                                                         ("added_normalized", 2, 1, 1.0, 1.5)])
def test_added_values_match_the_swift_fixtures(case, heads, count, weight, lam):
    """The cases NestedAttentionTests checks the Swift "nested_value": "add" path with."""
    refs = load_file(os.path.join(ROOT, "Tests", "NestPersonalizationTests", "Fixtures", "nested_attention.safetensors"))
    subjects = [dict(index=[None if i < 0 else int(i) for i in refs[f"{case}.index{j}"].tolist()],
                     keys=refs[f"{case}.keys{j}"], values=refs[f"{case}.values{j}"], lam=lam, weight=weight,
                     adds=refs[f"{case}.adds{j}"].item() == 1) for j in range(count)]
    out = nested_cross_attention(refs[f"{case}.q"], refs[f"{case}.k"], refs[f"{case}.v"], heads, subjects)
    assert (out - refs[f"{case}.out"]).abs().max().item() <= 1e-5 * refs[f"{case}.out"].abs().max().item()


def test_baselines():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, n, 16, generator=g, dtype=torch.float64) for n in (6, 4, 4))
    ik, iv = (torch.randn(2, 3, 16, generator=g, dtype=torch.float64) for _ in range(2))
    base = decoupled_attention(q, k, v, 2, None, None, 1.0)
    both = decoupled_attention(q, k, v, 2, ik, iv, 0.5)
    image = decoupled_attention(q, ik, iv, 2, None, None, 1.0)
    assert torch.allclose(both, base + 0.5 * image)
    context = torch.randn(2, 5, 16, generator=g)
    vector = torch.randn(2, 1, 16, generator=g)
    out = replacing_token(context, [2, None], vector)
    assert torch.equal(out[0, 2], vector[0, 0]) and torch.equal(out[1], context[1])
    assert torch.equal(out[0, [0, 1, 3, 4]], context[0, [0, 1, 3, 4]])


@pytest.mark.parametrize("flavour", ["sd1", "sdxl"])
def test_loss_and_gradients_match_the_swift_fixtures(flavour):
    """tools/make_adapter_gradient_fixtures.py's loss and adapter gradients (which
    NestPersonalizationTests checks the Swift trainer against), through the recipe's
    own resampler and processors, loaded from our adapter format."""
    folder = os.path.join(NESTED, flavour)
    refs = load_file(os.path.join(folder, "gradients.safetensors"))
    unet = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet")).double().eval().requires_grad_(False)
    adapter = load_adapter(os.path.join(folder, "adapter_a.json")).double()
    added = {"text_embeds": refs["text_embeds"].double(), "time_ids": refs["time_ids"].double()} if "time_ids" in refs else None
    for case in ("plain", "scaled"):
        adapter.zero_grad(set_to_none=True)
        index = [None if i < 0 else int(i) for i in refs[f"{case}.index"].tolist()]
        lam = refs[f"{case}.lambda"].item() or None
        out = adapter(features=refs["features"].double())
        previous = bind(unet, adapter, out["kv"], index, options={"lam": lam, "weight": refs[f"{case}.weight"].item()})
        pred = unet(refs["sample"].double(), refs["timesteps"].double(), refs["encoder_hidden_states"].double(),
                    added_cond_kwargs=added).sample
        unet.set_attn_processor(previous)
        loss = ((pred - refs["eps"].double()) ** 2).mean()
        loss.backward()
        assert abs(loss.item() - refs[f"{case}.loss"].item()) <= 1e-6 * refs[f"{case}.loss"].item()
        grads = {name: p.grad for name, p in adapter.named_parameters()}
        scale = max(refs[f"{case}.grad.{n}"].abs().max().item() for n in grads)
        for name, grad in grads.items():
            expected = refs[f"{case}.grad.{name}"].double()
            assert (grad - expected).abs().max().item() <= 1e-5 * scale, f"{flavour} {case} {name}"
