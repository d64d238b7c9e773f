import Foundation
import NestEngine
import NestModels
import Testing

/// `storeWeightsAsHalf` on whole models (every path that reads a weight:
/// Linear, Conv2d, 1×1 conv projections, the VAE's asymmetric-padding
/// downsampler): the output equals that of the same model with its weights
/// rounded to float16 and kept as float32, bit for bit.
@Suite struct HalfWeightModelTests {
    @Test(arguments: ["sd1", "sdxl"])
    func unetWithHalfWeightsMatchesRoundedWeights(flavour: String) throws {
        let half = try UNet2DConditionModel.load(folder: ModelFixtures.component(flavour, "unet"))
        let rounded = try UNet2DConditionModel.load(folder: ModelFixtures.component(flavour, "unet"))
        // Embedding tables are not Linear/Conv2d weights: round only what storeWeightsAsHalf converts.
        let saved = half.storeWeightsAsHalf(minimumCount: 64)
        #expect(saved > 0)
        for (path, p) in half.namedParameters() where p.tensor.released {
            let t = rounded.namedParameters().first { $0.path == path }!.parameter.tensor
            for i in 0..<t.count { t.data[i] = Float(Float16(t.data[i])) }
        }
        let refs = try ModelFixtures.references(flavour, "unet")
        let x = try UNetTests.inputs(refs)
        let a = half(sample: x.sample, timestep: [500], encoderHiddenStates: x.context, added: x.added)
        let b = rounded(sample: x.sample, timestep: [500], encoderHiddenStates: x.context, added: x.added)
        #expect(a.array == b.array)
        let reference = try refs.reference("out_t500", nchw: true)
        #expect(relativeError(a, reference) < 1e-2, "float16 weights stay close to the float32 model: \(relativeError(a, reference))")
    }

    /// bfloat16 weights (and, with BF16 hardware, bfloat16 products) against
    /// diffusers' float32 output: the error of rounding both operands of every
    /// linear layer to 8 bits of mantissa, not more.
    @Test(arguments: ["sd1", "sdxl"])
    func unetWithBFloat16WeightsStaysCloseToDiffusers(flavour: String) throws {
        let unet = try UNet2DConditionModel.load(folder: ModelFixtures.component(flavour, "unet"))
        unet.freeze()
        #expect(unet.storeWeightsAsBFloat16(minimumCount: 64) > 0)
        let refs = try ModelFixtures.references(flavour, "unet")
        let x = try UNetTests.inputs(refs)
        let out = unet(sample: x.sample, timestep: [500], encoderHiddenStates: x.context, added: x.added)
        let error = relativeError(out, try refs.reference("out_t500", nchw: true))
        #expect(error < 2e-2, "bfloat16 stays close to the float32 model: \(error)")
        #expect(error > 1e-6, "the weights really were rounded")
    }
}
