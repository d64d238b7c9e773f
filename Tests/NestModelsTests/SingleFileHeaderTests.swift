import Foundation
import NestEngine
import NestIO
import NestModels
import Testing

/// The original-layout key tables against a real-size SDXL base single file: its tensor
/// names and shapes (tools/make_single_file_fixtures.py --real-sdxl-header, checked there
/// with diffusers' own conversion) written as a float16 file whose data is a hole, so
/// the 6.9 GB file costs only its header on disk.
@Suite struct SingleFileHeaderTests {
    static let folder = ModelFixtures.root.appendingPathComponent("singlefile_sdxl")

    /// (name, shape) per line of header.txt.
    static func header() throws -> [(name: String, shape: [Int])] {
        let text = try String(contentsOf: folder.appendingPathComponent("header.txt"), encoding: .utf8)
        return text.split(separator: "\n").map { line in
            let parts = line.split(separator: " ")  // a scalar has no dimensions after the name
            return (String(parts[0]), parts.count > 1 ? parts[1].split(separator: ",").map { Int($0)! } : [])
        }
    }

    /// A float16 safetensors file with these tensors and no data written (a sparse file).
    static func sparseFile(_ tensors: [(name: String, shape: [Int])]) throws -> URL {
        var entries: [String: Any] = [:], offset = 0
        for (name, shape) in tensors {
            let bytes = 2 * shape.reduce(1, *)
            entries[name] = ["dtype": "F16", "shape": shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        let json = try JSONSerialization.data(withJSONObject: entries)
        var length = UInt64(json.count).littleEndian
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sdxl-header-\(UUID().uuidString).safetensors")
        var data = Data(bytes: &length, count: 8)
        data.append(json)
        try data.write(to: url)
        let handle = try FileHandle(forWritingTo: url)
        try handle.truncate(atOffset: UInt64(8 + json.count + offset))
        try handle.close()
        return url
    }

    static func configs() throws -> SingleFileCheckpoint.Configs {
        SingleFileCheckpoint.Configs(
            unet: try UNet2DConditionConfig.load(from: folder.appendingPathComponent("unet.json")),
            vae: try decodeConfig(AutoencoderKLConfig.self, from: folder.appendingPathComponent("vae.json")),
            textEncoders: try ["text_encoder", "text_encoder_2"].map {
                try decodeConfig(CLIPTextConfig.self, from: folder.appendingPathComponent("\($0).json"))
            })
    }

    @Test func realSDXLFileIsRecognizedAndFullyMapped() throws {
        let tensors = try Self.header()
        let url = try Self.sparseFile(tensors)
        defer { try? FileManager.default.removeItem(at: url) }
        let checkpoint = try SingleFileCheckpoint(path: url.path)
        #expect(checkpoint.family == .sdxl)
        #expect(checkpoint.crossAttentionLayers == 70)
        // Every parameter of the real-config models is found with its shape, and every other tensor is accounted for.
        let plan = try checkpoint.plan(try Self.configs())
        let mapped = [plan.unet, plan.vae] + plan.textEncoders
        let used = Set(mapped.flatMap { $0.keys.values.map(\.original) })
        #expect(used.count + plan.ignored.values.reduce(0, +) == tensors.count)
        #expect(plan.ignored == ["text position ids (implicit here)": 1, "CLIP logit scale (for image-text matching)": 1])
        #expect(plan.unet.keys.keys.filter { $0.hasSuffix(".attn2.to_k.weight") }.count == 70)
        // The fused OpenCLIP projections are split three ways and text_projection is transposed.
        let q = "text_model.encoder.layers.31.self_attn.q_proj.weight"
        #expect(plan.textEncoders[1].keys[q] == MappedKey(original: "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight",
                                                          transform: .slice(part: 0, parts: 3)))
        #expect(plan.textEncoders[1].shape(of: q) == [1280, 1280])
        #expect(plan.textEncoders[1].keys["text_projection.weight"]?.transform == .transpose)
        #expect(plan.vae.shape(of: "decoder.mid_block.attentions.0.to_q.weight") == [512, 512])
    }

    @Test func keyRulesMatchWholeComponentsOnly() {
        let table = KeyTable(originalPrefix: "p.", rules: [
            KeyRule("a.#.b.*") { "x.\($0.numbers[0] * 2).\($0.rest)" },
            KeyRule("c.#") { "y.\($0.numbers[0])" },
        ])
        #expect(table.map("a.3.b.weight")?.original == "p.x.6.weight")
        #expect(table.map("a.3.b.c.bias")?.original == "p.x.6.c.bias")
        #expect(table.map("a.3.b") == nil)      // `*` needs at least one component
        #expect(table.map("a.x.b.weight") == nil)
        #expect(table.map("a.03.b.weight") == nil)
        #expect(table.map("c.4")?.original == "p.y.4")
        #expect(table.map("c.4.weight") == nil)
        #expect(KeyTransform.squeezeConvolution.shape(from: [8, 4, 1, 1]) == [8, 4])
        #expect(KeyTransform.squeezeConvolution.shape(from: [8, 4, 3, 3]) == nil)
        #expect(KeyTransform.slice(part: 1, parts: 3).shape(from: [12, 4]) == [4, 4])
        #expect(KeyTransform.slice(part: 1, parts: 3).shape(from: [10, 4]) == nil)
    }
}
