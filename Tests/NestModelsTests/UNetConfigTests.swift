import Foundation
import NestEngine
import NestModels
import Testing

/// The published SD 1.5 and SDXL base UNet configs with diffusers' attention
/// processor keys and tensor names for them (written by
/// `tools/model_fixtures/unet.py --real-configs`).
enum RealConfigs {
    static func url(_ name: String, _ file: String) -> URL {
        ModelFixtures.root.appendingPathComponent("unet_real_configs/\(name)/\(file)")
    }

    static func lines(_ name: String, _ file: String) throws -> [String] {
        try String(contentsOf: url(name, file), encoding: .utf8).split(separator: "\n").map(String.init)
    }

    static func json(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url(name, "config.json"))) as! [String: Any]
    }

    /// The config with every width scaled down by a common factor (which keeps
    /// which ResNets change width, hence which have a conv_shortcut), one
    /// head per block and tiny text/time widths; block types and all layer
    /// counts stay as published.
    static func structuralMiniature(_ name: String) throws -> UNet2DConditionConfig {
        var cfg = try json(name)
        let channels = cfg["block_out_channels"] as! [Int]
        let unit = channels.reduce(channels[0]) { gcd($0, $1) }
        cfg["block_out_channels"] = channels.map { 2 * $0 / unit }
        cfg["norm_num_groups"] = 2
        cfg["attention_head_dim"] = (cfg["attention_head_dim"] is [Int]) ? channels.map { _ in 1 } : 1
        cfg["cross_attention_dim"] = 4
        if cfg["addition_embed_type"] as? String == "text_time" {
            cfg["addition_time_embed_dim"] = 2
            cfg["projection_class_embeddings_input_dim"] = 6 * 2 + 4
        }
        return try UNet2DConditionConfig.decode(JSONSerialization.data(withJSONObject: cfg))
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
}

@Suite struct UNetConfigTests {
    /// The SD 1.5 config with `change` applied; returns the decoding error's text.
    func error(_ change: (inout [String: Any]) -> Void) throws -> String {
        var cfg = try RealConfigs.json("sd15")
        change(&cfg)
        do {
            _ = try UNet2DConditionConfig.decode(JSONSerialization.data(withJSONObject: cfg))
            return "(no error)"
        } catch let error as ModelConfigError {
            #expect(!error.description.contains("\n"), "one line")
            return error.description
        }
    }

    @Test func unknownBlockTypesAreNamed() throws {
        #expect(try error { $0["up_block_types"] = ["UpBlock2D", "AttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"] }
            == "unet/config.json: unsupported up_block_types entry 'AttnUpBlock2D'")
        #expect(try error { $0["down_block_types"] = ["SimpleCrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"] }
            .contains("unsupported down_block_types entry 'SimpleCrossAttnDownBlock2D'"))
        #expect(try error { $0["mid_block_type"] = "UNetMidBlock2DSimpleCrossAttn" }
            .contains("unsupported mid_block_type 'UNetMidBlock2DSimpleCrossAttn'"))
    }

    @Test func missingKeysAreNamed() throws {
        #expect(try error { $0["block_out_channels"] = nil } == "unet/config.json: missing key 'block_out_channels'")
        #expect(try error { $0["cross_attention_dim"] = nil }.contains("missing key 'cross_attention_dim'"))
    }

    @Test func mismatchedListsAreNamed() throws {
        #expect(try error { $0["block_out_channels"] = [320, 640, 1280] }
            .contains("block_out_channels has 3 entries but down_block_types has 4"))
        #expect(try error { $0["up_block_types"] = ["UpBlock2D", "CrossAttnUpBlock2D"] }
            .contains("up_block_types has 2 entries but down_block_types has 4"))
        #expect(try error { $0["attention_head_dim"] = [5, 10] }
            .contains("attention_head_dim has 2 entries but the model has 4 blocks"))
        #expect(try error { $0["layers_per_block"] = [2, 2, 2] }.contains("layers_per_block has 3 entries"))
        #expect(try error { $0["transformer_layers_per_block"] = [1, 2] }.contains("transformer_layers_per_block has 2 entries"))
    }

    @Test func unsupportedOptionsAreRefusedByName() throws {
        let cases: [(String, Any, String)] = [
            ("center_input_sample", true, "center_input_sample true is not supported"),
            ("class_embed_type", "timestep", "class_embed_type 'timestep' is not supported"),
            ("addition_embed_type", "text", "addition_embed_type 'text' is not supported"),
            ("encoder_hid_dim", 1024, "encoder_hid_dim 1024 is not supported"),
            ("dual_cross_attention", true, "dual_cross_attention true is not supported"),
            ("time_cond_proj_dim", 0, "time_cond_proj_dim"),
            ("time_embedding_type", "fourier", "time_embedding_type 'fourier' is not supported"),
            ("num_attention_heads", 8, "num_attention_heads is not supported"),
            ("resnet_time_scale_shift", "spatial", "resnet_time_scale_shift 'spatial' is not supported"),
            ("reverse_transformer_layers_per_block", [[1], [1], [1], [1]], "reverse_transformer_layers_per_block is not supported"),
            ("transformer_layers_per_block", [[1, 1], [1, 1], [1, 1], [1, 1]], "transformer_layers_per_block as a list of lists"),
            ("norm_num_groups", 48, "norm_num_groups 48 does not divide block_out_channels entry 320"),
            ("attention_head_dim", 3, "attention_head_dim entry 3 (the number of heads) does not divide block_out_channels entry 320"),
            ("norm_num_groups", NSNull(), "norm_num_groups null is not supported"),
        ]
        for (key, value, message) in cases {
            let text = try error { $0[key] = value }
            #expect(text.hasPrefix("unet/config.json: ") && text.contains(message), "\(key): \(text)")
        }
    }

    @Test func optionalPartsFollowDiffusers() throws {
        var cfg = try RealConfigs.json("sd15")
        cfg["mid_block_type"] = NSNull()
        cfg["only_cross_attention"] = [true, false, false, false]
        let config = try UNet2DConditionConfig.decode(JSONSerialization.data(withJSONObject: cfg))
        #expect(!config.hasMidBlock, "null mid_block_type: no mid block")
        #expect(config.levels.map(\.onlyCrossAttention) == [true, false, false, false])
        cfg["mid_block_type"] = nil
        #expect(try UNet2DConditionConfig.decode(JSONSerialization.data(withJSONObject: cfg)).hasMidBlock,
                "absent mid_block_type: diffusers' default mid block")
    }
}
