"""Tiny CLIP text and vision encoders, their reference outputs and CLIP image preprocessing.

Text encoders cover both of transformers' pooling rules: configs with eos_token_id == 2
(SD1/SD2/SDXL's first encoder, as the real checkpoints ship) pool at the argmax of the ids;
any other eos_token_id (SDXL's text_encoder_2) pools at the first position holding it. The
ids are chosen so the two rules pick different positions: legacy rows pad with the
highest id after the first one, first-match rows hold ids above the eos id (500).

Image encoders (sd1, sdxl) come with a `feature_extractor/preprocessor_config.json` as
diffusers pipelines keep it; the processor transformers picks for it here is the PIL one
(torchvision is not installed), so the Swift side reproduces Pillow's resampling.
"""
import os

import numpy as np
import torch
from PIL import Image
from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection,
                          CLIPVisionConfig, CLIPVisionModelWithProjection)

FOLDERS = ["text_encoder", "text_encoder_2", "image_encoder"]
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "NestModelsTests", "Fixtures")

VOCAB = 512


def text_config(act, eos, layers=3, projection=16):
    return CLIPTextConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=layers,
                          num_attention_heads=4, max_position_embeddings=77, hidden_act=act, layer_norm_eps=1e-5,
                          projection_dim=projection, bos_token_id=eos - 1 if eos != 2 else 0,
                          eos_token_id=eos, pad_token_id=1)


def vision_config(act, image_size):
    return CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
                            image_size=image_size, patch_size=8, num_channels=3, hidden_act=act,
                            layer_norm_eps=1e-5, projection_dim=24)


def build(flavour):
    if flavour == "sd1":
        return {"text_encoder": CLIPTextModel(text_config("quick_gelu", eos=2)),
                "image_encoder": CLIPVisionModelWithProjection(vision_config("gelu", 32))}
    if flavour == "sd2":
        return {"text_encoder": CLIPTextModel(text_config("gelu", eos=2, layers=2))}
    return {"text_encoder": CLIPTextModel(text_config("quick_gelu", eos=2)),
            "text_encoder_2": CLIPTextModelWithProjection(text_config("gelu", eos=500)),
            "image_encoder": CLIPVisionModelWithProjection(vision_config("quick_gelu", 24))}


def token_ids(eos, lengths, pads, length=77):
    """Rows of [bos, words..., eos, pad...]; legacy (eos 2) rows end with the largest id, VOCAB - 1."""
    rows = []
    for n, pad in zip(lengths, pads):
        if eos == 2:
            # As SD's tokenizer: the end token is the highest id and padding repeats it,
            # so argmax must return the first of several maxima.
            words = torch.randint(3, VOCAB - 2, (n,)).tolist()
            row = [VOCAB - 2] + words + [VOCAB - 1]
        else:
            # Words above the eos id make argmax and first-match disagree.
            words = torch.randint(3, VOCAB, (n,)).tolist()
            words[n // 2] = VOCAB - 1
            row = [eos - 1] + [w if w != eos else eos + 1 for w in words] + [eos]
        rows.append(row + [pad] * (length - len(row)))
    return torch.tensor(rows)


def text_references(name, model):
    cfg = model.config
    pad = VOCAB - 1 if cfg.eos_token_id == 2 else cfg.eos_token_id
    ids = token_ids(cfg.eos_token_id, lengths=[5, 12], pads=[pad, 0])
    out = model(input_ids=ids, output_hidden_states=True)
    refs = {f"{name}.input_ids": ids, f"{name}.last_hidden_state": out.last_hidden_state}
    for i, h in enumerate(out.hidden_states):
        refs[f"{name}.hidden_states.{i}"] = h
    if hasattr(out, "text_embeds"):
        refs[f"{name}.text_embeds"] = out.text_embeds
        # WithProjection's output has no pooler_output; take it from the inner model.
        refs[f"{name}.pooled"] = model.text_model(input_ids=ids).pooler_output
    else:
        refs[f"{name}.pooled"] = out.pooler_output
    return refs


def vision_references(name, model):
    size = model.config.image_size
    pixels = torch.randn(2, 3, size, size)
    out = model(pixel_values=pixels, output_hidden_states=True)
    refs = {f"{name}.pixel_values": pixels, f"{name}.last_hidden_state": out.last_hidden_state,
            f"{name}.image_embeds": out.image_embeds,
            f"{name}.pooled": model.vision_model(pixel_values=pixels).pooler_output}
    for i, h in enumerate(out.hidden_states):
        refs[f"{name}.hidden_states.{i}"] = h.clone()  # the last one shares last_hidden_state's storage
    return refs


def synthetic_image(width, height):
    """Smooth gradients plus noise and a hard edge: exercises both filter lobes and clipping."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    noise = np.random.default_rng(width * 1000 + height).integers(0, 60, (height, width, 3))
    r = 255 * x / (width - 1)
    g = 255 * y / (height - 1)
    b = np.where((x - width / 2) ** 2 + (y - height / 2) ** 2 < (height / 3) ** 2, 250, 5)
    image = np.stack([r, g, b], axis=-1) * 0.8 + noise
    return np.clip(image, 0, 255).astype(np.uint8)


# Extra processor settings checked against the same image (besides the fixture's own config).
EXTRA_PROCESSORS = {
    "upscale_bicubic": dict(size={"shortest_edge": 61}, crop_size={"height": 56, "width": 48}),
    "square_bilinear": dict(size={"height": 29, "width": 23}, crop_size={"height": 20, "width": 20}, resample=2),
    "crop_pads": dict(size={"shortest_edge": 20}, crop_size={"height": 24, "width": 30}),
}


def preprocessing_references(flavour, image_size):
    processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                   crop_size={"height": image_size, "width": image_size})
    processor.save_pretrained(os.path.join(OUT, flavour, "feature_extractor"))
    image = synthetic_image(50, 37)
    refs = {"preprocess.image": torch.from_numpy(image),
            "preprocess.pixel_values": processor(Image.fromarray(image), return_tensors="pt").pixel_values}
    for name, kwargs in EXTRA_PROCESSORS.items():
        extra = CLIPImageProcessor(**kwargs)
        refs[f"preprocess.{name}"] = extra(Image.fromarray(image), return_tensors="pt").pixel_values
    return refs


def references(flavour, models):
    refs = {}
    for name, model in models.items():
        if name == "image_encoder":
            refs.update(vision_references(name, model))
            refs.update(preprocessing_references(flavour, model.config.image_size))
        else:
            refs.update(text_references(name, model))
    return refs
