import Foundation
import NestIO
import Testing

/// `nest generate --lora FILE[:SCALE] --embedding FILE[:TOKEN]` against diffusers'
/// images (tools/make_lora_fixtures.py).
@Suite struct LoRACommandTests {
    static let fixtures = CLI.root.appendingPathComponent("Tests/NestPersonalizationTests/Fixtures/lora")
    static let sd1 = CLI.fixtures.appendingPathComponent("sd1").path

    static func file(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    static func worst(_ path: String, _ name: String) throws -> Int {
        let image = try ImageFile.decode(path: path)
        let expected = try SafeTensorsFile(path: file("images.safetensors")).tensor(name)
        guard image.pixels.count == expected.count else { return 255 }
        var worst = 0
        for i in 0..<image.pixels.count { worst = max(worst, abs(Int(image.pixels[i]) - Int((expected.data[i] * 255).rounded()))) }
        return worst
    }

    func generate(_ prompt: String, seed: Int, _ extra: [String], output: String) throws -> CLI.Result {
        try CLI.run(["generate", "--model", Self.sd1, "--prompt", prompt, "--steps", "3", "--guidance", "7.5",
                     "--seed", String(seed), "--scheduler", "euler", "--output", output] + extra)
    }

    @Test func webUILoRAAtAScaleAndEmbeddingsMatchDiffusers() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let lora = dir.appendingPathComponent("lora.png").path
        var r = try generate("a photo of a cat", seed: 40, ["--lora", Self.file("sd1_kohya.safetensors") + ":0.5"], output: lora)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Self.worst(lora, "sd1_kohya_0.5") <= 1)
        #expect(try ImageFile.readPNGText(path: lora).first { $0.key == "parameters" }?.value.contains("LoRA: sd1_kohya:0.5") == true)

        let embedded = dir.appendingPathComponent("embedded.png").path
        r = try generate("a <glow> cat, inkstyle", seed: 41, ["--embedding", Self.file("learned_embeds.safetensors"),
                                                              "--embedding", Self.file("inkstyle.safetensors") + ":inkstyle"], output: embedded)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Self.worst(embedded, "sd1_embeddings") <= 1)
    }

    @Test(arguments: [
        (["--lora", "/nonexistent/style.safetensors"], "--lora /nonexistent/style.safetensors"),
        (["--lora", "/nonexistent/style.safetensors:strong"], "the scale after ':' must be a number"),
        (["--lora", "/nonexistent/style.safetensors:20"], "--lora must be between -10.0 and 10.0"),
        (["--embedding", "/nonexistent/emb.safetensors:tok"], "--embedding /nonexistent/emb.safetensors"),
        (["--lora", LoRACommandTests.file("sdxl_peft.safetensors")], "unet.down_blocks.1.attentions.0.proj_in.lora_A.weight names no layer"),
    ])
    func badFilesFailInOneLine(arguments: [String], message: String) throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("x.png").path
        let r = try generate("a photo of a cat", seed: 1, arguments, output: path)
        #expect(r.status != 0)
        #expect(r.stderr.contains(message), "stderr: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: path), "a failed run must leave no file")
    }
}
