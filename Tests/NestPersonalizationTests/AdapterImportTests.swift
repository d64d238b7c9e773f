import NestTestSupport
import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
@testable import NestPersonalization
import Testing

/// `AdapterImport` against the PyTorch reference of tools/make_nested_import_fixtures.py:
/// an IP-Adapter-lineage Nested Attention encoder (1024 tokens, value normalization 2.0,
/// a special token weight) imported and run through `Generator.generate` on the tiny SDXL
/// must give the reference's image; keys, numbers and shapes the table does not account
/// for are refused by name.
@Suite(.serialized) struct AdapterImportTests {
    struct Case: Decodable {
        let prompt, negative_prompt, placeholder, class_word, photo, checkpoint, unknown_key: String
        let seed: UInt64
        let steps, width, height, queries: Int
        let guidance, vq_normalize_factor, special_token_weight: Float
    }

    static let tests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = tests.appendingPathComponent("NestPersonalizationTests/Fixtures/nested_import")
    static let reference = try! JSONDecoder().decode(Case.self, from: Data(contentsOf: fixtures.appendingPathComponent("case.json")))
    static var checkpoint: URL { fixtures.appendingPathComponent(reference.checkpoint) }

    /// The sdxl pipeline fixture plus the tiny SDXL image encoder and its processor, as the reference assembled it.
    static let model = ModelFolderFixture.withImageEncoder("sdxl", prefix: "nest-import-model")

