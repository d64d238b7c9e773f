import Foundation
import Testing
@testable import NestEngine

/// Float16 weight storage: the conversions are IEEE's (against Swift's
/// Float16), and a layer computes exactly what it computes with its weight
/// rounded to float16 and kept as float32.
@Suite struct HalfWeightsTests {
    @Test func conversionsAreIEEERoundToNearestEven() {
        // Every finite half widens exactly and narrows back to itself.
        let halves = (0..<65536).map { Float16(bitPattern: UInt16($0)) }.filter { $0.isFinite }
        let exact = Tensor(halves.map { Float($0) }, shape: [halves.count])
        #expect(HalfWeights(exact).widened().array == exact.array)
        // Arbitrary floats (normal, half-subnormal, overflowing, infinite) round as Float16(_:) does.
        var rng = SeededRandom(seed: 3)
        var values: [Float] = [0, -0.0, 65504, 65519.99, 65520, -70000, .infinity, -.infinity, 6e-8, 2.98e-8, 1e-10]
        for _ in 0..<100_000 {
            let magnitude = Float(pow(2.0, Double(rng.nextInt(below: 50)) - 30))
            values.append((rng.nextFloat() * 2 - 1) * magnitude)
        }
        let widened = HalfWeights(Tensor(values, shape: [values.count])).widened().array
        let expected = values.map { Float(Float16($0)) }
        #expect(zip(widened, expected).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) })
    }

    @Test func halfStoredLayersComputeWithTheRoundedWeights() {
        func model() -> (Linear, Conv2d) {
            ParameterSeeds.scoped(11) { (Linear(64, 96), Conv2d(48, 40, kernelSize: 3, padding: 1)) }
        }
        let (linear, conv) = model(), (refLinear, refConv) = model()
        for w in [refLinear.weight, refConv.weight] {
            for i in 0..<w.count { w.data[i] = Float(Float16(w.data[i])) }
        }
        let parameters = linear.parameterCount + conv.parameterCount
        let saved = linear.storeWeightsAsHalf() + conv.storeWeightsAsHalf()
        #expect(saved == 2 * (64 * 96 + 48 * 9 * 40))
        #expect(linear.weight.released && linear.halfWeight != nil && linear.bias?.released == false)
        #expect(linear.parameterCount + conv.parameterCount == parameters, "shapes stay")
        let x = Tensor.randn([3, 64], seed: 1), image = Tensor.randn([2, 9, 7, 48], seed: 2)
        #expect(linear(x).array == refLinear(x).array)
        #expect(conv(image).array == refConv(image).array)
        // A small weight stays float32; a trainable one is left alone.
        let small = Linear(4, 4), trainable = Linear(128, 128)
        trainable.weight.requiresGrad = true
        #expect(small.storeWeightsAsHalf() == 0 && trainable.storeWeightsAsHalf() == 0)
    }
}
