/// The key tables of the original Stable Diffusion checkpoint layout (the single
/// `.safetensors` files the popular web UIs load), one per component, from diffusers
/// parameter names to the names those files use.
///
/// The UNet's flat `input_blocks.N` / `output_blocks.N` numbering counts every ResNet
/// (with its attention) and every resampler of the down and up paths in order, so
/// its rules compute N from the block and layer numbers and the config's layers
/// per level. Everything else is a rename, plus the few value transforms the
/// original modules need (1×1 convolutions, fused attention projections, a
/// transposed projection matrix).
public enum OriginalLayout {
    static let resnetRenames: KeyValuePairs<String, String> = [
        "norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
        "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection",
    ]

    /// `model.diffusion_model.*` for a UNet of this config.
    public static func unet(_ config: UNet2DConditionConfig) -> KeyTable {
        let layers = config.levels.map(\.layers)
        let n = layers.count
        // Down block b's first ResNet; block 0 follows conv_in (input_blocks.0).
        let downStart = (0...n).map { b in 1 + layers.prefix(b).reduce(0) { $0 + $1 + 1 } }
        // Up block b mirrors level n-1-b with one more ResNet; its resampler follows its last ResNet.
        let upLayers = layers.reversed().map { $0 + 1 }
        let upStart = (0...n).map { b in upLayers.prefix(b).reduce(0, +) }
        let upHasAttention = config.upBlockTypes.map { $0 == .crossAttention }
        @Sendable func resnet(_ rest: String) -> String { renamingHead(rest, resnetRenames) }
        return KeyTable(originalPrefix: "model.diffusion_model.", rules: [
            KeyRule("conv_in.*") { "input_blocks.0.0.\($0.rest)" },
            KeyRule("time_embedding.linear_1.*") { "time_embed.0.\($0.rest)" },
            KeyRule("time_embedding.linear_2.*") { "time_embed.2.\($0.rest)" },
            KeyRule("add_embedding.linear_1.*") { "label_emb.0.0.\($0.rest)" },
            KeyRule("add_embedding.linear_2.*") { "label_emb.0.2.\($0.rest)" },
            KeyRule("down_blocks.#.resnets.#.*") { m in
                "input_blocks.\(downStart[m.numbers[0]] + m.numbers[1]).0.\(resnet(m.rest))"
            },
            KeyRule("down_blocks.#.attentions.#.*") { m in
                "input_blocks.\(downStart[m.numbers[0]] + m.numbers[1]).1.\(m.rest)"
            },
            KeyRule("down_blocks.#.downsamplers.0.conv.*") { m in
                "input_blocks.\(downStart[m.numbers[0] + 1] - 1).0.op.\(m.rest)"
            },
            KeyRule("mid_block.resnets.#.*") { m in "middle_block.\(2 * m.numbers[0]).\(resnet(m.rest))" },
            KeyRule("mid_block.attentions.0.*") { "middle_block.1.\($0.rest)" },
            KeyRule("up_blocks.#.resnets.#.*") { m in
                "output_blocks.\(upStart[m.numbers[0]] + m.numbers[1]).0.\(resnet(m.rest))"
            },
            KeyRule("up_blocks.#.attentions.#.*") { m in
                "output_blocks.\(upStart[m.numbers[0]] + m.numbers[1]).1.\(m.rest)"
            },
            // The upsampler shares the last ResNet's output block, after its attention when there is one.
            KeyRule("up_blocks.#.upsamplers.0.conv.*") { m in
                let b = m.numbers[0]
                return "output_blocks.\(upStart[b + 1] - 1).\(upHasAttention[b] ? 2 : 1).conv.\(m.rest)"
            },
            KeyRule("conv_norm_out.*") { "out.0.\($0.rest)" },
            KeyRule("conv_out.*") { "out.2.\($0.rest)" },
        ])
    }

