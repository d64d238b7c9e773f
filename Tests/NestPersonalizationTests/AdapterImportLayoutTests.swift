import Foundation
import NestEngine
import NestModels
@testable import NestPersonalization
import Testing

/// The importer on the published encoder's real sizes, from names and shapes alone (no
/// values, nothing allocated): SDXL base's UNet config, an OpenCLIP ViT-H/14 image encoder,
/// IP-Adapter Plus XL's resampler with 1024 queries and a `to_k_ip`/`to_v_ip` pair on each
/// of SDXL's 70 cross-attentions, numbered as diffusers numbers IP-Adapter SDXL files
/// (Fixtures/ipadapter/sdxl_base_ip_keys.txt, listed from diffusers 0.42.1).
struct AdapterImportLayoutTests {
    /// Names and shapes only; reading a value is a test failure.
    struct ShapesOnly: WeightSource {
        let shapes: [String: [Int]]
        var tensorNames: [String] { shapes.keys.sorted() }
        func shape(of name: String) -> [Int]? { shapes[name] }
        func read(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
            Issue.record("\(name) was read while only planning")
        }
    }

    static let tests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    /// diffusers' IP-Adapter number of each SDXL base cross-attention (`path number` lines; self-attentions have `-`).
    static func diffusersNumbers() throws -> [(path: String, number: Int)] {
        let text = try String(contentsOf: tests.appendingPathComponent("NestPersonalizationTests/Fixtures/ipadapter/sdxl_base_ip_keys.txt"),
                              encoding: .utf8)
        return text.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ")
            return Int(parts[1]).map { (String(parts[0]), $0) }
        }
    }

    /// SDXL base's widths by block: 640 in down_blocks.1 and up_blocks.1, 1280 elsewhere.
    static func width(of path: String) -> Int {
        path.hasPrefix("down_blocks.1.") || path.hasPrefix("up_blocks.1.") ? 640 : 1280
    }

    static func publishedLayout(_ layers: [(path: String, number: Int)]) -> [String: [Int]] {
        var shapes: [String: [Int]] = ["image_proj.latents": [1, 1024, 1280], "image_proj.proj_in.weight": [1280, 1280],
                                       "image_proj.proj_in.bias": [1280], "image_proj.proj_out.weight": [2048, 1280],
                                       "image_proj.proj_out.bias": [2048], "image_proj.norm_out.weight": [2048],
                                       "image_proj.norm_out.bias": [2048]]
        for d in 0..<4 {
            let p = "image_proj.layers.\(d)."
            for norm in ["0.norm1", "0.norm2", "1.0"] { shapes[p + norm + ".weight"] = [1280]; shapes[p + norm + ".bias"] = [1280] }
            shapes[p + "0.to_q.weight"] = [1280, 1280]
            shapes[p + "0.to_kv.weight"] = [2560, 1280]
            shapes[p + "0.to_out.weight"] = [1280, 1280]
            shapes[p + "1.1.weight"] = [5120, 1280]
            shapes[p + "1.3.weight"] = [1280, 5120]
        }
        for (path, n) in layers {
            shapes["ip_adapter.\(n).to_k_ip.weight"] = [width(of: path), 2048]
            shapes["ip_adapter.\(n).to_v_ip.weight"] = [width(of: path), 2048]
        }
        return shapes
    }

    @Test func thePublishedLayoutPlansOnSDXLBase() throws {
        let unet = try UNet2DConditionConfig.load(
            from: Self.tests.appendingPathComponent("NestModelsTests/Fixtures/unet_real_configs/sdxl_base/config.json"))
        let vitH = try decodeConfig(CLIPVisionConfig.self, data: Data("""
            {"model_type": "clip_vision_model", "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
             "num_attention_heads": 16, "image_size": 224, "patch_size": 14, "hidden_act": "gelu", "projection_dim": 1024}
            """.utf8), name: "vit-h")
        let numbers = try Self.diffusersNumbers()
        #expect(numbers.count == 70)
        let plan = try AdapterImport(source: ShapesOnly(shapes: Self.publishedLayout(numbers)), unet: unet, imageEncoder: vitH,
                                     settings: AdapterImportSettings(placeholderToken: "<person>", classWord: "person",
                                                                     valueNormalization: 2))
        #expect(plan.config.resampler == Resampler.Config(embeddingDim: 1280, width: 1280, outputDim: 2048, depth: 4, heads: 20,
                                                          headDim: 64, queries: 1024, ffMult: 4))
        #expect(plan.layers.map(\.number) == numbers.map(\.number))
        #expect(plan.layers.map(\.path) == numbers.map(\.path))
        #expect(plan.layers.map(\.width) == numbers.map { Self.width(of: $0.path) })
        #expect(plan.config.imageEncoder == .init(hiddenSize: 1280, imageSize: 224, featureLayer: -2))
        #expect(plan.sources["layers.69.to_v.weight"] == "ip_adapter.139.to_v_ip.weight")
        #expect(plan.sources["resampler.layers.3.1.3.weight"] == "image_proj.layers.3.1.3.weight")
        #expect(plan.sources.count == 2 * 70 + 7 + 4 * 11)
    }
}
