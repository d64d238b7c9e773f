import Foundation
import Testing

/// `nest adapter import` and `nest adapter mapping` on the IP-Adapter-lineage encoder of
/// tools/make_nested_import_fixtures.py (the parity of its images is AdapterImportTests').
@Suite struct AdapterCommandTests {
    static let fixtures = CLI.root.appendingPathComponent("Tests/NestPersonalizationTests/Fixtures/nested_import")
    static let sdxl = CLI.fixtures.appendingPathComponent("sdxl").path
    static let imageEncoder = CLI.root.appendingPathComponent("Tests/NestModelsTests/Fixtures/sdxl/image_encoder").path

    func importing(_ file: String, to output: String, _ extra: [String] = []) throws -> CLI.Result {
        try CLI.run(["adapter", "import", Self.fixtures.appendingPathComponent(file).path, "--model", Self.sdxl,
                     "--image-encoder", Self.imageEncoder, "--placeholder", "<person>", "--class-word", "person",
                     "--value-norm", "2.0", "--token-weight", "8", "-o", output] + extra)
    }

    @Test func importsWritesTheDefaultsAndKeepsWhatExists() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("person").path
        var r = try importing("nested_encoder.safetensors", to: out)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("1024 encoder tokens, 8 cross-attention layers, value normalization 2.0, token weight 8.0"), "\(r.stdout)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/adapter.json"))) as! [String: Any]
        let defaults = json["defaults"] as! [String: Any]
        #expect(defaults["value_normalization"] as? Double == 2 && defaults["token_weight"] as? Double == 8)
        #expect(json["placeholder_token"] as? String == "<person>")

        let before = try Data(contentsOf: URL(fileURLWithPath: out + "/adapter.safetensors"))
        r = try importing("nested_encoder.safetensors", to: out, ["--token-weight", "2"])
        #expect(r.status != 0 && r.stderr.contains("already exists; pass --overwrite"), "\(r.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/adapter.safetensors")) == before)
    }

    @Test func anUnknownKeyFailsInOneLineNamingIt() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("person").path
        let r = try importing("nested_encoder_unknown_key.safetensors", to: out)
        #expect(r.status != 0)
        #expect(r.stderr.hasPrefix("nest: error: nested_encoder_unknown_key.safetensors: 1 tensor(s) match no rule"), "\(r.stderr)")
        #expect(r.stderr.contains("ip_adapter.1.norm_ip.weight") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out + "/adapter.json"))
    }

    @Test func theMappingPrintsAsATableImportReads() throws {
        let r = try CLI.run(["adapter", "mapping"])
        #expect(r.status == 0, "\(r.stderr)")
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let table = dir.appendingPathComponent("table.json")
        try r.stdout.write(to: table, atomically: true, encoding: .utf8)
        #expect(r.stdout.contains("\"ip_adapter.{n}.to_k_ip.weight\"") && r.stdout.contains("processor_position"))
        let imported = try importing("nested_encoder.safetensors", to: dir.appendingPathComponent("out").path, ["--mapping", table.path])
        #expect(imported.status == 0, "\(imported.stderr)")
    }
}
