#!/usr/bin/env python3
"""LoRA and textual-inversion references: random LoRAs for the tiny SD1 and SDXL
pipelines of tools/make_pipeline_fixtures.py in both file layouts, textual-inversion
embeddings in both layouts, and the images diffusers generates with each.

    pip install torch==2.13.0+cpu diffusers==0.42.1 transformers peft safetensors
    HF_HUB_OFFLINE=1 python3 tools/make_lora_fixtures.py

For each pipeline a LoRA with random, non-zero A and B (rank 4, lora_alpha 8) is put
on the UNet (attention, feed-forward, 1×1 and 3×3 convolutions, time embedding) and
on every text encoder with PEFT; the image it gives is the reference. The same weights
are then written twice:
  * diffusers/PEFT layout with `save_lora_weights` (alpha in the file's metadata);
  * diffusers' older attention-processor layout (`…attn1.processor.to_q_lora.down.weight`,
    UNet attention pairs only), its reference being the image diffusers loads it to;
  * web-UI (kohya) layout: `lora_unet_*` / `lora_te*_*` names with `.lora_down`,
    `.lora_up` and `.alpha` tensors; SD1 names are diffusers' module paths joined by
    underscores, SDXL UNet names are the original LDM names (LDM_* tables below).
Both files are loaded back into a fresh pipeline with diffusers' `load_lora_weights`
and must reproduce the reference image, so the kohya names are checked by diffusers'
own converter. One more image has the web-UI LoRA merged into the weights (`fuse_lora`). Embeddings: diffusers' `learned_embeds` layout ({token: [n, dim]}) and
the web UI's (`emb_params`; SDXL `clip_l` + `clip_g`), loaded with `load_textual_inversion`.

Writes Tests/NestPersonalizationTests/Fixtures/lora/: the LoRA and embedding files,
cases.json and images.safetensors (output_type="np" images).
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
from make_model_fixtures import seed_for  # noqa: E402
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline  # noqa: E402
from peft import LoraConfig, inject_adapter_in_model  # noqa: E402

TESTS = os.path.join(os.path.dirname(__file__), "..", "Tests")
PIPELINES = os.path.join(TESTS, "NestDiffusionTests", "Fixtures", "pipelines")
OUT = os.path.join(TESTS, "NestPersonalizationTests", "Fixtures", "lora")
RANK, ALPHA = 4, 8.0

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                "conv1", "conv2", "conv_shortcut", "time_emb_proj", "downsamplers.0.conv", "upsamplers.0.conv",
                "time_embedding.linear_1", "conv_in", "conv_out"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]

# diffusers module path -> LDM (sgm) name, the names the web UI writes for SDXL UNets.
LDM_TOP = {"conv_in": "input_blocks.0.0", "conv_out": "out.2", "time_embedding.linear_1": "time_embed.0",
           "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
           "add_embedding.linear_2": "label_emb.0.2"}
LDM_RESNET = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
              "conv_shortcut": "skip_connection"}


def ldm_blocks(config):
    """Block prefixes, numbered as the LDM UNet numbers its input/output blocks."""
    rows, index = [], 1
    levels = len(config.block_out_channels)
    layers = config.layers_per_block
    for i in range(levels):
        for j in range(layers):
            rows.append((f"down_blocks.{i}.resnets.{j}", f"input_blocks.{index + j}.0"))
            rows.append((f"down_blocks.{i}.attentions.{j}", f"input_blocks.{index + j}.1"))
        index += layers
        if i < levels - 1:
            rows.append((f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks.{index}.0.op"))
            index += 1
    rows += [("mid_block.resnets.0", "middle_block.0"), ("mid_block.attentions.0", "middle_block.1"),
             ("mid_block.resnets.1", "middle_block.2")]
    index = 0
    for u, kind in enumerate(config.up_block_types):
        n = layers + 1
        for j in range(n):
            rows.append((f"up_blocks.{u}.resnets.{j}", f"output_blocks.{index + j}.0"))
            rows.append((f"up_blocks.{u}.attentions.{j}", f"output_blocks.{index + j}.1"))
        slot = 2 if kind.startswith("CrossAttn") else 1
        rows.append((f"up_blocks.{u}.upsamplers.0.conv", f"output_blocks.{index + n - 1}.{slot}.conv"))
        index += n
    return rows


def ldm_name(path, blocks):
    if path in LDM_TOP:
        return LDM_TOP[path]
    for diffusers, ldm in blocks:
        if path == diffusers or path.startswith(diffusers + "."):
            inner = path[len(diffusers) + 1:]
            if ".resnets." in diffusers:
                return ldm + "." + LDM_RESNET[inner]
            return ldm + ("." + inner if inner else "")
    raise KeyError(path)


def kohya_state_dict(peft_dicts, xl, unet_config):
    """The PEFT weights under the web UI's names, with an alpha tensor per pair."""
    blocks = ldm_blocks(unet_config)
    prefixes = {"unet": "lora_unet_", "text_encoder": "lora_te1_" if xl else "lora_te_", "text_encoder_2": "lora_te2_"}
    out = {}
    for component, sd in peft_dicts.items():
        for key, value in sd.items():
            module, part = key.rsplit(".lora_", 1)
            if component == "unet" and xl:
                module = ldm_name(module, blocks)
            elif component != "unet" and not module.startswith("text_model."):
                # transformers 5 drops CLIP's text_model level; the web UI's names keep it.
                module = "text_model." + module
            name = prefixes[component] + module.replace(".", "_")
            out[name + (".lora_down.weight" if part.startswith("A") else ".lora_up.weight")] = value.contiguous()
            out[name + ".alpha"] = torch.tensor(ALPHA)
    return out


