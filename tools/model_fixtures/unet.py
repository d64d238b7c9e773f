"""Tiny UNet2DConditionModels (one per flavour) and their reference outputs.

Used by tools/make_model_fixtures.py (`--only unet`). The tiny configs keep each
flavour's distinguishing features:
  sd1:  CrossAttn then plain blocks, conv proj_in/proj_out, one head count for all
        blocks (diffusers' attention_head_dim quirk: it is the number of heads).
  sd2:  linear proj_in/proj_out, upcast_attention, a head count per block.
  sdxl: plain block first, two transformer layers in the deeper block, "text_time"
        added conditioning (pooled text embeds + 6 micro-conditioning ids).

Run directly with --real-configs to (re)write the published SD 1.5 and SDXL base
UNet configs together with diffusers' attention-processor keys and parameter names
for them (built on the meta device, so no weights are allocated):
    HF_HUB_OFFLINE=1 python3 tools/model_fixtures/unet.py --real-configs
"""
import json
import os
import sys

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.embeddings import get_timestep_embedding

FOLDERS = ["unet", "unet_only_cross"]
TIMESTEPS = [1, 500, 999]
# One timestep per batch item, in one call.
MIXED_TIMESTEPS = [10, 700]
LATENT = (2, 4, 16, 16)

COMMON = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "act_fn": "silu",
    "norm_eps": 1e-5,
    "downsample_padding": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
}

CONFIGS = {
    "sd1": dict(
        COMMON,
        down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
        block_out_channels=[8, 16],
        layers_per_block=2,
        norm_num_groups=4,
        attention_head_dim=2,
        cross_attention_dim=16,
        use_linear_projection=False,
    ),
    "sd2": dict(
        COMMON,
        down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        block_out_channels=[8, 16, 16],
        layers_per_block=1,
        norm_num_groups=4,
        attention_head_dim=[2, 4, 4],
        cross_attention_dim=16,
        use_linear_projection=True,
        upcast_attention=True,
    ),
    "sdxl": dict(
        COMMON,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
        block_out_channels=[8, 16],
        layers_per_block=1,
        norm_num_groups=4,
        attention_head_dim=[2, 4],
        transformer_layers_per_block=[1, 2],
        cross_attention_dim=24,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 16,
    ),
}
POOLED_DIM = 16  # sdxl text_embeds width

# A very small extra UNet (sd1 only) whose first level replaces self-attention
# with a second cross-attention (only_cross_attention), read from sd1's inputs.
ONLY_CROSS_CONFIG = dict(
    COMMON,
    down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[8, 8],
    layers_per_block=1,
    norm_num_groups=4,
    attention_head_dim=2,
    cross_attention_dim=16,
    only_cross_attention=[True, False],
)
TOKENS = 77


def build(flavour):
    models = {"unet": UNet2DConditionModel(**CONFIGS[flavour])}
    if flavour == "sd1":
        models["unet_only_cross"] = UNet2DConditionModel(**ONLY_CROSS_CONFIG)
    return models


@torch.no_grad()
def references(flavour, models):
    unet = models["unet"]
    cfg = CONFIGS[flavour]
    refs = {
        "sample": torch.randn(LATENT),
        "encoder_hidden_states": torch.randn(LATENT[0], TOKENS, cfg["cross_attention_dim"]),
    }
    added = None
    if cfg.get("addition_embed_type") == "text_time":
        refs["text_embeds"] = torch.randn(LATENT[0], POOLED_DIM)
        # original size, crop top-left, target size — as SDXL pipelines build them.
        refs["time_ids"] = torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0],
                                         [768.0, 1344.0, 16.0, 32.0, 1024.0, 1024.0]])
        added = {"text_embeds": refs["text_embeds"], "time_ids": refs["time_ids"]}

    def run(timestep):
        return unet(refs["sample"], timestep, refs["encoder_hidden_states"], added_cond_kwargs=added).sample

    for t in TIMESTEPS:
        refs[f"out_t{t}"] = run(t)
    refs["out_mixed"] = run(torch.tensor(MIXED_TIMESTEPS))
    if "unet_only_cross" in models:
        refs["only_cross_out_t500"] = models["unet_only_cross"](
            refs["sample"], 500, refs["encoder_hidden_states"]).sample
    # The sinusoidal embedding alone, in both orders and with a frequency shift.
    steps = torch.tensor([0.0, 1.0, 500.0, 999.0, 37.5])
    refs["time_proj_flip_shift0"] = get_timestep_embedding(steps, 32, flip_sin_to_cos=True, downscale_freq_shift=0)
    refs["time_proj_noflip_shift1"] = get_timestep_embedding(steps, 33, flip_sin_to_cos=False, downscale_freq_shift=1)
    refs["time_proj_steps"] = steps
    return refs


# Published unet/config.json values (runwayml/stable-diffusion-v1-5 and
# stabilityai/stable-diffusion-xl-base-1.0), as the hub serves them.
SD15_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

SDXL_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.19.0.dev0",
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}


def write_real_configs():
    root = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..",
                                         "Tests", "NestModelsTests", "Fixtures", "unet_real_configs"))
    for name, cfg in [("sd15", SD15_CONFIG), ("sdxl_base", SDXL_CONFIG)]:
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        with torch.device("meta"):
            model = UNet2DConditionModel.from_config(cfg)
        with open(os.path.join(folder, "attn_processors.txt"), "w") as f:
            f.write("\n".join(model.attn_processors.keys()) + "\n")
        # Parameter names in state_dict order: the checkpoint's tensor names.
        with open(os.path.join(folder, "parameters.txt"), "w") as f:
            f.write("\n".join(model.state_dict().keys()) + "\n")
        count = sum(p.numel() for p in model.parameters())
        print(f"{name}: {len(model.attn_processors)} attention processors, "
              f"{len(model.state_dict())} tensors, {count} parameters")


if __name__ == "__main__":
    if "--real-configs" in sys.argv:
        write_real_configs()
    else:
        print(__doc__)