    static func temporaryFolder() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("nest-import-\(UUID().uuidString)")
    }

    static var settings: AdapterImportSettings {
        AdapterImportSettings(placeholderToken: reference.placeholder, classWord: reference.class_word,
                              valueNormalization: reference.vq_normalize_factor, tokenWeight: reference.special_token_weight)
    }

    /// The import refused with a one-line error containing every `needle`.
    static func expectRefused(_ file: URL, naming needles: [String], settings: AdapterImportSettings = settings) {
        let out = temporaryFolder()
        defer { try? FileManager.default.removeItem(at: out) }
        do {
            _ = try AdapterImport.importFile(file, model: model, settings: settings, to: out)
            Issue.record("\(file.lastPathComponent) must be refused")
        } catch {
            let text = String(describing: error)
            for needle in needles { #expect(text.contains(needle), "\(text)") }
            #expect(!text.contains("\n"), "\(text)")
        }
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("adapter.json").path), "nothing is written")
    }

    /// The fixture checkpoint with some tensors replaced or added, written to a temporary file.
    static func variant(adding extra: [(String, [Int])], dropping: Set<String> = []) throws -> URL {
        let file = try SafeTensorsFile(path: checkpoint.path)
        var tensors = try file.tensorNames.filter { !dropping.contains($0) }.map { ($0, try file.tensor($0)) }
        tensors += extra.map { ($0.0, Tensor(zeros: $0.1)) }
        let url = temporaryFolder().appendingPathExtension("safetensors")
        try saveSafeTensors(tensors, to: url.path)
        return url
    }

    @Test func importsTheEncoderAndGeneratesTheReferenceImage() throws {
        let c = Self.reference
        let out = Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: out) }
        let written = try AdapterImport.importFile(Self.checkpoint, model: Self.model, settings: Self.settings, to: out)
        let config = try AdapterConfig.load(from: URL(fileURLWithPath: written.configPath))
        #expect(config.kind == .nested && config.resampler.queries == c.queries && config.resampler.depth == 2 && config.resampler.heads == 2)
        #expect(config.defaults.valueNormalization == c.vq_normalize_factor && config.defaults.tokenWeight == c.special_token_weight)
        // ip_adapter.1, 3, …, 15: the eight cross-attentions of the tiny SDXL, in order.
        #expect(config.layers.count == 8)
        #expect(config.layers.first?.path == "down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor")

        let pipeline = try StableDiffusionPipeline.load(folder: Self.model)
        let generator = Generator(pipeline: pipeline, catalog: try AdapterCatalog(model: Self.model, named: [written.configPath]))
        let photo = try ImageFile.decode(path: Self.fixtures.appendingPathComponent(c.photo).path)
        var request = GenerationRequest(
            generation: GenerationConfiguration(prompt: c.prompt, negativePrompt: c.negative_prompt, steps: c.steps,
                                                guidanceScale: c.guidance, seed: c.seed, width: c.width, height: c.height,
                                                scheduler: .euler),
            subjects: [Subject(placeholder: c.placeholder, images: [photo])])
        func generate() throws -> [UInt8] {
            var pixels: [UInt8] = []
            try generator.generate(request) { pixels = $0.image.pixels }
            return pixels
        }
        let pixels = try generate()
        let expected = try SafeTensorsFile(path: Self.fixtures.appendingPathComponent("images.safetensors").path).tensor("image")
        #expect(pixels.count == expected.count)
        var worst = 0
        for i in 0..<min(pixels.count, expected.count) {
            worst = max(worst, abs(Int(pixels[i]) - Int((expected.data[i] * 255).rounded())))
        }
        print("nested import parity: max \(worst)/255")
        #expect(worst <= 1, "max |Δ| \(worst)/255 from the PyTorch reference")

        // The imported defaults are what made it: the request's own λ and w still override them.
        request.valueNormalization = 1
        request.tokenWeight = 1
        #expect(try generate() != pixels, "--value-norm / --token-weight override the imported defaults")
    }

    @Test func anUnknownKeyIsRefusedByName() {
        Self.expectRefused(Self.fixtures.appendingPathComponent("nested_encoder_unknown_key.safetensors"),
                           naming: [Self.reference.unknown_key, "match no rule"])
    }

    @Test func everyUnmatchedKeyIsListed() throws {
        let url = try Self.variant(adding: [("ip_adapter.3.norm_ip.bias", [16]), ("text_proj.weight", [4, 4])])
        defer { try? FileManager.default.removeItem(at: url) }
        Self.expectRefused(url, naming: ["2 tensor(s) match no rule", "ip_adapter.3.norm_ip.bias", "text_proj.weight"])
    }

    @Test func aWrongShapeIsRefusedByName() throws {
        let key = "ip_adapter.5.to_v_ip.weight"
        let url = try Self.variant(adding: [(key, [16, 20])], dropping: [key])
        defer { try? FileManager.default.removeItem(at: url) }
        Self.expectRefused(url, naming: [key, "[16, 20]", "token_width 24"])
    }

    @Test func aMissingPartnerAndAStrayLayerNumberAreNamed() throws {
        let missing = try Self.variant(adding: [], dropping: ["ip_adapter.7.to_v_ip.weight"])
        defer { try? FileManager.default.removeItem(at: missing) }
        Self.expectRefused(missing, naming: ["no tensor for layers.3.to_v.weight", "ip_adapter.7.to_v_ip.weight"])
        let stray = try Self.variant(adding: [("ip_adapter.17.to_k_ip.weight", [16, 24]), ("ip_adapter.17.to_v_ip.weight", [16, 24])])
        defer { try? FileManager.default.removeItem(at: stray) }
        Self.expectRefused(stray, naming: ["ip_adapter.17.to_k_ip.weight", "names no cross-attention", "another base model"])
    }

    @Test func aTensorTheResamplerLacksIsNamed() throws {
        // image_proj.* matches every resampler name; one the resampler has no parameter for is still refused by name.
        let url = try Self.variant(adding: [("image_proj.scale", [1])])
        defer { try? FileManager.default.removeItem(at: url) }
        Self.expectRefused(url, naming: ["image_proj.scale maps to resampler.scale, which is no parameter of a nested adapter"])
    }

    @Test func aUserTableReadsARenamedLayout() throws {
        // The same encoder with its projections renamed: refused by the built-in table, read with a one-rule extension.
        let file = try SafeTensorsFile(path: Self.checkpoint.path)
        let renamed = try file.tensorNames.map { name in
            (name.replacingOccurrences(of: "to_k_ip", with: "nested_k"), try file.tensor(name))
        }
        let url = Self.temporaryFolder().appendingPathExtension("safetensors")
        try saveSafeTensors(renamed, to: url.path)
        defer { try? FileManager.default.removeItem(at: url) }
        Self.expectRefused(url, naming: ["8 tensor(s) match no rule", "ip_adapter.1.nested_k.weight"])

        let table = """
            { "name": "renamed", "layer_numbering": "processor_position",
              "rules": [ { "from": "ip_adapter.{n}.nested_k.weight", "to": "layers.{layer}.to_k.weight",
                           "shape": ["layer_width", "token_width"] } ] }
            """
        let tableURL = Self.temporaryFolder().appendingPathExtension("json")
        try table.write(to: tableURL, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: tableURL) }
        var settings = Self.settings
        settings.mapping = try ImportMapping.load(from: tableURL).extended(with: .ipAdapterLineage)
        let out = Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: out) }
        let written = try AdapterImport.importFile(url, model: Self.model, settings: settings, to: out)
        // Same values as the original import.
        let reference = Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: reference) }
        let original = try AdapterImport.importFile(Self.checkpoint, model: Self.model, settings: Self.settings, to: reference)
        let a = try SafeTensorsFile(path: written.weightsPath), b = try SafeTensorsFile(path: original.weightsPath)
        #expect(a.tensorNames == b.tensorNames)
        for name in a.tensorNames { #expect(try a.tensor(name).array == b.tensor(name).array, "\(name)") }
        // Nothing is overwritten unless asked.
        #expect(throws: AdapterImportError.self) { try AdapterImport.importFile(url, model: Self.model, settings: settings, to: out) }
    }

    @Test func badTablesAreRefusedWithTheRule() throws {
        let cases: [(String, String)] = [
            (#"{"name": "x", "layer_numbering": "processor_position", "rules": [{"from": "a.*.b", "to": "resampler.*"}]}"#, "* may only end a key"),
            (#"{"name": "x", "layer_numbering": "processor_position", "rules": [{"from": "a.b", "to": "layers.{layer}.to_k.weight"}]}"#, "{layer} needs an {n}"),
            (#"{"name": "x", "layer_numbering": "sideways", "rules": []}"#, "layer_numbering"),
            (#"{"name": "x", "layer_numbering": "processor_position", "rules": [{"from": "a.{n}", "to": "layers.{layer}.to_k.weight", "shape": ["wide"]}]}"#, "'wide'"),
            (#"{"name": "x", "layer_numbering": "processor_position", "rules": [{"from": "a.*", "to": "unet.*"}]}"#, "targets are resampler"),
        ]
        for (json, needle) in cases {
            let url = Self.temporaryFolder().appendingPathExtension("json")
            try json.write(to: url, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: url) }
            do {
                _ = try ImportMapping.load(from: url)
                Issue.record("\(json) must be refused")
            } catch {
                #expect(String(describing: error).contains(needle) && String(describing: error).contains(url.path), "\(error)")
            }
        }
    }

    @Test func patternsMatchWholeKeys() {
        let table = ImportMapping.ipAdapterLineage
        #expect(table.match("ip_adapter.3.to_k_ip.weight") == .init(rule: 2, number: 3, rest: nil))
        #expect(table.match("image_proj.proj_in.weight") == .init(rule: 0, number: nil, rest: nil))
        #expect(table.match("image_proj.layers.0.0.to_q.weight") == .init(rule: 1, number: nil, rest: "layers.0.0.to_q.weight"))
        for key in ["ip_adapter.3.to_k_ip.weight.extra", "ip_adapter.x.to_k_ip.weight", "ip_adapter.-1.to_k_ip.weight",
                    "image_proj", "ip_adapter.3.to_k_ip"] {
            #expect(table.match(key) == nil, "\(key)")
        }
    }
}
