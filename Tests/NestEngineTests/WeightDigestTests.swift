import NestEngine
import Testing

/// `Module.weightDigest()`: the same weights (also through float16) give the same
/// fingerprint; a trained change or another layout gives another.
@Suite struct WeightDigestTests {
    final class Pair: Module {
        let a: Linear, b: Linear
        init(seed: UInt64) {
            a = Linear(8, 16, seed: seed); b = Linear(16, 4, seed: seed &+ 1)
            super.init()
            child("a", a); child("b", b)
        }
    }

    @Test func theDigestFollowsTheWeightsNotTheirStorage() {
        let model = Pair(seed: 1), twin = Pair(seed: 1)
        #expect(model.weightDigest() == twin.weightDigest() && model.weightDigest().count == 16)
        #expect(model.weightDigest() != Pair(seed: 2).weightDigest())
        // Rounded to float16 and widened again (a `nest world pack` copy): the same weights.
        let w = twin.a.weight.data
        for i in 0..<twin.a.weight.count { w[i] = Float(Float16(w[i])) }
        #expect(model.weightDigest() == twin.weightDigest())
        // One trained step's worth of change in one value: another UNet.
        w[3] += 1e-2
        #expect(model.weightDigest() != twin.weightDigest())
    }
}
