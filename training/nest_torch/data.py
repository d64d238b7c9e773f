"""Images of a manifest record as training tensors, with the augmentation of
Sources/NestTraining/Augmentation.swift (same geometry, same colour changes;
the random draws come from Python's generator, not the Swift one)."""
import math
import random

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F


def load_rgb(path):
    """[3, H, W] in 0...1."""
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1).contiguous()


def augment(image, size, rng, crop_scale=(0.6, 1.0), crop_ratio=(0.8, 1.25), flip=True, jitter=0.1, flipped=None):
    """Random resized crop, horizontal flip and brightness/contrast/saturation
    jitter of a [3, H, W] image in 0...1, resampled bilinearly (edge-clamped) to
    [3, size, size] in 0...1. `flipped` forces the flip decision (a mask follows its target)."""
    _, h, w = image.shape
    crop = (0.0, 0.0, float(w), float(h))
    if crop_scale[0] < 1 or crop_ratio[0] != crop_ratio[1]:
        for _ in range(10):
            area = w * h * (crop_scale[0] + (crop_scale[1] - crop_scale[0]) * rng.random())
            ratio = math.exp(math.log(crop_ratio[0]) + (math.log(crop_ratio[1]) - math.log(crop_ratio[0])) * rng.random())
            cw, ch = math.sqrt(area * ratio), math.sqrt(area / ratio)
            if cw <= w and ch <= h:
                crop = ((w - cw) * rng.random(), (h - ch) * rng.random(), cw, ch)
                break
    if flipped is None:
        flipped = flip and rng.random() < 0.5
    brightness, contrast, saturation = (1 + jitter * (2 * rng.random() - 1) for _ in range(3))
    # Source coordinates of the output pixel centres (pixel i's centre at i), as grid_sample wants them.
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    fx = centres.flip(0) if flipped else centres
    sx = crop[0] + fx * crop[2] - 0.5
    sy = crop[1] + centres * crop[3] - 0.5
    grid = torch.stack(torch.meshgrid((2 * sy + 1) / h - 1, (2 * sx + 1) / w - 1, indexing="ij")[::-1], dim=-1)
    out = F.grid_sample(image[None], grid[None], mode="bilinear", padding_mode="border", align_corners=False)[0]
    if jitter:
        gray = (0.299 * out[0] + 0.587 * out[1] + 0.114 * out[2])[None]
        out = (gray + (out - gray) * saturation) * brightness
        mean = out.mean()
        out = mean + (out - mean) * contrast
    return out.clamp(0, 1), flipped


def clip_pixels(image, processing):
    """CLIP input from an augmented reference in 0...1: (x − mean)/std per channel."""
    mean = torch.tensor(processing.get("image_mean", [0.48145466, 0.4578275, 0.40821073])).view(3, 1, 1)
    std = torch.tensor(processing.get("image_std", [0.26862954, 0.26130258, 0.27577711])).view(3, 1, 1)
    return (image - mean) / std


def latent_weights(mask, latent_size, weight):
    """1 + (weight − 1)·coverage per latent cell, coverage = the mask's mean over the cell's pixels."""
    coverage = F.adaptive_avg_pool2d(mask[:1][None], latent_size)[0]
    return 1 + (weight - 1) * coverage


class RecordLoader:
    """Decodes a manifest sample into the tensors of one training item; its
    random choices come from `rng` (one per sample and step, see step.sample_rng)."""

    def __init__(self, samples, options, clip_size, processing):
        self.samples, self.options = samples, options
        self.clip_size, self.processing = clip_size, processing

    def item(self, index, rng):
        s, o = self.samples[index], self.options
        # Draw order: the dropout draw first, then the reference choice, then augmentation.
        draw = rng.random()
        reference = s.references[rng.randrange(len(s.references))]
        target, flipped = augment(load_rgb(s.image), o.resolution, rng, crop_scale=(1, 1), crop_ratio=(1, 1),
                                  flip=o.flip_targets, jitter=0)
        item = {"target": target * 2 - 1, "caption": s.caption, "draw": draw}
        pixels, _ = augment(load_rgb(reference), self.clip_size, rng)
        item["pixels"] = clip_pixels(pixels, self.processing)
        if o.subject_loss_weight != 1:
            if s.mask is None:
                raise ValueError(f"training: subject_loss_weight {o.subject_loss_weight} needs a \"mask\" for every record (line {s.line})")
            item["mask"], _ = augment(load_rgb(s.mask), o.resolution, rng, crop_scale=(1, 1), crop_ratio=(1, 1),
                                      flip=False, jitter=0, flipped=flipped)
        return item


def sample_rng(seed, step, position):
    """The generator of one sample of one step: keyed by the global batch
    position, so a batch split over any number of processes draws the same."""
    return random.Random(f"{seed}/{step}/{position}")
