import Foundation
import NestDiffusion
import NestEngine
import NestModels
import NestPersonalization
import Testing

/// The subject methods compose a generation as binding each kind by hand does.
extension PersonalizedGenerationTests {
    /// The decoupled baseline's unconditional half sees "no image" and its scale is the
    /// request's; the single-token vector replaces the placeholder's row in the conditional
    /// prompts only; and nothing stays bound afterwards.
    @Test func baselinesMatchBindingByHand() throws {
        let base = try StableDiffusionPipeline.load(folder: Self.folder)
        let pipe = try PersonalizedPipeline(base: base)
        let decoupled = adapter(.ipAdapter, token: "<critter>", unet: base.unet, seed: 5)
        let single = adapter(.singleToken, token: "<pet>", unet: base.unet, seed: 3)
        try pipe.add(decoupled)
        try pipe.add(single)
        let config = GenerationConfiguration(prompt: "a <critter> and a <pet> on the beach", steps: 2, guidanceScale: 4, seed: 7,
                                             scheduler: .ddim)
        let subjects = [Subject(placeholder: "<critter>", images: [Self.photo(seed: 1)]),
                        Subject(placeholder: "<pet>", images: [Self.photo(seed: 2)])]
        let plain = try base.generate(config)
        let viaMethods = try pipe.generate(config, subjects: subjects, adapterScales: ["<critter>": 0.5])

        let critter = pipe.encoderTokens(subjects[0], adapter: decoupled), pet = pipe.encoderTokens(subjects[1], adapter: single)
        let grid = pipe.imageEncoder.config.gridSize
        let empty = Autograd.noGrad { decoupled.emptyTokens(featureCount: grid * grid + 1) }
        let binding = try Autograd.noGrad {
            try DecoupledAttentionBinding.install(on: base.unet, adapter: decoupled, tokens: F.concat([empty, critter], axis: 0), scale: 0.5)
        }
        let position = base.prompts.position(of: "<pet>", in: config.prompt)!
        let byHand = try base.generate(config, conditioning: { positive, _ in
            positive.hidden = replacingToken(in: positive.hidden, positions: [position], with: single.subjectVector(pet))
        })
        binding.uninstall()
        #expect(viaMethods.array == byHand.array)
        #expect(viaMethods.array != plain.array)
        #expect(try base.generate(config).array == plain.array)
    }
}
