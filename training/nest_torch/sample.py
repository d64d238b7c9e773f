"""Sampling with a trained adapter on the Python side: diffusers' own pipeline
with the recipe's processors installed, as `nest generate --adapter A --subject
TOKEN=IMAGE` does it (the same seeded torch noise, [unconditional, conditional]
batches with no subject token in the unconditional half).

    python -m nest_torch.sample --model M --adapter runs/x/adapter.json \\
        --subject "<critter>=ref.png" --prompt "a photo of <critter>" --seed 1 --output out.png
"""
import argparse
import json
import os

import numpy as np
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from PIL import Image
from transformers import CLIPImageProcessor

from .adapter import load_adapter
from .attention import bind, replacing_token
from .base import add_placeholder


def load_pipeline(folder):
    xl = json.load(open(os.path.join(folder, "model_index.json")))["_class_name"].startswith("StableDiffusionXL")
    pipe = (StableDiffusionXLPipeline if xl else StableDiffusionPipeline).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def encoder_tokens(pipe, folder, adapter, images):
    """E for the subject: CLIP features of each photo, resampled, averaged over photos."""
    processing = os.path.join(folder, "feature_extractor")
    processor = CLIPImageProcessor.from_pretrained(processing if os.path.isdir(processing) else os.path.join(folder, "image_encoder"))
    pixels = processor(images=[Image.open(p).convert("RGB") for p in images], return_tensors="pt").pixel_values
    layer = adapter.config["image_encoder"]["feature_layer"]
    encoder = adapter.image_encoder or pipe.image_encoder
    features = encoder(pixel_values=pixels.to(encoder.dtype), output_hidden_states=True).hidden_states[layer]
    return adapter(features=features)["tokens"].mean(dim=0, keepdim=True), features.shape


@torch.no_grad()
def generate(folder, adapter_path, images, prompt, seed, steps=20, guidance=5.0, width=None, height=None,
             options=None, pipe=None):
    """The image as float [H, W, 3] in 0...1 (what diffusers' `output_type="np"` gives)."""
    pipe = pipe or load_pipeline(folder)
    adapter = load_adapter(adapter_path).eval()
    token = adapter.config["placeholder_token"]
    tokenizers = [t for t in (pipe.tokenizer, getattr(pipe, "tokenizer_2", None)) if t is not None]
    encoders = [e for e in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if e is not None]
    add_placeholder(tokenizers, encoders, token, adapter.config["class_word"])
    ids = pipe.tokenizer(prompt, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True).input_ids
    wanted = pipe.tokenizer.convert_tokens_to_ids(token)
    if wanted not in ids:
        raise ValueError(f"the prompt does not contain the placeholder token {token}")
    position = ids.index(wanted)
    tokens, feature_shape = encoder_tokens(pipe, folder, adapter, images)
    guided = guidance > 1
    kwargs = dict(num_inference_steps=steps, guidance_scale=guidance, width=width, height=height, output_type="np",
                  generator=torch.Generator("cpu").manual_seed(seed))
    previous = dict(pipe.unet.attn_processors)
    try:
        if adapter.kind == "nested":
            bind(pipe.unet, adapter, adapter.layer_keys_values(tokens), ([None] if guided else []) + [position], options)
        elif adapter.kind == "ip-adapter":
            # The unconditional half sees "no image": the tokens of zero features.
            empty = adapter(features=torch.zeros(1, *feature_shape[1:]))["tokens"]
            both = torch.cat(([empty] if guided else []) + [tokens])
            bind(pipe.unet, adapter, adapter.layer_keys_values(both), [None] * both.shape[0])
        else:
            embeds = pipe.encode_prompt(prompt, "cpu", 1, guided, None) if not isinstance(pipe, StableDiffusionXLPipeline) \
                else None
            if embeds is None:
                raise NotImplementedError("single-token sampling on SDXL: use `nest generate`")
            kwargs.update(prompt_embeds=replacing_token(embeds[0], [position], adapter.subject_vector(tokens)),
                          negative_prompt_embeds=embeds[1])
            prompt = None
        return pipe(prompt=prompt, **kwargs).images[0]
    finally:
        pipe.unet.set_attn_processor(previous)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Sample with a trained subject adapter (diffusers + the recipe's processors).")
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--subject", action="append", required=True, help="TOKEN=IMAGE (repeat for more photos)")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    image = generate(args.model, args.adapter, [s.split("=", 1)[1] for s in args.subject], args.prompt, args.seed,
                     args.steps, args.guidance, args.width, args.height)
    Image.fromarray((image * 255).round().clip(0, 255).astype(np.uint8)).save(args.output)


if __name__ == "__main__":
    main()
