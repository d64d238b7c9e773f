import Foundation
@testable import NestDiffusion
import NestEngine
import NestIO
import NestPersonalization
import Testing

/// LoRAs and textual inversions through the Generator against diffusers
/// (tools/make_lora_fixtures.py): both file layouts, UNet (3×3 convolutions included)
/// and text encoders, SD1 and SDXL; taken off again for a request without them.
@Suite(.serialized) struct LoRATests {
    struct Case: Decodable {
        struct LoRA: Decodable { let file: String; let scale: Float }
        struct Embedding: Decodable { let file: String; let token: String? }
        let name, flavour, prompt: String
        let steps: Int
        let guidance: Float
        let seed: UInt64
        let loras: [LoRA]?
        let embeddings: [Embedding]?
    }

    static let tests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = tests.appendingPathComponent("NestPersonalizationTests/Fixtures/lora")
    static let pipelines = tests.appendingPathComponent("NestDiffusionTests/Fixtures/pipelines")
    static let cases: [Case] = try! JSONDecoder().decode([Case].self, from: Data(contentsOf: fixtures.appendingPathComponent("cases.json")))
    static let images = try! SafeTensorsFile(path: fixtures.appendingPathComponent("images.safetensors").path)
    static let generators = GeneratorCache()

    final class GeneratorCache: @unchecked Sendable {
        private var loaded: [String: Generator] = [:]
        private let lock = NSLock()
        func get(_ flavour: String) throws -> Generator {
            lock.lock(); defer { lock.unlock() }
            if let g = loaded[flavour] { return g }
            let folder = LoRATests.pipelines.appendingPathComponent(flavour)
            let g = Generator(pipeline: try StableDiffusionPipeline.load(folder: folder), catalog: try AdapterCatalog(model: folder, named: []))
            loaded[flavour] = g
            return g
        }
    }

