import NestModels

/// The original (LDM/sgm) names of the UNet's modules, which the web UI's SDXL LoRAs
/// use (`input_blocks_4_1_transformer_blocks_0_attn1_to_q`), as rows from diffusers'
/// module paths. The block numbering follows the config: each down level holds its
/// ResNets then its downsampler, each up level its ResNets (one more) with the
/// upsampler beside the last.
enum LDMNames {
    /// Modules outside the blocks.
    static let topLevel: [(diffusers: String, ldm: String)] = [
        ("conv_in", "input_blocks.0.0"), ("conv_out", "out.2"),
        ("time_embedding.linear_1", "time_embed.0"), ("time_embedding.linear_2", "time_embed.2"),
        ("add_embedding.linear_1", "label_emb.0.0"), ("add_embedding.linear_2", "label_emb.0.2"),
    ]

    /// Inside a ResNet; attention blocks keep diffusers' inner names.
    static let resnetInner: [(diffusers: String, ldm: String)] = [
        ("conv1", "in_layers.2"), ("conv2", "out_layers.3"),
        ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"),
    ]

    /// Block prefixes: diffusers' → LDM's, for this UNet.
    static func blocks(_ config: UNet2DConditionConfig) -> [(diffusers: String, ldm: String)] {
        var rows: [(String, String)] = []
        let levels = config.levels
        var index = 1
        for (i, level) in levels.enumerated() {
            for j in 0..<level.layers {
                rows.append(("down_blocks.\(i).resnets.\(j)", "input_blocks.\(index + j).0"))
                rows.append(("down_blocks.\(i).attentions.\(j)", "input_blocks.\(index + j).1"))
            }
            index += level.layers
            if i < levels.count - 1 {
                rows.append(("down_blocks.\(i).downsamplers.0.conv", "input_blocks.\(index).0.op"))
                index += 1
            }
        }
        rows += [("mid_block.resnets.0", "middle_block.0"), ("mid_block.attentions.0", "middle_block.1"),
                 ("mid_block.resnets.1", "middle_block.2")]
        index = 0
        for (u, level) in levels.reversed().enumerated() {
            let layers = level.layers + 1
            for j in 0..<layers {
                rows.append(("up_blocks.\(u).resnets.\(j)", "output_blocks.\(index + j).0"))
                rows.append(("up_blocks.\(u).attentions.\(j)", "output_blocks.\(index + j).1"))
            }
            let attends = config.upBlockTypes[u] == .crossAttention
            rows.append(("up_blocks.\(u).upsamplers.0.conv", "output_blocks.\(index + layers - 1).\(attends ? 2 : 1).conv"))
            index += layers
        }
        return rows
    }

    /// The LDM name of a UNet module path, or nil for modules LDM names differently.
    static func name(of path: String, blocks: [(diffusers: String, ldm: String)]) -> String? {
        if let row = topLevel.first(where: { $0.diffusers == path }) { return row.ldm }
        for row in blocks where path == row.diffusers || path.hasPrefix(row.diffusers + ".") {
            let inner = String(path.dropFirst(row.diffusers.count))
            guard row.diffusers.contains(".resnets.") else { return row.ldm + inner }
            let part = inner.hasPrefix(".") ? String(inner.dropFirst()) : inner
            guard let rename = resnetInner.first(where: { $0.diffusers == part }) else { return nil }
            return row.ldm + "." + rename.ldm
        }
        return nil
    }
}
