import Foundation
import NestEngine
import NestIO
import NestModels
import Testing

/// Folder-level loading: fp16 variants, sharded weights, and missing pieces.
@Suite struct ModelFolderTests {
    func temporaryCopy(of component: URL) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nest-folder-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: component.appendingPathComponent("config.json"), to: dir.appendingPathComponent("config.json"))
        return dir
    }

    /// Re-saves a component's weights as an fp16 variant only.
    @Test func fp16VariantLoads() throws {
        let source = ModelFixtures.component("sd1", "vae")
        let dir = try temporaryCopy(of: source)
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try SafeTensorsFile(path: source.appendingPathComponent("diffusion_pytorch_model.safetensors").path)
        var writer = SafeTensorsWriter()
        for name in weights.names { writer.add(name, shape: try weights.info(name).shape, floats: try weights.floats(name), as: .f16) }
        try writer.write(to: dir.appendingPathComponent("diffusion_pytorch_model.fp16.safetensors").path)

        #expect(try WeightFiles.locate(in: dir).lastPathComponent == "diffusion_pytorch_model.fp16.safetensors")
        let full = try AutoencoderKL.load(folder: source)
        let half = try AutoencoderKL.load(folder: dir, variant: "fp16")
        let latents = Tensor.randn([1, 4, 4, 4], seed: 3)
        let a = full.decode(latents), b = half.decode(latents)
        let err = relativeError(b, a)
        #expect(err > 0 && err < 2e-2, "fp16 weights should give nearly the same image, got relative error \(err)")
    }

    /// Splits a component's weights into two shards behind an index.
    @Test func shardedWeightsLoad() throws {
        let source = ModelFixtures.component("sd1", "vae")
        let dir = try temporaryCopy(of: source)
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try SafeTensorsFile(path: source.appendingPathComponent("diffusion_pytorch_model.safetensors").path)
        var shards = [SafeTensorsWriter(), SafeTensorsWriter()]
        var map: [String: String] = [:]
        for (i, name) in weights.names.enumerated() {
            let shard = i % 2
            shards[shard].add(name, shape: try weights.info(name).shape, floats: try weights.floats(name))
            map[name] = "diffusion_pytorch_model-0000\(shard + 1)-of-00002.safetensors"
        }
        for (i, writer) in shards.enumerated() {
            try writer.write(to: dir.appendingPathComponent("diffusion_pytorch_model-0000\(i + 1)-of-00002.safetensors").path)
        }
        let index = try JSONSerialization.data(withJSONObject: ["metadata": [:], "weight_map": map])
        try index.write(to: dir.appendingPathComponent("diffusion_pytorch_model.safetensors.index.json"))
        let latents = Tensor.randn([1, 4, 4, 4], seed: 4)
        let a = try AutoencoderKL.load(folder: source).decode(latents)
        let b = try AutoencoderKL.load(folder: dir).decode(latents)
        #expect(a.array == b.array)
    }

    @Test func missingComponentIsReported() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nest-folder-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let index: [String: Any] = ["_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]]
        try JSONSerialization.data(withJSONObject: index).write(to: dir.appendingPathComponent("model_index.json"))
        let folder = try ModelFolder(url: dir)
        #expect(throws: ModelConfigError.self) { try folder.component("unet") }
        do { _ = try folder.component("unet") } catch { #expect(String(describing: error).contains("component folder 'unet/' is missing")) }
        do { _ = try folder.component("vae") } catch { #expect(String(describing: error).contains("lists no 'vae' component")) }
        do { _ = try ModelFolder(url: dir.appendingPathComponent("nope")) } catch {
            #expect(String(describing: error).contains("not a folder"))
        }
    }
}
