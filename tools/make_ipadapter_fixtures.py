#!/usr/bin/env python3
"""IP-Adapter fixtures: tiny adapter files in the REAL single-file key layout, run through diffusers.

    HF_HUB_OFFLINE=1 python3 tools/make_ipadapter_fixtures.py

Writes Tests/NestPersonalizationTests/Fixtures/ipadapter/:
  unet/, image_encoder/         copies of the sd1 model fixtures (so these references stay
                                consistent even if the model fixtures are regenerated)
  ip_adapter_plain.safetensors  image_proj.{proj,norm}.* + ip_adapter.N.to_{k,v}_ip.weight
  ip_adapter_plus.safetensors   image_proj.{latents,proj_in,proj_out,norm_out,layers.*} + ip_adapter.*
  reference.safetensors         inputs, image embeds (as diffusers' pipeline prepares them),
                                projected image tokens and UNet outputs
  <name>_ip_keys.txt            for the real SD 1.5 and SDXL base configs: every attention
                                processor path and the ip_adapter number diffusers reads for it

Everything diffusers-side goes through diffusers' own code: IPAdapterMixin.load_ip_adapter
reads the files (safetensors prefix split, image projection conversion, IPAdapterAttnProcessor2_0),
StableDiffusionPipeline.prepare_ip_adapter_image_embeds / encode_image build the [uncond, cond]
image embeds, set_ip_adapter_scale sets the scale.
"""
import json
import os
import shutil
import types

import torch
from safetensors.torch import save_file
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from diffusers.loaders.ip_adapter import IPAdapterMixin
from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
from transformers import CLIPVisionModelWithProjection

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
MODELS = os.path.join(ROOT, "Tests", "NestModelsTests", "Fixtures")
OUT = os.path.join(ROOT, "Tests", "NestPersonalizationTests", "Fixtures", "ipadapter")

SCALE = 0.7
PLUS_WIDTH, PLUS_HEADS, PLUS_QUERIES = 16, 1, 6   # to_q rows = heads·64: diffusers infers heads = rows // 64
PLUS_DEPTH, PLUS_FF = 4, 4                       # diffusers builds IPAdapterPlusImageProjection with depth 4, ffn_ratio 4


def ip_layer_widths(unet):
    """(hidden size) per cross-attention processor, in attn_processors order, by diffusers' rule."""
    widths = []
    channels = unet.config.block_out_channels
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            widths.append(channels[-1])
        elif name.startswith("up_blocks"):
            widths.append(list(reversed(channels))[int(name[len("up_blocks.")])])
        else:
            widths.append(channels[int(name[len("down_blocks.")])])
    return widths


def rand(g, *shape, std):
    return torch.randn(*shape, generator=g) * std


def ip_adapter_part(g, unet):
    cross = unet.config.cross_attention_dim
    out = {}
    for k, hidden in enumerate(ip_layer_widths(unet)):
        n = 2 * k + 1
        out[f"ip_adapter.{n}.to_k_ip.weight"] = rand(g, hidden, cross, std=0.5)
        out[f"ip_adapter.{n}.to_v_ip.weight"] = rand(g, hidden, cross, std=0.5)
    return out


def plain_adapter(g, unet, embed_dim):
    cross = unet.config.cross_attention_dim
    sd = {
        "image_proj.proj.weight": rand(g, 4 * cross, embed_dim, std=embed_dim ** -0.5),
        "image_proj.proj.bias": rand(g, 4 * cross, std=0.1),
        "image_proj.norm.weight": 1 + rand(g, cross, std=0.1),
        "image_proj.norm.bias": rand(g, cross, std=0.1),
    }
    sd.update(ip_adapter_part(g, unet))
    return sd


def plus_adapter(g, unet, embed_dim):
    cross, w, inner = unet.config.cross_attention_dim, PLUS_WIDTH, PLUS_HEADS * 64
    sd = {
        "image_proj.latents": rand(g, 1, PLUS_QUERIES, w, std=w ** -0.5),
        "image_proj.proj_in.weight": rand(g, w, embed_dim, std=embed_dim ** -0.5),
        "image_proj.proj_in.bias": rand(g, w, std=0.1),
        "image_proj.proj_out.weight": rand(g, cross, w, std=w ** -0.5),
        "image_proj.proj_out.bias": rand(g, cross, std=0.1),
        "image_proj.norm_out.weight": 1 + rand(g, cross, std=0.1),
        "image_proj.norm_out.bias": rand(g, cross, std=0.1),
    }
    for i in range(PLUS_DEPTH):
        p = f"image_proj.layers.{i}."
        for norm in ("0.norm1", "0.norm2", "1.0"):
            sd[p + norm + ".weight"] = 1 + rand(g, w, std=0.1)
            sd[p + norm + ".bias"] = rand(g, w, std=0.1)
        sd[p + "0.to_q.weight"] = rand(g, inner, w, std=w ** -0.5)
        sd[p + "0.to_kv.weight"] = rand(g, 2 * inner, w, std=w ** -0.5)
        sd[p + "0.to_out.weight"] = rand(g, w, inner, std=inner ** -0.5)
        sd[p + "1.1.weight"] = rand(g, PLUS_FF * w, w, std=w ** -0.5)
        sd[p + "1.3.weight"] = rand(g, w, PLUS_FF * w, std=(PLUS_FF * w) ** -0.5)
    sd.update(ip_adapter_part(g, unet))
    return sd


def pipeline_standin(unet, encoder):
    """Just what IPAdapterMixin and the SD pipeline's embed preparation read from `self`."""
    ns = types.SimpleNamespace(unet=unet, image_encoder=encoder, feature_extractor="unused: pixels are given")
    ns.encode_image = lambda *a, **k: StableDiffusionPipeline.encode_image(ns, *a, **k)
    return ns