def load(flavour):
    folder = os.path.join(PIPELINES, flavour)
    if flavour == "sdxl":
        pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    else:
        pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def encoders(pipe):
    names = ["text_encoder", "text_encoder_2"] if isinstance(pipe, StableDiffusionXLPipeline) else ["text_encoder"]
    return {name: getattr(pipe, name) for name in names}


@torch.no_grad()
def add_random_lora(pipe, flavour):
    """PEFT adapters with random A and B on the UNet and text encoders; their state dicts."""
    g = torch.Generator().manual_seed(seed_for("lora", flavour))
    models = {"unet": pipe.unet, **encoders(pipe)}
    dicts, configs = {}, {}
    for component, model in models.items():
        targets = UNET_TARGETS if component == "unet" else TEXT_TARGETS
        config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=targets, init_lora_weights=False)
        if component == "unet":
            model.add_adapter(config)
        else:
            inject_adapter_in_model(config, model)  # transformers' add_adapter wants a newer peft
        dicts[component], configs[component] = {}, config.to_dict()
        for name, p in sorted(model.named_parameters()):
            if "lora_" in name:
                # Values float16 can hold exactly: the files are written in float16.
                p.copy_((torch.randn(p.shape, generator=g) * 0.15).half().float())
                dicts[component][name.replace(".default.", ".")] = p.detach().half()
    return dicts, configs


def run(pipe, case):
    extra = {"cross_attention_kwargs": {"scale": case["scale"]}} if case.get("scale", 1.0) != 1.0 else {}
    return pipe(prompt=case["prompt"], num_inference_steps=case["steps"], guidance_scale=case["guidance"],
                generator=torch.Generator("cpu").manual_seed(case["seed"]), output_type="np", **extra).images


def check_same(a, b, what):
    diff = float(abs(a - b).max())
    print(f"  {what}: max |Δ| {diff:.2e}")
    assert diff < 1e-4, f"{what} differs from the PEFT-applied image by {diff}"


