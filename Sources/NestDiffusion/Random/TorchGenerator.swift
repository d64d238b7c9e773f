import Foundation
import NestEngine

/// Reproduces PyTorch's CPU generator: `torch.Generator("cpu").manual_seed(s)`
/// followed by `torch.randn(...)` gives the same float32 values here, so a
/// seed picks the same initial latents (and ancestral noise) as diffusers.
///
/// The engine is a 32-bit Mersenne Twister. `randn` of a float32 tensor with
/// at least 16 elements first fills it with uniforms (24-bit), then turns
/// each block of 16 into normals by Box–Muller (pairs i and i+8); a ragged
/// end redraws its last 16 values. Smaller tensors take the scalar path:
/// double-precision Box–Muller from 53-bit uniforms, one normal per pair of
/// draws with the sine half cached for the next call.
public final class TorchGenerator: @unchecked Sendable {
    private var state = [UInt32](repeating: 0, count: 624)
    private var index = 624
    private var cachedNormal: Double? = nil

    public init(seed: UInt64) {
        state[0] = UInt32(truncatingIfNeeded: seed)
        for i in 1..<624 {
            state[i] = 1_812_433_253 &* (state[i - 1] ^ (state[i - 1] >> 30)) &+ UInt32(i)
        }
        index = 624
    }

    /// The next 32-bit output of MT19937.
    public func nextUInt32() -> UInt32 {
        if index >= 624 { twist() }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    private func twist() {
        for i in 0..<624 {
            let y = (state[i] & 0x8000_0000) | (state[(i + 1) % 624] & 0x7FFF_FFFF)
            var next = state[(i + 397) % 624] ^ (y >> 1)
            if y & 1 != 0 { next ^= 0x9908_B0DF }
            state[i] = next
        }
        index = 0
    }

    func nextUInt64() -> UInt64 {
        let high = UInt64(nextUInt32()), low = UInt64(nextUInt32())
        return high << 32 | low
    }

    /// Uniform float in [0, 1) from 24 random bits, as torch's float sampler.
    func uniformFloat() -> Float { Float(nextUInt32() & 0xFF_FFFF) * (1.0 / 16_777_216.0) }

    /// Uniform double in [0, 1) from 53 random bits.
    func uniformDouble() -> Double { Double(nextUInt64() & ((1 << 53) - 1)) * (1.0 / 9_007_199_254_740_992.0) }

    /// Standard normals in torch's order for a float32 tensor of `count` values.
    public func normals(_ count: Int) -> [Float] {
        if count < 16 { return (0..<count).map { _ in Float(scalarNormal()) } }
        var data = (0..<count).map { _ in uniformFloat() }
        data.withUnsafeMutableBufferPointer { buffer in
            let p = buffer.baseAddress!
            var i = 0
            while i + 16 <= count {
                boxMuller16(p + i)
                i += 16
            }
            if count % 16 != 0 {
                let tail = p + count - 16
                for j in 0..<16 { tail[j] = uniformFloat() }
                boxMuller16(tail)
            }
        }
        return data
    }

    /// `torch.randn(shape, generator=g)` as a tensor of that shape (PyTorch's
    /// logical order; permute afterwards when the engine wants channels last).
    public func randn(_ shape: [Int]) -> Tensor { Tensor(normals(shape.reduce(1, *)), shape: shape) }

    private func boxMuller16(_ p: UnsafeMutablePointer<Float>) {
        for j in 0..<8 {
            let u1 = 1 - p[j], u2 = p[j + 8]
            let radius = (-2 * logf(u1)).squareRoot()
            let theta = 2 * Float.pi * u2
            p[j] = radius * cosf(theta)
            p[j + 8] = radius * sinf(theta)
        }
    }

    private func scalarNormal() -> Double {
        if let cached = cachedNormal { cachedNormal = nil; return cached }
        let u1 = uniformDouble(), u2 = uniformDouble()
        let r = (-2 * log1p(-u2)).squareRoot()
        let theta = 2 * Double.pi * u1
        cachedNormal = r * sin(theta)
        return r * cos(theta)
    }
}
