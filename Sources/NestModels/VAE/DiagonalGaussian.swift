import NestEngine

/// diffusers' DiagonalGaussianDistribution, channels-last: the encoder's
/// output split along channels into means and log-variances, the latter
/// clamped to [-30, 20] as diffusers does. Built from engine ops only, so
/// gradients flow from a sample back into the encoder.
public struct DiagonalGaussian {
    /// [N, h, w, C] each.
    public let mean: Tensor
    public let logvar: Tensor
    public let std: Tensor

    /// `parameters`: [N, h, w, 2C], means in the first C channels.
    public init(parameters: Tensor) {
        let halves = parameters.chunked(2, axis: -1)
        mean = halves[0]
        logvar = clamped(halves[1], min: -30, max: 20)
        std = F.exp(logvar * 0.5)
    }

    /// exp(logvar).
    public var variance: Tensor { F.exp(logvar) }

    /// The distribution's mode (its mean).
    public var mode: Tensor { mean }

    /// mean + std · noise, with `noise` standard normal of the mean's shape
    /// (the caller draws it, so the sample is reproducible and seedable).
    public func sample(noise: Tensor) -> Tensor {
        precondition(noise.shape == mean.shape, "noise \(noise.shape) must have the latents' shape \(mean.shape)")
        return mean + std * noise
    }

    /// KL divergence to the standard normal, summed over each sample: [N].
    public func klToStandardNormal() -> Tensor {
        (F.square(mean) + variance - logvar).addingScalar(-1).sum(axes: [1, 2, 3]).scaled(0.5)
    }
}

/// torch.clamp, gradient included (it passes where min ≤ x ≤ max), from
/// differentiable engine ops: x·mask + fill, where mask is 1 inside the range
/// and fill holds the bound outside it. The forward values are exact
/// (x·1 + 0 = x, x·0 + bound = bound); an all-in-range input is returned as is.
func clamped(_ x: Tensor, min lo: Float, max hi: Float) -> Tensor {
    let mask = Tensor(zeros: x.shape), fill = Tensor(zeros: x.shape)
    var outside = false
    for i in 0..<x.count {
        let v = x.data[i]
        if v < lo { fill.data[i] = lo; outside = true }
        else if v > hi { fill.data[i] = hi; outside = true }
        else { mask.data[i] = 1 }  // also NaN, which torch.clamp propagates
    }
    return outside ? x * mask + fill : x
}
