import Foundation
import NestEngine

/// diffusers' `get_timestep_embedding`: for each timestep t, sin(t·fᵢ) and
/// cos(t·fᵢ) with fᵢ = exp(−ln(maxPeriod)·i / (half − shift)), i < half.
/// `flipSinToCos` puts the cosines first; an odd `dim` gets a zero column.
///
/// Computed step by step in float32 as PyTorch does (so t·fᵢ rounds the same
/// way: at t = 999 one ulp of fᵢ moves the angle by up to ~6e-5); exp, sin and cos
/// are evaluated in double and rounded once, which agrees with PyTorch's
/// float32 kernels to the last bit almost everywhere.
public func sinusoidalTimestepEmbedding(_ timesteps: [Float], dim: Int, flipSinToCos: Bool,
                                        downscaleFreqShift: Float, maxPeriod: Double = 10000) -> Tensor {
    let half = dim / 2
    let logPeriod = Float(-log(maxPeriod))
    let divisor = Float(Double(half) - Double(downscaleFreqShift))
    let frequencies: [Float] = (0..<half).map { i in
        let exponent = (logPeriod * Float(i)) / divisor
        return Float(exp(Double(exponent)))
    }
    let out = Tensor(zeros: [timesteps.count, dim])
    let (sinOffset, cosOffset) = flipSinToCos ? (half, 0) : (0, half)
    for (row, t) in timesteps.enumerated() {
        let base = out.data + row * dim
        for i in 0..<half {
            let angle = Double(t * frequencies[i])
            base[sinOffset + i] = Float(sin(angle))
            base[cosOffset + i] = Float(cos(angle))
        }
    }
    return out
}

/// diffusers' `TimestepEmbedding`: linear_1 → SiLU → linear_2 (→ optional SiLU).
/// The UNet uses one for the timestep and, in SDXL, one (`add_embedding`)
/// for the pooled text embeds and size/crop ids. LCM-distilled UNets also give
/// the timestep one a bias-free `cond_proj`, which adds a projected condition
/// (the guidance-scale embedding) to the sinusoids before linear_1.
public final class TimestepEmbedding: Module {
    public let linear_1: Linear
    public let linear_2: Linear
    public let cond_proj: Linear?
    public let postActivation: Bool

    public init(inChannels: Int, embedDim: Int, postActivation: Bool = false, conditionDim: Int? = nil) {
        linear_1 = Linear(inChannels, embedDim)
        linear_2 = Linear(embedDim, embedDim)
        cond_proj = conditionDim.map { Linear($0, inChannels, bias: false) }
        self.postActivation = postActivation
        super.init()
        child("linear_1", linear_1)
        child("linear_2", linear_2)
        if let cond_proj { child("cond_proj", cond_proj) }
    }

    /// x: [B, inChannels] → [B, embedDim]. `condition` [B, conditionDim] is
    /// ignored without `cond_proj`, as in diffusers.
    public func callAsFunction(_ x: Tensor, condition: Tensor? = nil) -> Tensor {
        var input = x
        if let cond_proj, let condition { input = x + cond_proj(condition) }
        let out = linear_2(F.silu(linear_1(input)))
        return postActivation ? F.silu(out) : out
    }
}

/// The pipelines' `get_guidance_scale_embedding` for UNets with `time_cond_proj_dim`:
/// sinusoids of w·1000 (sines first) with frequencies exp(−i·ln(10000)/(half − 1)),
/// one row per batch item. Built in float32 step by step like torch.
public func guidanceScaleEmbedding(_ w: Float, dim: Int, count: Int) -> Tensor {
    let half = dim / 2
    let scaled = w * 1000
    let logBase = Float(Foundation.log(10000.0))
    let step = logBase / Float(half - 1)
    let out = Tensor(zeros: [count, dim])
    for i in 0..<half {
        let frequency = Float(exp(Double(Float(i) * -step)))
        let angle = Double(scaled * frequency)
        for row in 0..<count {
            out.data[row * dim + i] = Float(sin(angle))
            out.data[row * dim + half + i] = Float(cos(angle))
        }
    }
    return out
}
