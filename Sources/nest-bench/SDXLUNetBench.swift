import Foundation
import NestEngine
import NestModels

/// The published SDXL base 1.0 `unet/config.json` (stabilityai/stable-diffusion-xl-base-1.0).
let sdxlBaseUNetConfig = """
{"act_fn": "silu", "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
 "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
 "center_input_sample": false, "class_embed_type": null, "class_embeddings_concat": false, "conv_in_kernel": 3,
 "conv_out_kernel": 3, "cross_attention_dim": 2048, "cross_attention_norm": null,
 "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], "downsample_padding": 1,
 "dual_cross_attention": false, "encoder_hid_dim": null, "encoder_hid_dim_type": null, "flip_sin_to_cos": true,
 "freq_shift": 0, "in_channels": 4, "layers_per_block": 2, "mid_block_only_cross_attention": null,
 "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32,
 "num_attention_heads": null, "num_class_embeds": null, "only_cross_attention": false, "out_channels": 4,
 "projection_class_embeddings_input_dim": 2816, "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": false,
 "resnet_time_scale_shift": "default", "sample_size": 128, "time_cond_proj_dim": null, "time_embedding_act_fn": null,
 "time_embedding_dim": null, "time_embedding_type": "positional", "timestep_post_act": null,
 "transformer_layers_per_block": [1, 2, 10],
 "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "upcast_attention": null,
 "use_linear_projection": true}
"""

/// `nest-bench sdxl-unet [--batch N]`: the real-size SDXL UNet (random
/// weights) on 128×128 latents (1024² images), one forward pass: build time,
/// forward time, and the engine's peak tensor memory during the pass.
/// Run under `/usr/bin/time -v` for the process's maximum resident size.
func benchSDXLUNet(arguments: [String]) {
    let batch = arguments.firstIndex(of: "--batch").flatMap { Int(arguments[$0 + 1]) } ?? 1
    let config = try! UNet2DConditionConfig.decode(Data(sdxlBaseUNetConfig.utf8), name: "sdxl-base unet/config.json")
    var unet: UNet2DConditionModel!
    let buildTime = seconds { unet = UNet2DConditionModel(config: config, seed: 1) }
    // diffusers builds 2,567,463,684 parameters from this config.
    print("SDXL UNet: \(unet.parameterCount) parameters (diffusers: 2567463684), "
          + String(format: "%.1f GiB float32, built in %.1f s", Double(unet.parameterCount * 4) / 1073741824, buildTime))

    let sample = Tensor.randn([batch, 128, 128, 4], seed: 11)
    let context = Tensor.randn([batch, 77, 2048], seed: 12)
    let pooled = Tensor.randn([batch, 1280], seed: 13)
    let timeIds = Tensor(Array(repeating: [1024, 1024, 0, 0, 1024, 1024] as [Float], count: batch).flatMap { $0 },
                         shape: [batch, 6])
    var peak = 0
    var out: Tensor!
    let forwardTime = seconds {
        (out, peak) = MemoryStats.measurePeak {
            unet(sample: sample, timestep: [999], encoderHiddenStates: context, added: (pooled, timeIds))
        }
    }
    let finite = out.array.allSatisfy { $0.isFinite }
    // torch's FlopCounterMode counts 6761 GFLOP for one batch item of this pass.
    print("SDXL UNet forward, batch \(batch), 128×128 latents: "
          + String(format: "%.1f s (%.1f GFLOP/s of 6761 GFLOP per item); ", forwardTime, 6761 * Double(batch) / forwardTime)
          + String(format: "peak tensor memory on the calling thread %.2f GiB; ", Double(peak) / 1073741824)
          + "output \(out.shape), all finite: \(finite)")
}