    /// `first_stage_model.*` for a VAE with `levels` resolution levels.
    public static func vae(levels: Int) -> KeyTable {
        let shortcut: KeyValuePairs<String, String> = ["conv_shortcut": "nin_shortcut"]
        // The mid attention's projections are 1×1 convolutions there, linear layers here.
        let projection: @Sendable (KeyRule.Match) -> KeyTransform = { $0.rest == "weight" ? .squeezeConvolution : .same }
        var rules: [KeyRule] = [
            KeyRule("quant_conv.*") { "quant_conv.\($0.rest)" },
            KeyRule("post_quant_conv.*") { "post_quant_conv.\($0.rest)" },
            KeyRule("encoder.down_blocks.#.resnets.#.*") { m in
                "encoder.down.\(m.numbers[0]).block.\(m.numbers[1]).\(renamingHead(m.rest, shortcut))"
            },
            KeyRule("encoder.down_blocks.#.downsamplers.0.conv.*") { "encoder.down.\($0.numbers[0]).downsample.conv.\($0.rest)" },
            // The decoder's up blocks run from the deepest level up; the original numbers them by level.
            KeyRule("decoder.up_blocks.#.resnets.#.*") { m in
                "decoder.up.\(levels - 1 - m.numbers[0]).block.\(m.numbers[1]).\(renamingHead(m.rest, shortcut))"
            },
            KeyRule("decoder.up_blocks.#.upsamplers.0.conv.*") { "decoder.up.\(levels - 1 - $0.numbers[0]).upsample.conv.\($0.rest)" },
        ]
        for part in ["encoder", "decoder"] {
            rules += [
                KeyRule("\(part).conv_in.*") { "\(part).conv_in.\($0.rest)" },
                KeyRule("\(part).conv_out.*") { "\(part).conv_out.\($0.rest)" },
                KeyRule("\(part).conv_norm_out.*") { "\(part).norm_out.\($0.rest)" },
                KeyRule("\(part).mid_block.resnets.#.*") { m in
                    "\(part).mid.block_\(m.numbers[0] + 1).\(renamingHead(m.rest, shortcut))"
                },
                KeyRule("\(part).mid_block.attentions.0.group_norm.*") { "\(part).mid.attn_1.norm.\($0.rest)" },
                KeyRule("\(part).mid_block.attentions.0.to_q.*", transform: projection) { "\(part).mid.attn_1.q.\($0.rest)" },
                KeyRule("\(part).mid_block.attentions.0.to_k.*", transform: projection) { "\(part).mid.attn_1.k.\($0.rest)" },
                KeyRule("\(part).mid_block.attentions.0.to_v.*", transform: projection) { "\(part).mid.attn_1.v.\($0.rest)" },
                KeyRule("\(part).mid_block.attentions.0.to_out.0.*", transform: projection) {
                    "\(part).mid.attn_1.proj_out.\($0.rest)"
                },
            ]
        }
        return KeyTable(originalPrefix: "first_stage_model.", rules: rules)
    }

    /// OpenAI CLIP text encoders as transformers stores them (SD 1.x, SDXL's first): the same names under `prefix`.
    public static func clip(prefix: String) -> KeyTable {
        KeyTable(originalPrefix: prefix, rules: [KeyRule("text_model.*") { "text_model.\($0.rest)" }])
    }

    /// OpenCLIP text encoders (SD 2.x, SDXL's second): one fused in_proj for q, k and v,
    /// `positional_embedding` as a bare tensor, and `text_projection` applied as x·P.
    public static func openCLIP(prefix: String) -> KeyTable {
        let layer = "text_model.encoder.layers.#."
        @Sendable func block(_ m: KeyRule.Match) -> String { "transformer.resblocks.\(m.numbers[0])." }
        var rules: [KeyRule] = [
            KeyRule("text_model.embeddings.token_embedding.weight") { _ in "token_embedding.weight" },
            KeyRule("text_model.embeddings.position_embedding.weight") { _ in "positional_embedding" },
            KeyRule("text_model.final_layer_norm.*") { "ln_final.\($0.rest)" },
            KeyRule("text_projection.weight", transform: .transpose) { _ in "text_projection" },
            KeyRule(layer + "self_attn.out_proj.*") { block($0) + "attn.out_proj.\($0.rest)" },
            KeyRule(layer + "layer_norm1.*") { block($0) + "ln_1.\($0.rest)" },
            KeyRule(layer + "layer_norm2.*") { block($0) + "ln_2.\($0.rest)" },
            KeyRule(layer + "mlp.fc1.*") { block($0) + "mlp.c_fc.\($0.rest)" },
            KeyRule(layer + "mlp.fc2.*") { block($0) + "mlp.c_proj.\($0.rest)" },
        ]
        for (part, projection) in ["q_proj", "k_proj", "v_proj"].enumerated() {
            for kind in ["weight", "bias"] {
                rules.append(KeyRule(layer + "self_attn.\(projection).\(kind)", transform: .slice(part: part, parts: 3)) {
                    block($0) + "attn.in_proj_\(kind)"
                })
            }
        }
        return KeyTable(originalPrefix: prefix, rules: rules)
    }
}