def run_case(name, weight_file, pixels, refs, inputs):
    unet = UNet2DConditionModel.from_pretrained(os.path.join(OUT, "unet")).eval()
    encoder = CLIPVisionModelWithProjection.from_pretrained(os.path.join(OUT, "image_encoder")).eval()
    pipe = pipeline_standin(unet, encoder)
    IPAdapterMixin.load_ip_adapter(pipe, OUT, subfolder="", weight_name=weight_file, image_encoder_folder=None)
    assert all(isinstance(p, IPAdapterAttnProcessor2_0)
               for n, p in unet.attn_processors.items() if n.endswith("attn2.processor"))
    embeds = StableDiffusionPipeline.prepare_ip_adapter_image_embeds(
        pipe, pixels, None, "cpu", num_images_per_prompt=1, do_classifier_free_guidance=True)
    refs[f"{name}.embeds"] = embeds[0]                        # [2 (uncond, cond), images, ...]
    tokens = unet.encoder_hid_proj(embeds)[0]                 # [2, images, tokens, cross]
    refs[f"{name}.tokens"] = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])
    for scale in (SCALE, 0.0):
        IPAdapterMixin.set_ip_adapter_scale(pipe, scale)
        out = unet(inputs["sample"], inputs["timestep"], encoder_hidden_states=inputs["context"],
                   added_cond_kwargs={"image_embeds": embeds}).sample
        refs[f"{name}.out" if scale else f"{name}.out_scale0"] = out


def ip_key_listing(config_name):
    """Loads IP-Adapter numbering straight from diffusers for a real UNet config (built on the
    meta device, so nothing real-sized is allocated): each to_k_ip tensor handed out carries its
    own number, and the processor records what it was given."""
    with open(os.path.join(MODELS, "unet_real_configs", config_name, "config.json")) as f:
        config = json.load(f)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)

    class Numbered(dict):
        def __getitem__(self, key):
            return torch.tensor(float(key.split(".")[0]))

    seen = {}

    def record(self, state_dict, *args, **kwargs):
        seen[id(self)] = int(state_dict["to_k_ip.0.weight"].item())

    original_init, original_load = IPAdapterAttnProcessor2_0.__init__, IPAdapterAttnProcessor2_0.load_state_dict

    def small_init(self, hidden_size, cross_attention_dim=None, num_tokens=(4,), scale=1.0):
        original_init(self, 1, 1, num_tokens, scale)      # real widths are irrelevant to numbering

    IPAdapterAttnProcessor2_0.__init__, IPAdapterAttnProcessor2_0.load_state_dict = small_init, record
    try:
        procs = unet._convert_ip_adapter_attn_to_diffusers(
            [{"image_proj": {"proj.weight": None}, "ip_adapter": Numbered()}], low_cpu_mem_usage=False)
    finally:
        IPAdapterAttnProcessor2_0.__init__, IPAdapterAttnProcessor2_0.load_state_dict = original_init, original_load
    lines = [f"{name} {seen.get(id(proc), '-')}" for name, proc in procs.items()]
    assert list(procs) == list(unet.attn_processors)
    with open(os.path.join(OUT, f"{config_name}_ip_keys.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return sum(1 for l in lines if not l.endswith(" -"))


def main():
    torch.set_grad_enabled(False)
    os.makedirs(OUT, exist_ok=True)
    for folder in ("unet", "image_encoder"):
        shutil.rmtree(os.path.join(OUT, folder), ignore_errors=True)
        shutil.copytree(os.path.join(MODELS, "sd1", folder), os.path.join(OUT, folder))

    unet = UNet2DConditionModel.from_pretrained(os.path.join(OUT, "unet"))
    encoder = CLIPVisionModelWithProjection.from_pretrained(os.path.join(OUT, "image_encoder"))
    g = torch.Generator().manual_seed(20240817)
    save_file(plain_adapter(g, unet, encoder.config.projection_dim), os.path.join(OUT, "ip_adapter_plain.safetensors"))
    save_file(plus_adapter(g, unet, encoder.config.hidden_size), os.path.join(OUT, "ip_adapter_plus.safetensors"))

    size = encoder.config.image_size
    inputs = {
        "sample": torch.randn(2, 4, 16, 16, generator=g),
        "timestep": torch.tensor(500.0),
        "context": torch.randn(2, 5, unet.config.cross_attention_dim, generator=g),
    }
    one = torch.randn(1, 3, size, size, generator=g)          # already-normalized pixel values
    two = torch.randn(2, 3, size, size, generator=g)          # two reference images for one adapter
    refs = dict(inputs)
    refs["pixels_one"], refs["pixels_two"] = one, two
    run_case("plain", "ip_adapter_plain.safetensors", one, refs, inputs)
    run_case("plus", "ip_adapter_plus.safetensors", one, refs, inputs)
    run_case("plain_two", "ip_adapter_plain.safetensors", two, refs, inputs)
    run_case("plus_two", "ip_adapter_plus.safetensors", two, refs, inputs)
    refs["plain_unet.out"] = unet(inputs["sample"], inputs["timestep"], encoder_hidden_states=inputs["context"]).sample
    refs["timestep"] = refs["timestep"].reshape(1)
    save_file({k: v.float().contiguous() for k, v in refs.items()}, os.path.join(OUT, "reference.safetensors"),
              metadata={"torch": torch.__version__})  # one key: safetensors does not order metadata

    counts = {name: ip_key_listing(name) for name in ("sd15", "sdxl_base")}
    print("wrote", OUT, "; IP layers per real config:", counts)


if __name__ == "__main__":
    main()
