import Foundation
import NestDiffusion
import NestEngine
import NestModels
import NestPersonalization
import Testing

/// Attention processors are set for one scope and the UNet's own come back after it,
/// whatever happened inside: a recording generation leaves nothing behind.
@Suite(.serialized) struct AttentionProcessorScopeTests {
    /// The processor of every layer, by key, as object identities.
    static func identities(_ unet: UNet2DConditionModel) -> [String: ObjectIdentifier] {
        unet.attentionProcessors.mapValues { ObjectIdentifier($0 as AnyObject) }
    }

    @Test func processorsAreRestoredOnExitAndOnThrow() throws {
        let unet = try StableDiffusionPipeline.load(folder: PersonalizedGenerationTests.folder).unet
        let before = Self.identities(unet)
        let path = unet.crossAttentionLayers[0].path
        let swapped = IPAdapterProcessor()
        try unet.withAttentionProcessors([path: swapped]) {
            #expect(unet.attentionProcessors[path] === swapped)
            // Something set by hand inside the scope does not outlive it either.
            unet.crossAttentionLayers[1].layer.processor = IPAdapterProcessor()
        }
        #expect(Self.identities(unet) == before)
        struct Stop: Error {}
        #expect(throws: Stop.self) { try unet.withAttentionProcessors([path: swapped]) { throw Stop() } }
        #expect(Self.identities(unet) == before)
        #expect(throws: ModelConfigError.self) { try unet.withAttentionProcessors(["mid_block.nothing.processor": swapped]) {} }
        #expect(Self.identities(unet) == before)
    }

    /// Attention recorded through the library, then two plain generations: both are the
    /// image the model made before any subject was bound, and the UNet holds its own processors.
    @Test func recordingLeavesPlainGenerationsAlone() throws {
        // The test model with the <critter> adapter as its own (a named one would need a photo in every request).
        let fm = FileManager.default
        let model = fm.temporaryDirectory.appendingPathComponent("nest-scope-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: model) }
        try fm.createDirectory(at: model.appendingPathComponent("adapters"), withIntermediateDirectories: true)
        for name in try fm.contentsOfDirectory(atPath: PersonalizedGenerationTests.folder.path) {
            try fm.createSymbolicLink(at: model.appendingPathComponent(name),
                                      withDestinationURL: PersonalizedGenerationTests.folder.appendingPathComponent(name))
        }
        let adapter = URL(fileURLWithPath: GeneratorTests.adapterFile)
        for ext in ["json", "safetensors"] {
            try fm.copyItem(at: adapter.deletingPathExtension().appendingPathExtension(ext),
                            to: model.appendingPathComponent("adapters/critter.\(ext)"))
        }
        let pipeline = try StableDiffusionPipeline.load(folder: model)
        let generator = Generator(pipeline: pipeline, catalog: try AdapterCatalog(model: model, named: []))
        #expect(generator.catalog.files["<critter>"] != nil)
        let before = Self.identities(pipeline.unet)
        let plain = GenerationRequest(generation: GenerationConfiguration(prompt: "a cat on the beach", steps: 2, guidanceScale: 4, seed: 5,
                                                                          scheduler: .ddim))
        func image(_ request: GenerationRequest) throws -> [UInt8] {
            var pixels: [UInt8] = []
            try generator.generate(request) { pixels = $0.image.pixels }
            return pixels
        }
        let first = try image(plain)
        let subject = Subject(placeholder: "<critter>", images: [PersonalizedGenerationTests.photo(seed: 2)])
        let recorded = GenerationRequest(generation: GenerationConfiguration(prompt: "a <critter> on the beach", steps: 2, guidanceScale: 4,
                                                                             seed: 5, scheduler: .ddim),
                                         subjects: [subject], recordAttention: true)
        let personalized = try image(recorded)
        #expect(generator.personalized!.recorders.count == pipeline.unet.crossAttentionLayers.count)
        #expect(generator.personalized!.recorders.allSatisfy { $0.steps > 0 }, "the recorders saw the generation")
        #expect(personalized != first)
        #expect(try image(plain) == first)
        #expect(try image(plain) == first)
        #expect(Self.identities(pipeline.unet) == before)
        #expect(pipeline.unet.attentionProcessors.values.allSatisfy { $0 is PlainAttentionProcessor })
    }
}
