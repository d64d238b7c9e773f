import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import NestPersonalization
import Testing

/// The one generation entry point: requests checked whole, adapters from files
/// loaded once, images handed out batch by batch, attention recorded on request.
@Suite(.serialized) struct GeneratorTests {
    /// The personalized test model plus an adapter file for <critter>.
    static let adapterFile: String = {
        let base = try! StableDiffusionPipeline.load(folder: PersonalizedGenerationTests.folder)
        let adapter = PersonalizedGenerationTests().adapter(.nested, token: "<critter>", unet: base.unet, seed: 1)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("nest-generator-\(UUID().uuidString).json").path
        try! adapter.save(path: path)
        return path
    }()

    /// An adapter trained together with its UNet warns, once, when loaded on another UNet.
    @Test func anAdapterTrainedWithAnotherUNetIsNamedInANotice() throws {
        let pipeline = try StableDiffusionPipeline.load(folder: PersonalizedGenerationTests.folder)
        let adapter = PersonalizedGenerationTests().adapter(.nested, token: "<critter>", unet: pipeline.unet, seed: 1)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nest-cotrained-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let request = GenerationRequest(generation: GenerationConfiguration(prompt: "a <critter>", steps: 1, seed: 1),
                                        subjects: [Subject(placeholder: "<critter>", images: [PersonalizedGenerationTests.photo(seed: 1)])])
        for (name, digest, warns) in [("same", pipeline.unet.weightDigest(), false), ("other", "0123456789abcdef", true),
                                      ("frozen", nil, false)] {
            let path = folder.appendingPathComponent("\(name).json").path
            try adapter.save(path: path, trainedWithUNet: digest)
            let generator = Generator(pipeline: pipeline, catalog: try AdapterCatalog(model: PersonalizedGenerationTests.folder, named: [path]))
            var notices: [String] = []
            generator.notice = { notices.append($0) }
            for _ in 0..<2 { try generator.generate(request) { _ in } }
            #expect(notices.count == (warns ? 1 : 0), "\(name): \(notices)")
            if warns { #expect(notices[0].contains("<critter>") && notices[0].contains("0123456789abcdef") && !notices[0].contains("\n")) }
        }
    }

    @Test func requestsAreCheckedWhole() {
        let photo = PersonalizedGenerationTests.photo(seed: 1)
        let generation = GenerationConfiguration(prompt: "a <critter>")
        let cases: [(GenerationRequest, String)] = [
            (GenerationRequest(generation: generation, valueNormalization: .nan), "value_norm"),
            (GenerationRequest(generation: generation, tokenWeight: -1), "token_weight"),
            (GenerationRequest(generation: generation, ipScale: .infinity), "subject_scale"),
            (GenerationRequest(generation: generation, subjects: [Subject(placeholder: "<critter>", images: [])]), "subject"),
            (GenerationRequest(generation: generation, recordAttention: true), "save_attention"),
            (GenerationRequest(generation: GenerationConfiguration(prompt: "x", steps: 0),
                               subjects: [Subject(placeholder: "<critter>", images: [photo])]), "steps"),
        ]
        for (request, field) in cases {
            do { try request.validate(); Issue.record("\(field) must be refused") } catch let e as GenerationRequestError {
                #expect(e.field == field, "\(e)")
            } catch { Issue.record("\(error)") }
        }
    }

    @Test func subjectsFromAdapterFilesBatchByBatch() throws {
        let pipeline = try StableDiffusionPipeline.load(folder: PersonalizedGenerationTests.folder)
        let catalog = try AdapterCatalog(model: PersonalizedGenerationTests.folder, named: [Self.adapterFile])
        let generator = Generator(pipeline: pipeline, catalog: catalog)
        let subject = Subject(placeholder: "<critter>", images: [PersonalizedGenerationTests.photo(seed: 1)])
        var config = GenerationConfiguration(prompt: "a <critter> on the beach", steps: 2, guidanceScale: 4, seed: 3,
                                             scheduler: .ddim, count: 3, batchSize: 2)
        var recorded = GenerationRequest(generation: config, subjects: [subject], recordAttention: true)
        var first: [[UInt8]] = [], layers = 0
        try generator.generate(recorded) { made in
            if made.index == 0 {
                let maps = FileManager.default.temporaryDirectory.appendingPathComponent("nest-maps-\(UUID().uuidString)")
                defer { try? FileManager.default.removeItem(at: maps) }
                layers = try generator.writeAttentionMaps(of: recorded, image: made.image, to: maps, overwrite: false)
            }
            first.append(made.image.pixels)
        }
        #expect(first.count == 3 && layers == pipeline.unet.crossAttentionLayers.count)
        recorded.recordAttention = false
        var again: [[UInt8]] = []
        try generator.generate(recorded) { again.append($0.image.pixels) }
        #expect(again == first, "a recorded request leaves the model as it was")
        // The same request through the pipeline directly, batch by batch.
        config.count = 2
        let direct = try StableDiffusionPipeline.images(generator.personalized!.generate(config, subjects: [subject]))
        #expect(direct.map(\.pixels) == Array(first.prefix(2)))
        // Naming the subject without its photo, or a photo without an adapter, is refused.
        #expect(throws: GenerationRequestError.self) { try generator.generate(GenerationRequest(generation: config)) { _ in } }
        let stranger = Subject(placeholder: "<stranger>", images: subject.images)
        #expect(throws: GenerationRequestError.self) {
            try generator.generate(GenerationRequest(generation: config, subjects: [subject, stranger])) { _ in }
        }
    }
}
