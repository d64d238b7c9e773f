import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import Testing

/// Broken and mislabeled single files: each fails in one line that names what is wrong,
/// and loading returns no pipeline (the whole file is checked before any model is built).
@Suite struct SingleFileErrorTests {
    static let sd1 = SingleFileTests.file("sd1")

    /// A copy of the SD 1 fixture with tensors dropped, replaced or added.
    static func rewritten(drop: Set<String> = [], replace: [String: (shape: [Int], values: [Float])] = [:],
                          add: [String: [Float]] = [:]) throws -> URL {
        let source = try SafeTensorsFile(path: sd1.path)
        var writer = SafeTensorsWriter()
        for name in source.names where !drop.contains(name) {
            if let new = replace[name] {
                writer.add(name, shape: new.shape, floats: new.values)
            } else {
                let info = try source.info(name)
                writer.add(name, dtype: info.dtype, shape: info.shape, bytes: Array(try source.rawBytes(name)))
            }
        }
        for (name, values) in add { writer.add(name, shape: [values.count], floats: values) }
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("singlefile-\(UUID().uuidString).safetensors")
        try writer.write(to: url.path)
        return url
    }

    /// The one-line message loading `url` with `config` fails with.
    static func failure(_ url: URL, config: URL? = SingleFileTests.folder("sd1")) -> String {
        do {
            _ = try StableDiffusionPipeline.load(singleFile: url, config: config)
            return "loaded"
        } catch {
            return String(describing: error)
        }
    }

    static func expectOneLine(_ message: String, naming parts: [String]) {
        #expect(!message.contains("\n"), "not one line: \(message)")
        for part in parts { #expect(message.contains(part), "\(message) does not name \(part)") }
    }

    @Test func missingTensor() throws {
        let url = try Self.rewritten(drop: ["model.diffusion_model.out.2.weight"])
        defer { try? FileManager.default.removeItem(at: url) }
        Self.expectOneLine(Self.failure(url), naming: ["model.diffusion_model.out.2.weight: missing", "conv_out.weight"])
    }

    @Test func wrongShape() throws {
        let name = "first_stage_model.decoder.mid.attn_1.q.weight"
        let url = try Self.rewritten(replace: [name: ([16, 16, 3, 3], Array(repeating: 0.5, count: 16 * 16 * 9))])
        defer { try? FileManager.default.removeItem(at: url) }
        Self.expectOneLine(Self.failure(url), naming: ["1 weight problem(s): \(name): shape [16, 16, 3, 3], expected [16, 16, 1, 1]"])
    }

    @Test func unknownTensor() throws {
        let url = try Self.rewritten(add: ["model.diffusion_model.input_blocks.99.0.weight": [1, 2, 3]])
        defer { try? FileManager.default.removeItem(at: url) }
        Self.expectOneLine(Self.failure(url), naming: ["model.diffusion_model.input_blocks.99.0.weight: not a weight"])
    }

    @Test func truncatedFile() throws {
        let url = try Self.rewritten()
        defer { try? FileManager.default.removeItem(at: url) }
        let handle = try FileHandle(forWritingTo: url)
        let size = try handle.seekToEnd()
        try handle.truncate(atOffset: size - 4)  // cuts into the last tensor only
        try handle.close()
        let last = try SafeTensorsFile(path: Self.sd1.path).names.last!
        Self.expectOneLine(Self.failure(url), naming: [last, "truncated"])
    }

    @Test func familyAndConfigDisagree() throws {
        // An SD 1 file read with an SDXL folder's configs, and an SD 2 file with an SD 1 folder's.
        Self.expectOneLine(Self.failure(Self.sd1, config: SingleFileTests.folder("sdxl")),
                           naming: ["an SD 1.x checkpoint with 1 text encoder(s)", "describes a pipeline with 2"])
        Self.expectOneLine(Self.failure(SingleFileTests.file("sd2"), config: SingleFileTests.folder("sd1")),
                           naming: ["weight problem(s)", "model.diffusion_model."])
    }

    @Test func needsConfigFolderAndWholeCheckpoint() throws {
        Self.expectOneLine(Self.failure(Self.sd1, config: nil), naming: ["SD 1.x", "holds no tokenizer", "--config DIR"])
        let component = SingleFileTests.folder("sd1").appendingPathComponent("unet/diffusion_pytorch_model.safetensors")
        Self.expectOneLine(Self.failure(component), naming: ["a single diffusers component"])
    }
}
