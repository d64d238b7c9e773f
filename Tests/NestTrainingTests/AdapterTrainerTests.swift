import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import NestPersonalization
import NestTraining
import Testing

@Suite(.serialized) struct AdapterTrainerTests {
    static let tests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    /// The sd1 pipeline fixture plus the sd1 image encoder, as one model folder.
    static let folder: URL = {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("nest-trainer-\(UUID().uuidString)")
        try! fm.createDirectory(at: dir, withIntermediateDirectories: true)
        let pipeline = tests.appendingPathComponent("NestDiffusionTests/Fixtures/pipelines/sd1")
        for name in try! fm.contentsOfDirectory(atPath: pipeline.path) where name != "model_index.json" {
            try! fm.createSymbolicLink(at: dir.appendingPathComponent(name), withDestinationURL: pipeline.appendingPathComponent(name))
        }
        let models = tests.appendingPathComponent("NestModelsTests/Fixtures/sd1")
        for name in ["image_encoder", "feature_extractor"] {
            try! fm.createSymbolicLink(at: dir.appendingPathComponent(name), withDestinationURL: models.appendingPathComponent(name))
        }
        var index = try! JSONSerialization.jsonObject(with: Data(contentsOf: pipeline.appendingPathComponent("model_index.json"))) as! [String: Any]
        index["image_encoder"] = ["transformers", "CLIPVisionModelWithProjection"]
        index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
        try! JSONSerialization.data(withJSONObject: index).write(to: dir.appendingPathComponent("model_index.json"))
        return dir
    }()

    static func image(_ seed: UInt64, size: Int = 32) -> RGBImage {
        var rng = SeededRandom(seed: seed)
        let base = (0..<3).map { _ in rng.nextInt(below: 256) }
        var pixels: [UInt8] = []
        for y in 0..<size { for x in 0..<size { for c in 0..<3 { pixels.append(UInt8((base[c] + x * 5 * (c + 1) + y * 3) % 256)) } } }
        return try! RGBImage(width: size, height: size, pixels: pixels)
    }

    /// One step: a finite loss, a gradient for every adapter parameter, and
    /// nothing but the adapter changes. (Overfitting a handful of samples ten-fold
    /// is not reachable with a random frozen tiny UNet — see the closing note.)
    @Test func oneStepTrainsOnlyTheAdapter() throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        let config = AdapterConfig(kind: .nested, placeholderToken: "<critter>", classWord: "cat",
                                   imageEncoder: .init(hiddenSize: 32, imageSize: 32),
                                   resampler: .init(embeddingDim: 32, width: 32, outputDim: 32, depth: 1, heads: 2, headDim: 16, queries: 8),
                                   layers: PersonalizationAdapter.layers(for: base.unet.crossAttentionLayers))
        let adapter = PersonalizationAdapter(config: config, seed: 1)
        var options = AdapterTrainingOptions()
        options.resolution = 32
        options.learningRate = 1e-3
        options.dropImage = 0; options.dropText = 0; options.dropBoth = 0
        let unetBefore = base.unet.parameterTensors().map { $0.tensor.array }
        let adapterBefore = adapter.parameterTensors().map { $0.tensor.array }
        let trainer = try AdapterTrainer(pipeline: pipe, adapter: adapter, options: options)
        let examples = (0..<2).map { i in
            AdapterExample(target: Self.image(UInt64(i)), caption: "a <critter> on the beach", references: [Self.image(UInt64(i) + 100)])
        }
        let loss = try trainer.step(examples)
        #expect(loss.isFinite && loss > 0)
        #expect(trainer.state.step == 1 && trainer.optimizer.step == 1)
        let adapterAfter = adapter.parameterTensors().map { $0.tensor.array }
        let changed = zip(adapterBefore, adapterAfter).filter { $0 != $1 }.count
        #expect(changed == adapterBefore.count, "\(changed) of \(adapterBefore.count) adapter tensors changed")
        #expect(base.unet.parameterTensors().map { $0.tensor.array } == unetBefore, "the base UNet must stay frozen")
        #expect(base.unet.crossAttentionLayers.allSatisfy { $0.layer.processor is PlainAttentionProcessor },
                "the step must leave plain processors behind")
    }
}
