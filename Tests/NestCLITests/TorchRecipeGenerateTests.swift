import Foundation
import NestEngine
import NestIO
import Testing

/// An adapter written by the PyTorch training recipe (training/nest_torch) generates
/// in `nest generate` the image the recipe's own sampling gives (diffusers with the
/// recipe's Nested Attention processors; tools/make_torch_recipe_fixtures.py).
@Suite struct TorchRecipeGenerateTests {
    static let fixtures = CLI.root.appendingPathComponent("Tests/NestTrainingTests/Fixtures/torch_recipe")

    @Test func recipeCheckpointGeneratesTheRecipesImage() throws {
        let dir = CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        // The tiny sd1 pipeline plus the tiny image encoder, as one model folder.
        let fm = FileManager.default
        let model = dir.appendingPathComponent("model")
        try fm.createDirectory(at: model, withIntermediateDirectories: true)
        let pipeline = CLI.fixtures.appendingPathComponent("sd1")
        for name in try fm.contentsOfDirectory(atPath: pipeline.path) where name != "model_index.json" {
            try fm.createSymbolicLink(at: model.appendingPathComponent(name), withDestinationURL: pipeline.appendingPathComponent(name))
        }
        let encoders = CLI.root.appendingPathComponent("Tests/NestModelsTests/Fixtures/sd1")
        for name in ["image_encoder", "feature_extractor"] {
            try fm.createSymbolicLink(at: model.appendingPathComponent(name), withDestinationURL: encoders.appendingPathComponent(name))
        }
        var index = try JSONSerialization.jsonObject(with: Data(contentsOf: pipeline.appendingPathComponent("model_index.json"))) as! [String: Any]
        index["image_encoder"] = ["transformers", "CLIPVisionModelWithProjection"]
        index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
        try JSONSerialization.data(withJSONObject: index).write(to: model.appendingPathComponent("model_index.json"))

        let generation = Self.fixtures.appendingPathComponent("generation")
        let spec = try JSONSerialization.jsonObject(with: Data(contentsOf: generation.appendingPathComponent("case.json"))) as! [String: Any]
        let output = dir.appendingPathComponent("subject.png").path
        let r = try CLI.run(["generate", "--model", model.path, "--prompt", spec["prompt"] as! String,
                             "--seed", "\(spec["seed"] as! Int)", "--steps", "\(spec["steps"] as! Int)",
                             "--guidance", "\(spec["guidance"] as! Double)",
                             "--adapter", Self.fixtures.appendingPathComponent("sd1-nested/trained.json").path,
                             "--subject", "<critter>=" + generation.appendingPathComponent("reference.png").path,
                             "--value-norm", "\(spec["value_norm"] as! Double)", "--token-weight", "\(spec["token_weight"] as! Double)",
                             "--output", output])
        #expect(r.status == 0, "\(r.stderr)")
        let image = try ImageFile.decode(path: output)
        let file = try SafeTensorsFile(path: generation.appendingPathComponent("images.safetensors").path)
        let expected = try file.tensor("image"), base = try file.tensor("base")
        #expect(image.pixels.count == expected.count)
        var worst: Float = 0, moved: Float = 0
        for i in 0..<min(image.pixels.count, expected.count) {
            worst = max(worst, abs(Float(image.pixels[i]) / 255 - expected.data[i]))
            moved = max(moved, abs(expected.data[i] - base.data[i]))
        }
        print("torch recipe generation: nest generate vs the recipe's sampling \(worst * 255)/255 (the adapter moves it by \(moved * 255)/255)")
        #expect(moved * 255 > 10, "the fixture's adapter barely changes the image: the comparison would prove little")
        #expect(worst <= 1 / 255, "nest generate differs from the recipe's sampling by \(worst * 255)/255")
    }
}
