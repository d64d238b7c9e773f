"""One training step's math, as AdapterTrainer.swift does it: guidance dropout,
timesteps uniform in the range, ε- or v-prediction targets, the adapter bound
to the frozen UNet, (weighted) MSE."""
import contextlib

import torch

from .attention import bind, replacing_token


def dropout(draw, options):
    """(drop_image, drop_text) from one uniform draw: [0, pi) image, [pi, pi+pt) text, [pi+pt, pi+pt+pb) both."""
    pi, pt, pb = options.drop_image, options.drop_text, options.drop_both
    image = draw < pi or (pi + pt <= draw < pi + pt + pb)
    text = pi <= draw < pi + pt + pb
    return image, text


def timestep_bounds(options, train_steps):
    if options.timestep_range is None:
        return 0, train_steps
    lower, upper = options.timestep_range
    if upper > train_steps:
        raise ValueError(f"training: timestep_range {options.timestep_range} goes past the scheduler's {train_steps} training steps")
    return lower, upper


def add_noise(base, z0, eps, timesteps):
    """(noisy latents, regression target): x_t = √ᾱ·z0 + √(1−ᾱ)·ε; target ε, or v = √ᾱ·ε − √(1−ᾱ)·z0."""
    a = base.alphas_cumprod(timesteps).to(z0.dtype).view(-1, 1, 1, 1)
    noisy = a.sqrt() * z0 + (1 - a).sqrt() * eps
    target = a.sqrt() * eps - (1 - a).sqrt() * z0 if base.predicts_velocity else eps
    return noisy, target


@torch.no_grad()
def encode_latents(base, targets, noise):
    """VAE posterior sample (with the given noise) × scaling factor; targets in −1...1."""
    dist = base.vae.encode(targets.to(base.vae.dtype)).latent_dist
    return (dist.mean + dist.std * noise.to(dist.mean.dtype)) * base.vae.config.scaling_factor


def prepare(base, adapter, items, rngs, options):
    """Everything of a step that does not depend on the adapter's weights. `items`
    come from data.RecordLoader, `rngs` are their generators (one per item)."""
    token = adapter.config["placeholder_token"]
    device = base.unet.device
    lower, upper = timestep_bounds(options, base.noise.config.num_train_timesteps)
    captions, keep = [], []
    for item in items:
        drop_image, drop_text = dropout(item["draw"], options)
        captions.append("" if drop_image and drop_text else (token if drop_text else item["caption"]))
        keep.append(not drop_image)
    generators = [torch.Generator().manual_seed(rng.getrandbits(63)) for rng in rngs]
    targets = torch.stack([it["target"] for it in items]).to(device)
    factor = base_factor(base)
    shape = (base.vae.config.latent_channels, targets.shape[2] // factor, targets.shape[3] // factor)
    # Per item, from its own generator: the posterior's noise first, then ε.
    posterior_noise = torch.stack([torch.randn(shape, generator=g) for g in generators])
    z0 = encode_latents(base, targets, posterior_noise.to(device))
    eps = torch.stack([torch.randn(z0.shape[1:], generator=g) for g in generators]).to(device, z0.dtype)
    timesteps = torch.tensor([lower + rng.randrange(upper - lower) for rng in rngs], device=device)
    noisy, target = add_noise(base, z0.float(), eps.float(), timesteps)
    batch = conditioning(base, adapter, captions, keep, torch.stack([it["pixels"] for it in items]), options.resolution)
    batch.update(noisy=noisy, timesteps=timesteps, target=target)
    if "mask" in items[0]:
        from .data import latent_weights
        size = noisy.shape[2:]
        w = torch.stack([latent_weights(it["mask"], size, options.subject_loss_weight) for it in items]).to(device)
        batch["weights"] = w.expand_as(target)
    return batch


def conditioning(base, adapter, captions, keep, pixels, resolution):
    """Text and image conditioning of a batch: context (and SDXL's pooled
    embedding and time ids), the subject token per item (None where the image
    is dropped), and the frozen CLIP features (zero for a dropped image, ip-adapter kind)."""
    device = base.unet.device
    token = adapter.config["placeholder_token"]
    context, pooled = base.encode_prompts(captions)
    batch = {"context": context, "pooled": pooled, "pixels": pixels.to(device),
             "index": [base.position(token, c) if k else None for c, k in zip(captions, keep)],
             "keep": torch.tensor(keep, dtype=torch.float32, device=device)}
    if pooled is not None:
        batch["time_ids"] = base.time_ids(len(captions), resolution)
    if adapter.image_encoder is None:
        with torch.no_grad():
            features = base.image_features(batch["pixels"].to(base.image_encoder.dtype),
                                           adapter.config["image_encoder"]["feature_layer"])
            batch["features"] = mask_dropped(adapter, features, batch["keep"])
    return batch


def base_factor(base):
    """Pixels per latent cell (8 for every SD-family VAE)."""
    return 2 ** (len(base.vae.config.block_out_channels) - 1)


def mask_dropped(adapter, features, keep):
    """The decoupled branch has no token to skip: a dropped image is "no image", zero features."""
    if adapter.kind == "ip-adapter":
        return features * keep.view(-1, 1, 1).to(features.dtype)
    return features


@contextlib.contextmanager
def bound(base, adapter, batch, module=None):
    """The adapter bound to the UNet for `batch`; yields a function giving the
    UNet's prediction. The processors stay until the block ends, so the backward
    pass (which, with gradient checkpointing, runs the UNet's blocks again) sees
    the same layers. `module`: the adapter as wrapped for data parallelism
    (called for its forward), `adapter` the plain one."""
    out = (module or adapter)(features=batch.get("features"), pixels=batch["pixels"], keep=batch["keep"])
    unet = base.unet
    added = None
    if batch.get("pooled") is not None:
        added = {"text_embeds": batch["pooled"].to(unet.dtype), "time_ids": batch["time_ids"].to(unet.dtype)}
    context = batch["context"]
    if adapter.kind == "single-token":
        context = replacing_token(context, batch["index"], out["vector"])
    previous = None if adapter.kind == "single-token" else bind(unet, adapter, out["kv"], batch["index"], scale=1.0)
    # Every output joins the graph (weight 0), so a data-parallel backward gets a gradient for
    # every parameter even when no item of this process's slice has the subject token.
    used = [t for pair in out["kv"] for t in pair] + ([out["vector"]] if out["vector"] is not None else [])
    anchor = sum(t.sum() for t in used) * 0
    try:
        yield lambda: unet(batch["noisy"].to(unet.dtype), batch["timesteps"], context.to(unet.dtype),
                           added_cond_kwargs=added).sample + anchor.to(unet.dtype)
    finally:
        if previous is not None:
            unet.set_attn_processor(previous)


def predict(base, adapter, batch, module=None):
    """The UNet's prediction with the adapter bound (gradients reach the adapter only)."""
    with bound(base, adapter, batch, module) as run:
        return run()


def loss_of(prediction, batch):
    """Mean squared error, or Σ w·d² / Σ w with subject loss weights."""
    d2 = (prediction.float() - batch["target"].float()) ** 2
    if "weights" in batch:
        return (batch["weights"] * d2).sum() / batch["weights"].sum().clamp_min(1e-12)
    return d2.mean()