    static func file(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    static func request(_ c: Case, loras: [LoRAChoice]? = nil) -> GenerationRequest {
        var r = GenerationRequest(generation: GenerationConfiguration(prompt: c.prompt, steps: c.steps, guidanceScale: c.guidance,
                                                                      seed: c.seed, scheduler: .euler))
        r.loras = loras ?? (c.loras ?? []).map { LoRAChoice(path: file($0.file), scale: $0.scale) }
        r.embeddings = (c.embeddings ?? []).map { EmbeddingChoice(path: file($0.file), token: $0.token) }
        return r
    }

    static func generate(_ request: GenerationRequest, flavour: String) throws -> [UInt8] {
        var pixels: [UInt8] = []
        try generators.get(flavour).generate(request) { pixels = $0.image.pixels }
        return pixels
    }

    /// Largest difference from diffusers' image in 8-bit steps.
    static func worst(_ pixels: [UInt8], _ name: String) throws -> Int {
        let expected = try images.tensor(name)
        #expect(pixels.count == expected.count)
        var worst = 0
        for i in 0..<min(pixels.count, expected.count) {
            worst = max(worst, abs(Int(pixels[i]) - Int((expected.data[i] * 255).rounded())))
        }
        return worst
    }

    @Test(arguments: LoRATests.cases.map(\.name))
    func matchesDiffusers(name: String) throws {
        let c = Self.cases.first { $0.name == name }!
        let worst = try Self.worst(Self.generate(Self.request(c), flavour: c.flavour), name)
        print("lora parity \(name): max \(worst)/255")
        #expect(worst <= 1, "\(name): max |Δ| \(worst)/255 from diffusers")
    }

    @Test(arguments: ["sd1", "sdxl"])
    func requestsWithoutTheLoRAGiveTheBaseImage(flavour: String) throws {
        let base = Self.cases.first { $0.name == "\(flavour)_base" }!
        let lora = LoRAChoice(path: Self.file("\(flavour)_kohya.safetensors"))
        let plain = try Self.generate(Self.request(base), flavour: flavour)
        let with = try Self.generate(Self.request(base, loras: [lora]), flavour: flavour)
        let again = try Self.generate(Self.request(base), flavour: flavour)
        let zero = try Self.generate(Self.request(base, loras: [LoRAChoice(path: lora.path, scale: 0)]), flavour: flavour)
        #expect(with != plain, "the LoRA must change the image")
        #expect(again == plain, "a request without the LoRA must give the base image again")
        #expect(zero == plain, "a LoRA at scale 0 must give the base image")
    }

    @Test func aFileForAnotherArchitectureIsRefusedByName() throws {
        let generator = try Self.generators.get("sd1")
        let base = Self.cases.first { $0.name == "sd1_base" }!
        let cases: [(String, String)] = [
            (Self.file("sdxl_peft.safetensors"), "unet.down_blocks.1.attentions.0.proj_in.lora_A.weight names no layer"),
            (Self.file("sdxl_kohya.safetensors"), "another architecture"),
        ]
        for (path, needle) in cases {
            do {
                try generator.generate(Self.request(base, loras: [LoRAChoice(path: path)])) { _ in }
                Issue.record("\(path) must be refused")
            } catch {
                let text = String(describing: error)
                #expect(text.contains(needle) && text.contains(path) && text.contains(".weight") && !text.contains("\n"), "\(text)")
            }
        }
        // The refused files left nothing behind.
        let worst = try Self.worst(Self.generate(Self.request(base), flavour: "sd1"), "sd1_base")
        #expect(worst <= 1)
    }

    /// A LoRA whose tensors do not fit: a shape from another model, a name no layer has,
    /// a tensor that is not LoRA at all.
    @Test func unfittingTensorsAreNamed() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nest-lora-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let pipeline = try Self.generators.get("sd1").pipeline
        let cases: [([(String, [Int])], String)] = [
            ([("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", [4, 99]),
              ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight", [8, 4])],
             "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight is [4, 99]"),
            ([("lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight", [4, 8]),
              ("lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight", [8, 4])],
             "lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight names no layer"),
            ([("unet.conv_in.lora_A.weight", [4, 4, 3, 3]), ("unet.conv_in.lora_B.weight", [8, 4, 1, 1]),
              ("unet.conv_in.hada_w1_a", [4, 4])], "unet.conv_in.hada_w1_a"),
            ([("unet.conv_in.lora_B.weight", [8, 4, 1, 1])], "unet.conv_in.lora_B.weight has no matching down"),
        ]
        for (i, (tensors, needle)) in cases.enumerated() {
            let path = folder.appendingPathComponent("bad\(i).safetensors").path
            try saveSafeTensors(tensors.map { ($0.0, Tensor(zeros: $0.1)) }, to: path)
            let attached = AttachedLoRAs()
            do {
                try attached.attach(path: path, scale: 1, unet: pipeline.unet, textEncoders: pipeline.prompts.encoders)
                Issue.record("\(needle) must be refused")
            } catch {
                #expect(String(describing: error).contains(needle), "\(error)")
            }
            #expect(attached.isEmpty)
        }
    }

    @Test func embeddingsThatDoNotFitAreRefused() throws {
        let generator = try Self.generators.get("sd1")
        let base = Self.cases.first { $0.name == "sd1_base" }!
        let glow = EmbeddingChoice(path: Self.file("learned_embeds.safetensors"))
        let cases: [([EmbeddingChoice], String)] = [
            ([EmbeddingChoice(path: Self.file("xlstyle.safetensors"))], "second text encoder"),
            ([glow, EmbeddingChoice(path: Self.file("inkstyle.safetensors"), token: "<glow>")], "already a token"),
            ([EmbeddingChoice(path: Self.file("sd1_peft.safetensors"))], "not a textual-inversion embedding"),
        ]
        for (choices, needle) in cases {
            var request = Self.request(base)
            request.embeddings = choices
            do {
                try generator.generate(request) { _ in }
                Issue.record("\(choices) must be refused")
            } catch {
                let text = String(describing: error)
                #expect(text.contains(needle) && text.contains(choices.last!.path) && !text.contains("\n"), "\(error)")
            }
        }
        // Nothing of the refused requests stays: the base image again.
        #expect(try Self.worst(Self.generate(Self.request(base), flavour: "sd1"), "sd1_base") <= 1)
    }

    @Test func keyTableReadsEveryLayout() {
        let rows: [(String, LoRAComponent, LoRANaming, String, LoRAKey.Role)] = [
            ("unet.down_blocks.0.attentions.0.proj_in.lora_A.weight", .unet, .dotted, "down_blocks.0.attentions.0.proj_in", .down),
            ("text_encoder_2.text_model.encoder.layers.1.mlp.fc2.lora_B.weight", .textEncoder2, .dotted, "text_model.encoder.layers.1.mlp.fc2", .up),
            ("mid_block.attentions.0.proj_out.lora.down.weight", .unet, .dotted, "mid_block.attentions.0.proj_out", .down),
            ("unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight", .unet, .dotted,
             "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0", .up),
            ("text_encoder.text_model.encoder.layers.0.self_attn.to_k_lora.down.weight", .textEncoder, .dotted,
             "text_model.encoder.layers.0.self_attn.k_proj", .down),
            ("text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_linear_layer.up.weight", .textEncoder, .dotted,
             "text_model.encoder.layers.0.mlp.fc1", .up),
            ("lora_te_text_model_encoder_layers_0_mlp_fc1.alpha", .textEncoder, .kohya, "text_model_encoder_layers_0_mlp_fc1", .alpha),
            ("lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", .textEncoder2, .kohya, "text_model_encoder_layers_0_mlp_fc1", .up),
            ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight", .unet, .kohya,
             "input_blocks_4_1_transformer_blocks_0_attn1_to_q", .down),
        ]
        for (name, component, naming, module, role) in rows {
            let key = LoRAKeyTable.parse(name)
            #expect(key == LoRAKey(component: component, naming: naming, module: module, role: role), "\(name) → \(String(describing: key))")
        }
        #expect(LoRAKeyTable.parse("lora_unet_conv_in.hada_w1_a") == nil)
        #expect(LoRAKeyTable.parse("lora_foo_bar.lora_down.weight") == nil)
    }
}
