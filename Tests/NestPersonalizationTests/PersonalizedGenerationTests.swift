import NestTestSupport
import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import NestPersonalization
import Testing

/// Subjects in whole generations: the tiny SD1-like pipeline plus the tiny
/// CLIP image encoder, with random adapters of each kind.
@Suite(.serialized) struct PersonalizedGenerationTests {
    static let tests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    /// A model folder: the sd1 pipeline fixture plus image_encoder/ and feature_extractor/.
    static let folder = ModelFolderFixture.withImageEncoder("sd1", prefix: "nest-personalized")

    static func photo(seed: UInt64) -> RGBImage {
        var rng = SeededRandom(seed: seed)
        return try! RGBImage(width: 40, height: 36, pixels: (0..<(40 * 36 * 3)).map { _ in UInt8(rng.nextInt(below: 256)) })
    }

    func adapter(_ kind: AdapterConfig.Kind, token: String, unet: UNet2DConditionModel, seed: UInt64) -> PersonalizationAdapter {
        let config = AdapterConfig(
            kind: kind, placeholderToken: token, classWord: "cat",
            imageEncoder: .init(hiddenSize: 32, imageSize: 32),
            resampler: .init(embeddingDim: 32, width: 16, outputDim: 16, depth: 1, heads: 2, headDim: 8, queries: 4, ffMult: 2),
            layers: PersonalizationAdapter.layers(for: unet.crossAttentionLayers), contextWidth: 16)
        let a = PersonalizationAdapter(config: config, seed: seed)
        // Make the projections large enough to change the image visibly.
        for (_, t) in a.parameterTensors() where t.rank == 2 { t.assign(t.scaled(4)) }
        return a
    }

    let config = GenerationConfiguration(prompt: "a photo of a <critter> on the beach", steps: 3, guidanceScale: 5, seed: 3,
                                         scheduler: .ddim)

