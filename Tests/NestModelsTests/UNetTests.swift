import Foundation
import NestEngine
import NestIO
import NestModels
import Testing

/// UNet2DConditionModel against diffusers 0.42.1 (tools/model_fixtures/unet.py).
@Suite struct UNetTests {
    struct Case: Sendable, CustomStringConvertible {
        let flavour: String
        var description: String { flavour }
    }

    static let flavours = ["sd1", "sd2", "sdxl"]

    /// The flavour's inputs, as the engine takes them.
    struct Inputs {
        let sample: Tensor, context: Tensor
        let added: (textEmbeds: Tensor, timeIds: Tensor)?
    }

    static func inputs(_ refs: SafeTensorsFile) throws -> Inputs {
        let added = refs.names.contains("text_embeds")
            ? (textEmbeds: try refs.reference("text_embeds"), timeIds: try refs.reference("time_ids")) : nil
        return Inputs(sample: try refs.reference("sample", nchw: true),
                      context: try refs.reference("encoder_hidden_states"), added: added)
    }

    @Test(arguments: flavours)
    func matchesDiffusersAtEachTimestep(flavour: String) throws {
        let unet = try UNet2DConditionModel.load(folder: ModelFixtures.component(flavour, "unet"))
        let refs = try ModelFixtures.references(flavour, "unet")
        let x = try Self.inputs(refs)
        for t in [1, 500, 999] {
            let out = unet(sample: x.sample, timestep: [Float(t)], encoderHiddenStates: x.context, added: x.added)
            let error = relativeError(out, try refs.reference("out_t\(t)", nchw: true))
            print("UNet \(flavour) t=\(t): max relative error \(error)")
            #expect(error <= 1e-4, "\(flavour) t=\(t): \(error)")
        }
        // One timestep per batch item.
        let mixed = unet(sample: x.sample, timestep: [10, 700], encoderHiddenStates: x.context, added: x.added)
        let error = relativeError(mixed, try refs.reference("out_mixed", nchw: true))
        print("UNet \(flavour) t=[10, 700]: max relative error \(error)")
        #expect(error <= 1e-4)
    }