def lora_cases(flavour, images, cases):
    seed = 40 if flavour == "sd1" else 50
    base_case = dict(flavour=flavour, prompt="a photo of a cat", steps=3, guidance=7.5, seed=seed)
    pipe = load(flavour)
    base = run(pipe, base_case)
    images[f"{flavour}_base"] = base
    cases.append(dict(base_case, name=f"{flavour}_base", loras=[]))
    dicts, configs = add_random_lora(pipe, flavour)
    scaled = dict(base_case, scale=0.5)
    reference = {1.0: run(pipe, base_case), 0.5: run(pipe, scaled)}
    assert float(abs(reference[1.0] - base).max()) > 0.05, "the LoRA must visibly change the image"

    peft_file = f"{flavour}_peft.safetensors"
    cls = type(pipe)
    # The adapter configs as diffusers' training scripts store them: alpha travels in the metadata.
    metadata = {f"{c}_lora_adapter_metadata": config for c, config in configs.items()}
    cls.save_lora_weights(OUT, weight_name=peft_file, safe_serialization=True,
                          **{f"{c}_lora_layers": d for c, d in dicts.items()}, **metadata)
    kohya_file = f"{flavour}_kohya.safetensors"
    save_file(kohya_state_dict(dicts, flavour == "sdxl", pipe.unet.config), os.path.join(OUT, kohya_file))

    for file in (peft_file, kohya_file):
        fresh = load(flavour)
        fresh.load_lora_weights(OUT, weight_name=file)
        check_same(run(fresh, base_case), reference[1.0], f"{file} through load_lora_weights")
        check_same(run(fresh, scaled), reference[0.5], f"{file} at scale 0.5")
    for file, scale in ((peft_file, 1.0), (kohya_file, 1.0), (kohya_file, 0.5)):
        name = f"{file.split('.')[0]}_{scale}"
        images[name] = reference[scale]
        cases.append(dict(base_case, name=name, loras=[dict(file=file, scale=scale)]))

    # diffusers with the LoRA merged into the weights (fuse_lora) at 0.8.
    fused = load(flavour)
    fused.load_lora_weights(OUT, weight_name=kohya_file)
    fused.fuse_lora(lora_scale=0.8)
    fused.unload_lora_weights()
    name = f"{flavour}_kohya_fused_0.8"
    images[name] = run(fused, base_case)
    cases.append(dict(base_case, name=name, loras=[dict(file=kohya_file, scale=0.8)]))

    # diffusers' older attention-processor layout, UNet attention only.
    procs = {}
    for key, value in dicts["unet"].items():
        module, part = key.rsplit(".lora_", 1)
        for proj, old in (("to_q", "to_q"), ("to_k", "to_k"), ("to_v", "to_v"), ("to_out.0", "to_out")):
            if module.endswith("." + proj) and ".attn" in module:
                stem = "unet." + module[: -len(proj)] + "processor." + old + "_lora"
                procs[stem + (".down.weight" if part.startswith("A") else ".up.weight")] = value
    procs_file = f"{flavour}_attn_procs.safetensors"
    save_file(procs, os.path.join(OUT, procs_file))
    fresh = load(flavour)
    fresh.load_lora_weights(OUT, weight_name=procs_file)
    name = f"{flavour}_attn_procs_1.0"
    images[name] = run(fresh, base_case)
    assert float(abs(images[name] - base).max()) > 0.02, "the attention-processor LoRA must change the image"
    cases.append(dict(base_case, name=name, loras=[dict(file=procs_file, scale=1.0)]))


def embedding_cases(images, cases):
    g = torch.Generator().manual_seed(seed_for("embeddings"))
    sd1 = load("sd1")
    dim = sd1.text_encoder.config.hidden_size
    save_file({"<glow>": torch.randn(2, dim, generator=g) * 0.5}, os.path.join(OUT, "learned_embeds.safetensors"))
    save_file({"emb_params": torch.randn(3, dim, generator=g) * 0.5}, os.path.join(OUT, "inkstyle.safetensors"))
    sd1.load_textual_inversion(os.path.join(OUT, "learned_embeds.safetensors"))
    sd1.load_textual_inversion(os.path.join(OUT, "inkstyle.safetensors"), token="inkstyle")
    case = dict(flavour="sd1", prompt="a <glow> cat, inkstyle", steps=3, guidance=7.5, seed=41, name="sd1_embeddings",
                embeddings=[dict(file="learned_embeds.safetensors"), dict(file="inkstyle.safetensors", token="inkstyle")])
    images[case["name"]] = run(sd1, case)
    cases.append(case)

    xl = load("sdxl")
    dims = [xl.text_encoder.config.hidden_size, xl.text_encoder_2.config.hidden_size]
    tensors = {"clip_l": torch.randn(2, dims[0], generator=g) * 0.5, "clip_g": torch.randn(2, dims[1], generator=g) * 0.5}
    save_file(tensors, os.path.join(OUT, "xlstyle.safetensors"))
    xl.load_textual_inversion(tensors["clip_l"], token="<xlstyle>", text_encoder=xl.text_encoder, tokenizer=xl.tokenizer)
    xl.load_textual_inversion(tensors["clip_g"], token="<xlstyle>", text_encoder=xl.text_encoder_2, tokenizer=xl.tokenizer_2)
    case = dict(flavour="sdxl", prompt="a dog, <xlstyle>", steps=3, guidance=5.0, seed=51, name="sdxl_embeddings",
                embeddings=[dict(file="xlstyle.safetensors", token="<xlstyle>")])
    images[case["name"]] = run(xl, case)
    cases.append(case)


def main():
    torch.set_grad_enabled(False)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    images, cases = {}, []
    for flavour in ("sd1", "sdxl"):
        print(flavour)
        lora_cases(flavour, images, cases)
    embedding_cases(images, cases)
    tensors = {k: torch.from_numpy(v).float().contiguous() for k, v in images.items()}
    save_file(tensors, os.path.join(OUT, "images.safetensors"), metadata={"torch": torch.__version__})
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(os.path.join(OUT, name)))
    # The PEFT file must hold what load_file reads back (a sanity check on the layout written).
    assert any(k.endswith("lora_A.weight") for k in load_file(os.path.join(OUT, "sd1_peft.safetensors")))


if __name__ == "__main__":
    main()
