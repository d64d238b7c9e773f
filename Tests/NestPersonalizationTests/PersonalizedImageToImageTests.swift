import Foundation
import NestDiffusion
import NestEngine
import NestIO
import NestModels
import NestPersonalization
import Testing

/// Subjects in image-to-image and without guidance: the personalized path runs the
/// same schedule cut, init latents and batch layout as the plain pipeline, whose
/// images tools/make_img2img_fixtures.py checks against diffusers.
@Suite(.serialized) struct PersonalizedImageToImageTests {
    let helpers = PersonalizedGenerationTests()
    let subject = Subject(placeholder: "<critter>", images: [PersonalizedGenerationTests.photo(seed: 1)])

    func request(guidance: Float) -> GenerationConfiguration {
        let start = PersonalizedGenerationTests.photo(seed: 7)  // 40×36: resized to the requested 32×32
        return GenerationConfiguration(prompt: "a photo of a <critter> on the beach", steps: 4, guidanceScale: guidance, seed: 3,
                                       width: 32, height: 32, scheduler: .eulerAncestral, initImage: start, strength: 0.75)
    }

    @Test(arguments: [5.0, 1.0] as [Float])
    func subjectsWorkInImageToImage(guidance: Float) throws {
        let base = try StableDiffusionPipeline.load(folder: PersonalizedGenerationTests.folder)
        let pipe = try PersonalizedPipeline(base: base)
        try pipe.add(helpers.adapter(.nested, token: "<critter>", unet: base.unet, seed: 1))
        try pipe.add(helpers.adapter(.ipAdapter, token: "<pet>", unet: base.unet, seed: 5))
        let config = request(guidance: guidance)
        let plain = try base.generate(config)
        var steps: [Int] = []
        let nested = try pipe.generate(config, subjects: [subject]) { steps.append($0.step); return true }
        #expect(steps == [1, 2, 3], "int(4 × 0.75) = 3 steps run")
        #expect(nested.shape == plain.shape && nested.array != plain.array, "the subject must change the image")
        // A decoupled adapter at scale 0 is the base model exactly: the init latents and
        // the schedule cut are the plain pipeline's, with or without guidance.
        var pet = config
        pet.prompt = "a photo of a <pet> on the beach"
        let petSubject = Subject(placeholder: "<pet>", images: [PersonalizedGenerationTests.photo(seed: 2)])
        let off = try pipe.generate(pet, subjects: [petSubject], adapterScales: ["<pet>": 0])
        #expect(off.array == (try base.generate(pet)).array)
        #expect(try base.generate(config).array == plain.array, "the UNet is plain again")
    }

    @Test func theGeneratorTakesInitImagesWithSubjects() throws {
        let base = try StableDiffusionPipeline.load(folder: PersonalizedGenerationTests.folder)
        let pipe = try PersonalizedPipeline(base: base)
        let adapter = helpers.adapter(.nested, token: "<critter>", unet: base.unet, seed: 1)
        try pipe.add(adapter)
        let direct = try pipe.generate(request(guidance: 5), subjects: [subject])
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nest-i2i-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("critter.json").path
        try adapter.save(path: path)
        let generator = Generator(pipeline: try StableDiffusionPipeline.load(folder: PersonalizedGenerationTests.folder),
                                  catalog: try AdapterCatalog(model: PersonalizedGenerationTests.folder, named: [path]))
        var images: [RGBImage] = []
        try generator.generate(GenerationRequest(generation: request(guidance: 5), subjects: [subject])) { images.append($0.image) }
        #expect(images.map(\.pixels) == (try StableDiffusionPipeline.images(direct)).map(\.pixels))
        var missing = request(guidance: 5)
        missing.initImage = nil
        #expect(throws: GenerationRequestError(field: "init_image", "is missing: strength applies to image-to-image")) {
            try generator.generate(GenerationRequest(generation: missing, subjects: [subject])) { _ in }
        }
    }
}