    /// only_cross_attention on the first level: its attn1 layers attend to the text too.
    @Test func onlyCrossAttentionMatchesDiffusers() throws {
        let unet = try UNet2DConditionModel.load(folder: ModelFixtures.component("sd1", "unet_only_cross"))
        let refs = try ModelFixtures.references("sd1", "unet")
        let x = try Self.inputs(refs)
        let out = unet(sample: x.sample, timestep: [500], encoderHiddenStates: x.context)
        let error = relativeError(out, try refs.reference("only_cross_out_t500", nchw: true))
        print("UNet only_cross_attention t=500: max relative error \(error)")
        #expect(error <= 1e-4)
        #expect(unet.crossAttentionLayers.map(\.path).filter { $0.hasSuffix("attn1.processor") } == [
            "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor",
            "up_blocks.1.attentions.0.transformer_blocks.0.attn1.processor",
            "up_blocks.1.attentions.1.transformer_blocks.0.attn1.processor",
        ])
    }

    @Test func sinusoidalEmbeddingMatchesDiffusers() throws {
        let refs = try ModelFixtures.references("sd1", "unet")
        let steps = try refs.reference("time_proj_steps").array
        let flipped = sinusoidalTimestepEmbedding(steps, dim: 32, flipSinToCos: true, downscaleFreqShift: 0)
        let shifted = sinusoidalTimestepEmbedding(steps, dim: 33, flipSinToCos: false, downscaleFreqShift: 1)
        let e1 = relativeError(flipped, try refs.reference("time_proj_flip_shift0"))
        let e2 = relativeError(shifted, try refs.reference("time_proj_noflip_shift1"))
        print("timestep sinusoids: max relative error \(e1), \(e2)")
        #expect(e1 <= 1e-6 && e2 <= 1e-6)
        #expect(shifted.shape == [5, 33] && shifted.data[32] == 0, "odd widths end in a zero column")
    }

    @Test func configsNormalizeDiffusersQuirks() throws {
        let sd15 = try UNet2DConditionConfig.load(from: RealConfigs.url("sd15", "config.json"))
        #expect(sd15.levels.map(\.heads) == [8, 8, 8, 8], "attention_head_dim is the head count")
        #expect(sd15.levels.map(\.transformerLayers) == [1, 1, 1, 1])
        #expect(sd15.hasMidBlock && sd15.addedTimeConditioning == nil && sd15.timeEmbeddingDim == 1280)
        let xl = try UNet2DConditionConfig.load(from: RealConfigs.url("sdxl_base", "config.json"))
        #expect(xl.levels.map(\.heads) == [5, 10, 20])
        #expect(xl.levels.map(\.transformerLayers) == [1, 2, 10])
        #expect(xl.addedTimeConditioning?.timeEmbedDim == 256 && xl.addedTimeConditioning?.projectionInputDim == 2816)
        #expect(xl.downBlockTypes == [.plain, .crossAttention, .crossAttention])
        #expect(!xl.upcastAttention, "upcast_attention null reads as false")
    }

    /// The real SD 1.5 / SDXL base module trees, compared with the keys and
    /// tensor names diffusers gives for the published configs. Only widths
    /// are shrunk (to keep the test from allocating gigabytes); every count
    /// that shapes the tree is the published one, and the paths come from the
    /// model's own construction.
    @Test(arguments: [("sd15", 16, 686), ("sdxl_base", 70, 1680)])
    func realConfigModulePathsMatchDiffusers(name: String, crossLayers: Int, tensors: Int) throws {
        let unet = UNet2DConditionModel(config: try RealConfigs.structuralMiniature(name))
        let expectedKeys = try RealConfigs.lines(name, "attn_processors.txt")
        #expect(unet.attentionLayers.map(\.path) == expectedKeys)
        let cross = unet.crossAttentionLayers.map(\.path)
        #expect(cross == expectedKeys.filter { $0.hasSuffix(".attn2.processor") })
        #expect(cross.count == crossLayers)
        let names = unet.namedParameters().map(\.path)
        #expect(names == (try RealConfigs.lines(name, "parameters.txt")), "parameter names in state_dict order")
        #expect(names.count == tensors)
    }

    @Test func crossAttentionProcessorIsSwappable() throws {
        final class Recorder: AttentionProcessor {
            var calls = 0
            let plain = PlainAttentionProcessor()
            func attend(_ layer: Attention, hidden: Tensor, context: Tensor?) -> Tensor {
                calls += 1
                #expect(context != nil)
                return plain.attend(layer, hidden: hidden, context: context)
            }
        }
        let unet = try UNet2DConditionModel.load(folder: ModelFixtures.component("sd1", "unet"))
        let refs = try ModelFixtures.references("sd1", "unet")
        let x = try Self.inputs(refs)
        let recorder = Recorder()
        for (_, layer) in unet.crossAttentionLayers { layer.processor = recorder }
        let out = unet(sample: x.sample, timestep: [500], encoderHiddenStates: x.context)
        #expect(recorder.calls == unet.crossAttentionLayers.count)
        #expect(relativeError(out, try refs.reference("out_t500", nchw: true)) <= 1e-4)
    }

    @Test func randomConstructionIsSeeded() throws {
        let config = try UNet2DConditionConfig.load(from: ModelFixtures.component("sdxl", "unet").appendingPathComponent("config.json"))
        let a = UNet2DConditionModel(config: config, seed: 7), b = UNet2DConditionModel(config: config, seed: 7)
        let path = "up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
        #expect(a.parameter(at: path)!.tensor.array == b.parameter(at: path)!.tensor.array)
        let sibling = a.parameter(at: "up_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight")!.tensor
        #expect(sibling.array != a.parameter(at: path)!.tensor.array, "same-shaped layers get different weights")
    }
}
