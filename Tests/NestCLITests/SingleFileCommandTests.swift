import Foundation
import NestEngine
import NestIO
import Testing

/// `nest generate` and `nest inspect` with single-file checkpoints (tools/make_single_file_fixtures.py).
@Suite struct SingleFileCommandTests {
    static let files = CLI.root.appendingPathComponent("Tests/NestDiffusionTests/Fixtures/singlefile")

    @Test func generatesDiffusersImageFromSingleFile() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("cat.png").path
        // The SDXL case of singlefile/cases.json: Euler, seed 31, 4 steps, guidance 5.
        let r = try CLI.run(["generate", "--model", Self.files.appendingPathComponent("sdxl.safetensors").path,
                             "--config", CLI.fixtures.appendingPathComponent("sdxl").path, "--prompt", "a photo of a cat",
                             "--steps", "4", "--seed", "31", "--guidance", "5", "--scheduler", "euler", "--output", path])
        #expect(r.status == 0, "\(r.stderr)")
        let image = try ImageFile.decode(path: path)
        let expected = try SafeTensorsFile(path: Self.files.appendingPathComponent("images.safetensors").path).tensor("sdxl")
        var worst = 0
        for i in 0..<image.pixels.count { worst = max(worst, abs(Int(image.pixels[i]) - Int((expected.data[i] * 255).rounded()))) }
        #expect(worst <= 1, "CLI image from the single file differs from diffusers' by \(worst)/255")
    }

    @Test func singleFileWithoutConfigFailsInOneLine() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let output = dir.appendingPathComponent("x.png").path
        let r = try CLI.run(["generate", "--model", Self.files.appendingPathComponent("sd2.safetensors").path,
                             "--prompt", "a cat", "--output", output])
        #expect(r.status != 0)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && r.stderr.contains("SD 2.x") && r.stderr.contains("--config DIR"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    @Test func inspectNamesTheFamilyAndChecksAgainstConfig() throws {
        let r = try CLI.run(["inspect", Self.files.appendingPathComponent("sd2.safetensors").path,
                             "--config", CLI.fixtures.appendingPathComponent("sd2").path, "--limit", "0"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("single-file SD 2.x checkpoint"), "\(r.stdout)")
        #expect(r.stdout.contains("every tensor fits the configs"), "\(r.stdout)")
        #expect(r.stdout.contains("OpenCLIP block after the layer SD 2 reads"), "\(r.stdout)")
        let wrong = try CLI.run(["inspect", Self.files.appendingPathComponent("sd2.safetensors").path,
                                 "--config", CLI.fixtures.appendingPathComponent("sd1").path])
        #expect(wrong.status != 0 && wrong.stderr.contains("weight problem(s)"), "\(wrong.stderr)")
    }

    @Test func inspectRecognizesRealSizeSDXL() throws {
        // The real SDXL base header (Tests/NestModelsTests/Fixtures/singlefile_sdxl) as a sparse float16 file,
        // and a diffusers folder holding only the published configs.
        let fixture = CLI.root.appendingPathComponent("Tests/NestModelsTests/Fixtures/singlefile_sdxl")
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let lines = try String(contentsOf: fixture.appendingPathComponent("header.txt"), encoding: .utf8).split(separator: "\n")
        var entries: [String: Any] = [:], offset = 0
        for line in lines {
            let parts = line.split(separator: " ")
            let shape = parts.count > 1 ? parts[1].split(separator: ",").map { Int($0)! } : []
            entries[String(parts[0])] = ["dtype": "F16", "shape": shape, "data_offsets": [offset, offset + 2 * shape.reduce(1, *)]]
            offset += 2 * shape.reduce(1, *)
        }
        let json = try JSONSerialization.data(withJSONObject: entries)
        var length = UInt64(json.count).littleEndian
        let file = dir.appendingPathComponent("sdxl.safetensors")
        try (Data(bytes: &length, count: 8) + json).write(to: file)
        let handle = try FileHandle(forWritingTo: file)
        try handle.truncate(atOffset: UInt64(8 + json.count + offset))
        try handle.close()
        let configs = dir.appendingPathComponent("configs")
        let components = ["unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "text_encoder": "CLIPTextModel",
                          "text_encoder_2": "CLIPTextModelWithProjection"]
        var index: [String: Any] = ["_class_name": "StableDiffusionXLPipeline"]
        for (name, className) in components {
            try FileManager.default.createDirectory(at: configs.appendingPathComponent(name), withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: fixture.appendingPathComponent("\(name).json"),
                                             to: configs.appendingPathComponent("\(name)/config.json"))
            index[name] = [name.hasPrefix("text") ? "transformers" : "diffusers", className]
        }
        try JSONSerialization.data(withJSONObject: index).write(to: configs.appendingPathComponent("model_index.json"))
        let r = try CLI.run(["inspect", file.path, "--config", configs.path, "--limit", "0"])
        // All tensors but the position ids and logit scale; the 32 fused q/k/v projections fill three parameters each.
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("single-file SDXL checkpoint: UNet, VAE, 2 text encoder(s); 70 cross-attention layers"), "\(r.stdout)")
        #expect(r.stdout.contains("every tensor fits the configs of \(configs.path): \(lines.count - 2) tensors fill \(lines.count - 2 + 32 * 2 * 2) parameters"), "\(r.stdout)")
    }
}
