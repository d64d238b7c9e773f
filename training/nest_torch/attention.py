"""The method's math, in one place on the Python side.

Written from the paper (Patashnik et al. 2025, Sec. 3) and kept term for term
with Sources/NestPersonalization/{NestedAttention,DecoupledAttention,SingleToken}.swift:

    a_i  = softmax(q_i·Kᵀ/√d + log w·[t = s])            (text attention, token weight w)
    v*_i = softmax(q_i·K̃ᵀ/√d)·Ṽ,  K̃ = E·W̃_K, Ṽ = E·W̃_V   (nested attention over encoder tokens E)
    v*_i ← λ·‖V_s‖·v*_i/‖v*_i‖  (per head, optional value normalization λ)
    out_i = Attention(Q,K,V)_i + a_{i,s}·(v*_i − V_s)     (residual form)
    out_i = Attention(Q,K,V)_i + a_{i,s}·v*_i             (an adapter whose v* adds to V_s)

An item whose prompt has no subject token (nil index: dropped image, or the
unconditional half of guidance) is exactly the plain layer.
"""
import math

import torch
from torch.nn import functional as F

EPS = 1e-12  # inside the square roots of the norms, as in the Swift kernels


def heads_first(x, heads):
    """[B, T, H·d] → [B, H, T, d]."""
    b, t, width = x.shape
    return x.reshape(b, t, heads, width // heads).transpose(1, 2)


def heads_last(x):
    """[B, H, T, d] → [B, T, H·d]."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def nested_cross_attention(q, k, v, heads, subjects):
    """q: [B, N, H·d]; k, v: [B, T, H·d]. `subjects`: dicts with `index` (per item,
    int or None), `keys`/`values` ([B or 1, M, H·d]), `lam` (λ or None), `weight` (w),
    `adds` (v* is added to the token's value V_s instead of replacing it)."""
    b, t = q.shape[0], k.shape[1]
    active = [s for s in subjects if any(i is not None for i in s["index"])]
    if not active:
        return heads_last(F.scaled_dot_product_attention(*(heads_first(x, heads) for x in (q, k, v))))
    for item in range(b):
        claimed = [s["index"][item] for s in active if s["index"][item] is not None]
        if len(set(claimed)) != len(claimed):
            raise ValueError(f"nested attention: two subjects share token {claimed} in batch item {item}")
    qh, kh, vh = (heads_first(x, heads) for x in (q, k, v))
    d = qh.shape[-1]
    logits = qh @ kh.transpose(-1, -2) / math.sqrt(d)
    bias = torch.zeros(b, 1, 1, t, dtype=logits.dtype, device=logits.device)
    for s in active:
        if s.get("weight", 1.0) != 1.0:
            for item, i in enumerate(s["index"]):
                if i is not None:
                    bias[item, 0, 0, i] = math.log(s["weight"])
    probabilities = torch.softmax(logits + bias, dim=-1)
    out = probabilities @ vh
    for s in active:
        index = torch.tensor([0 if i is None else i for i in s["index"]], device=q.device)
        present = torch.tensor([i is not None for i in s["index"]], device=q.device, dtype=q.dtype).view(b, 1, 1, 1)
        v_star = F.scaled_dot_product_attention(qh, heads_first(s["keys"], heads).expand(b, -1, -1, -1),
                                                heads_first(s["values"], heads).expand(b, -1, -1, -1))
        a_s = probabilities.gather(-1, index.view(b, 1, 1, 1).expand(b, heads, qh.shape[2], 1))  # [B, H, N, 1]
        v_s = vh.gather(2, index.view(b, 1, 1, 1).expand(b, heads, 1, d))  # [B, H, 1, d]
        if s.get("lam") is not None:
            norms = torch.sqrt(v_star.square().sum(-1, keepdim=True) + EPS)
            target = torch.sqrt(v_s.square().sum(-1, keepdim=True) + EPS) * s["lam"]
            v_star = v_star / norms * target
        out = out + present * a_s * (v_star if s.get("adds") else v_star - v_s)
    return heads_last(out)


def decoupled_attention(q, k, v, heads, image_keys, image_values, scale):
    """IP-Adapter-style baseline: Attention(Q,K,V) + scale·Attention(Q, E·W_K, E·W_V), every query alike."""
    out = F.scaled_dot_product_attention(*(heads_first(x, heads) for x in (q, k, v)))
    if image_keys is not None and scale != 0:
        out = out + scale * F.scaled_dot_product_attention(heads_first(q, heads), heads_first(image_keys, heads),
                                                           heads_first(image_values, heads))
    return heads_last(out)


def replacing_token(context, positions, vector):
    """Single-token baseline: row positions[b] of each item's context becomes `vector` ([B or 1, 1, C]);
    nil positions leave the item alone."""
    b, t, _ = context.shape
    mask = torch.zeros(b, t, 1, dtype=context.dtype, device=context.device)
    for item, p in enumerate(positions):
        if p is not None:
            mask[item, p, 0] = 1
    return context * (1 - mask) + mask * vector.to(context.dtype)


class _CrossAttentionProcessor:
    """A diffusers attention processor for the plain SD cross-attention layer
    (to_q/to_k/to_v/to_out, no norms, no residual inside the layer)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if encoder_hidden_states is None:
            raise ValueError("nested/decoupled processors are for cross-attention layers (attn2) only")
        if attention_mask is not None or attn.spatial_norm is not None or attn.group_norm is not None \
                or attn.norm_cross or hidden_states.ndim != 3:
            raise ValueError("unsupported cross-attention layout (masks, norms or 4-D input)")
        q = attn.to_q(hidden_states)
        k, v = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        out = self.attend(q, k, v, attn.heads)
        out = attn.to_out[1](attn.to_out[0](out.to(q.dtype)))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


class NestedAttnProcessor(_CrossAttentionProcessor):
    def __init__(self, subjects):
        self.subjects = subjects

    def attend(self, q, k, v, heads):
        subjects = [dict(s, keys=s["keys"].to(q.dtype), values=s["values"].to(q.dtype)) for s in self.subjects]
        return nested_cross_attention(q, k, v, heads, subjects)


class DecoupledAttnProcessor(_CrossAttentionProcessor):
    def __init__(self, image_keys, image_values, scale=1.0):
        self.image_keys, self.image_values, self.scale = image_keys, image_values, scale

    def attend(self, q, k, v, heads):
        return decoupled_attention(q, k, v, heads, self.image_keys.to(q.dtype), self.image_values.to(q.dtype), self.scale)


def cross_attention_paths(unet):
    """The UNet's cross-attention layers as `attn_processors` keys, in diffusers' order
    (the order AdapterConfig.layers lists them in)."""
    return [k for k in unet.attn_processors if k.endswith("attn2.processor")]


def bind(unet, adapter, kv, index, options=None, scale=None):
    """Installs the adapter's processors on `unet` for one forward pass; returns
    the previous processors (pass them to `unet.set_attn_processor` to undo).
    `kv`: per bound layer (keys, values) from the adapter's forward — nested:
    K̃, Ṽ; ip-adapter: K_ip, V_ip. `index`: the subject token per item. `options`: λ and w
    (default: the adapter file's `defaults`)."""
    previous = dict(unet.attn_processors)
    defaults = adapter.config.get("defaults", {})
    options = options or {"lam": defaults.get("value_normalization"), "weight": defaults.get("token_weight", 1.0)}
    processors = dict(previous)
    known = set(previous)
    for layer, (keys, values) in zip(adapter.config["layers"], kv):
        # Adapter files name layers by their attn_processors key; the bare module path is accepted too (as in Swift).
        path = layer["path"] if layer["path"].endswith(".processor") else layer["path"] + ".processor"
        if path not in known:
            raise ValueError(f"the UNet has no cross-attention layer {layer['path']} (adapter made for another model?)")
        if adapter.kind == "nested":
            adds = adapter.config.get("nested_value") == "add"
            processors[path] = NestedAttnProcessor([dict(index=index, keys=keys, values=values, adds=adds, **options)])
        else:
            processors[path] = DecoupledAttnProcessor(keys, values, defaults.get("scale", 1.0) if scale is None else scale)
    unet.set_attn_processor(processors)
    return previous