    @Test func nestedSubjectChangesTheImageAndPlainPromptsAreUntouched() throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        try pipe.add(adapter(.nested, token: "<critter>", unet: base.unet, seed: 1))
        let plain = try base.generate(config)
        let subject = Subject(placeholder: "<critter>", images: [Self.photo(seed: 1)])
        let personalized = try pipe.generate(config, subjects: [subject])
        #expect(plain.shape == personalized.shape)
        #expect(plain.array != personalized.array, "the subject must change the image")
        // After generation the UNet is plain again.
        #expect(try base.generate(config).array == plain.array)
        // Another photo gives another image.
        let other = try pipe.generate(config, subjects: [Subject(placeholder: "<critter>", images: [Self.photo(seed: 2)])])
        #expect(other.array != personalized.array)
    }

    @Test func twoSubjectsAndTheBaselines() throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        try pipe.add(adapter(.nested, token: "<critter>", unet: base.unet, seed: 1))
        try pipe.add(adapter(.nested, token: "<bot>", unet: base.unet, seed: 2))
        try pipe.add(adapter(.singleToken, token: "<pet>", unet: base.unet, seed: 3))
        var two = config
        two.prompt = "a <critter> and a <bot> in the city"
        let both = try pipe.generate(two, subjects: [Subject(placeholder: "<critter>", images: [Self.photo(seed: 1)]),
                                                     Subject(placeholder: "<bot>", images: [Self.photo(seed: 2)])])
        // One subject: <bot> unbound reads as its class word (naming it without its photo is refused).
        var oneSubject = two
        oneSubject.prompt = "a <critter> and a cat in the city"
        let one = try pipe.generate(oneSubject, subjects: [Subject(placeholder: "<critter>", images: [Self.photo(seed: 1)])])
        #expect(both.array != one.array)
        var single = config
        single.prompt = "a <pet> at night"
        let plain = try base.generate(single)
        let baseline = try pipe.generate(single, subjects: [Subject(placeholder: "<pet>", images: [Self.photo(seed: 4)])])
        #expect(plain.array != baseline.array, "the single-token baseline must change the image")
    }

    /// Our ip-adapter kind (decoupled attention over the same encoder's tokens):
    /// at scale 0 the branch is off and the image is the base model's exactly.
    @Test func decoupledAttentionKindScalesFromThePlainImage() throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        try pipe.add(adapter(.ipAdapter, token: "<critter>", unet: base.unet, seed: 5))
        let plain = try base.generate(config)
        let subject = Subject(placeholder: "<critter>", images: [Self.photo(seed: 1)])
        let off = try pipe.generate(config, subjects: [subject], adapterScales: ["<critter>": 0])
        #expect(off.array == plain.array)
        let on = try pipe.generate(config, subjects: [subject])
        #expect(on.array != plain.array, "the decoupled branch must change the image")
        #expect(base.unet.crossAttentionLayers.allSatisfy { $0.layer.processor is PlainAttentionProcessor })
        #expect(try base.generate(config).array == plain.array)
    }

    @Test func clearErrors() throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        try pipe.add(adapter(.nested, token: "<critter>", unet: base.unet, seed: 1))
        var noToken = config
        noToken.prompt = "a photo of a cat"
        let subject = Subject(placeholder: "<critter>", images: [Self.photo(seed: 1)])
        #expect(throws: ModelConfigError.self) { try pipe.generate(noToken, subjects: [subject]) }
        do { _ = try pipe.generate(noToken, subjects: [subject]) } catch {
            #expect(String(describing: error).contains("does not contain the placeholder token <critter>"))
        }
        do { _ = try pipe.generate(config, subjects: [Subject(placeholder: "<dog>", images: [Self.photo(seed: 1)])]) } catch {
            #expect(String(describing: error).contains("names no loaded adapter"))
        }
        do { try pipe.add(adapter(.nested, token: "<critter>", unet: base.unet, seed: 9)) } catch {
            #expect(String(describing: error).contains("two adapters claim the placeholder token <critter>"))
        }
    }

    @Test func ipAdapterFileInGeneration() throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        let file = Self.tests.appendingPathComponent("NestPersonalizationTests/Fixtures/ipadapter/ip_adapter_plus.safetensors")
        pipe.ipAdapter = try IPAdapter.load(path: file)
        var plainPrompt = config
        plainPrompt.prompt = "a photo of a cat"
        let plain = try base.generate(plainPrompt)
        let withImage = try pipe.generate(plainPrompt, subjects: [], ipImages: [Self.photo(seed: 5)], ipScale: 0.8)
        #expect(plain.array != withImage.array)
        let zeroScale = try pipe.generate(plainPrompt, subjects: [], ipImages: [Self.photo(seed: 5)], ipScale: 0)
        #expect(zeroScale.array == plain.array, "scale 0 must be the base model exactly")
    }

    @Test func recordingAttentionLeavesTheUNetAsItWas() throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        try pipe.add(adapter(.nested, token: "<critter>", unet: base.unet, seed: 1))
        let subject = Subject(placeholder: "<critter>", images: [Self.photo(seed: 1)])
        let before = base.unet.crossAttentionLayers.map { ObjectIdentifier($0.layer.processor) }
        let unrecorded = try pipe.generate(config, subjects: [subject])
        pipe.recordAttention = true
        let recorded = try pipe.generate(config, subjects: [subject])
        #expect(!pipe.recorders.isEmpty && recorded.array == unrecorded.array, "recording must not change the image")
        #expect(base.unet.crossAttentionLayers.map { ObjectIdentifier($0.layer.processor) } == before,
                "every layer gets its own processor back, recorders included")
        pipe.recordAttention = false
        #expect(try pipe.generate(config, subjects: [subject]).array == unrecorded.array)
        #expect(try pipe.generate(config, subjects: [subject]).array == unrecorded.array)
        #expect(try base.generate(config).array == base.generate(config).array)
    }

    @Test func badSubjectSettingsAreRefusedByName() throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        try pipe.add(adapter(.nested, token: "<critter>", unet: base.unet, seed: 1))
        let subject = Subject(placeholder: "<critter>", images: [Self.photo(seed: 1)])
        for (options, field) in [(NestedAttentionOptions(valueNormalization: .nan), "value_norm"),
                                 (NestedAttentionOptions(tokenWeight: .infinity), "token_weight"),
                                 (NestedAttentionOptions(tokenWeight: 0), "token_weight")] {
            #expect(throws: GenerationRequestError.self) { try pipe.generate(config, subjects: [subject], options: ["<critter>": options]) }
            do { _ = try pipe.generate(config, subjects: [subject], options: ["<critter>": options]) } catch let e as GenerationRequestError {
                #expect(e.field == field)
            }
        }
        do {
            _ = try pipe.generate(config, subjects: [subject], ipScale: .nan)
            Issue.record("a NaN subject scale must be refused")
        } catch let e as GenerationRequestError { #expect(e.field == "subject_scale") }
        // The prompt names a loaded subject, but no photo of it is given.
        do {
            _ = try pipe.generate(config, subjects: [])
            Issue.record("a prompt naming <critter> without its photo must be refused")
        } catch let e as GenerationRequestError { #expect(e.field == "prompt" && e.problem.contains("<critter>")) }
    }
}
