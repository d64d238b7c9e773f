import Foundation
import NestEngine
import NestIO
import NestModels
import NestPersonalization
import NestTestSupport
import Testing

/// `nest generate --adapter … --subject TOKEN=IMAGE` as a user runs it.
@Suite struct SubjectCommandTests {
    /// The sd1 pipeline fixture plus an image encoder, and a random nested adapter saved beside it.
    static let setup: (folder: URL, adapter: String, photo: String) = {
        let dir = CLI.temporaryFolder()
        let model = ModelFolderFixture.withImageEncoder("sd1", prefix: "nest-subject-command")
        let pipeline = CLI.fixtures.appendingPathComponent("sd1")
        let unet = try! UNet2DConditionModel.load(folder: pipeline.appendingPathComponent("unet"))
        let config = AdapterConfig(kind: .nested, placeholderToken: "<critter>", classWord: "cat",
                                   imageEncoder: .init(hiddenSize: 32, imageSize: 32),
                                   resampler: .init(embeddingDim: 32, width: 16, outputDim: 16, depth: 1, heads: 2, headDim: 8, queries: 4),
                                   layers: PersonalizationAdapter.layers(for: unet.crossAttentionLayers))
        let adapterPath = dir.appendingPathComponent("critter.json").path
        try! PersonalizationAdapter(config: config, seed: 4).save(path: adapterPath)
        var rng = SeededRandom(seed: 9)
        let photo = try! RGBImage(width: 70, height: 64, pixels: (0..<(70 * 64 * 3)).map { _ in UInt8(rng.nextInt(below: 256)) })
        let photoPath = dir.appendingPathComponent("photo.png").path
        try! ImageFile.writePNG(photo, to: photoPath)
        return (model, adapterPath, photoPath)
    }()

    func run(_ extra: [String], prompt: String = "a <critter> on the beach") throws -> (CLI.Result, String) {
        let out = CLI.temporaryFolder().appendingPathComponent("out.png").path
        let r = try CLI.run(["generate", "--model", Self.setup.folder.path, "--prompt", prompt, "--steps", "2", "--seed", "5",
                             "--output", out] + extra)
        return (r, out)
    }

    @Test func generatesWithASubject() throws {
        let maps = CLI.temporaryFolder().appendingPathComponent("maps")
        let (r, out) = try run(["--adapter", Self.setup.adapter, "--subject", "<critter>=\(Self.setup.photo)", "--value-norm", "2",
                                "--save-attention", maps.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: out))
        let files = (try? FileManager.default.contentsOfDirectory(atPath: maps.path)) ?? []
        // The tiny SD1-like UNet has 6 cross-attention layers: one outer heatmap each, plus nested traces.
        #expect(files.filter { $0.hasSuffix("-outer.png") }.count == 6, "\(files)")
        #expect(files.contains { $0.contains("-query0.png") }, "\(files)")
        for file in files { #expect((try? ImageFile.decode(path: maps.appendingPathComponent(file).path)) != nil) }
    }

    @Test(arguments: [
        (["--adapter", "ADAPTER", "--subject", "<critter>=PHOTO"], "a cat on the beach", "does not contain the placeholder token <critter>"),
        (["--adapter", "ADAPTER", "--subject", "<dog>=PHOTO"], "a <critter>", "--subject <dog>: no adapter for this token"),
        (["--adapter", "ADAPTER"], "a <critter>", "--subject <critter> has an adapter but no photo"),
        (["--adapter", "ADAPTER", "--subject", "<critter>=/nonexistent.png"], "a <critter>", "/nonexistent.png"),
        (["--subject", "<critter>=PHOTO"], "a <critter>", "--subject <critter>: no adapter for this token"),
        (["--adapter", "/nonexistent/adapter.json", "--subject", "<critter>=PHOTO"], "a <critter>", "adapter config adapter.json not found"),
    ])
    func badSubjectInputFailsClearly(arguments: [String], prompt: String, message: String) throws {
        let args = arguments.map { $0.replacingOccurrences(of: "ADAPTER", with: Self.setup.adapter).replacingOccurrences(of: "PHOTO", with: Self.setup.photo) }
        let (r, out) = try run(args, prompt: prompt)
        #expect(r.status != 0)
        #expect(r.stderr.contains(message), "stderr: \(r.stderr)")
        // One error line (after at most the "loaded …" status line), no trace.
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.filter { $0.hasPrefix("nest: error: ") }.count == 1
                && lines.allSatisfy { $0.hasPrefix("nest: error: ") || $0.hasPrefix("loaded ") }, "stderr: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
