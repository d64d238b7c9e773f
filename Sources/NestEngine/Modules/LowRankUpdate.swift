/// A low-rank correction added to a layer's output: `scale · up(down(x))` (LoRA).
///
/// Applied unmerged, beside the layer's own weight, rather than merged into it:
/// the base weight is never copied or written (it may be float16, bfloat16 or a
/// read-only mapping of the file), removing the update restores the base layer
/// exactly, and the extra work is rank·(in + out) per position against the
/// layer's in·out.
public final class LowRankUpdate {
    /// Linear: [rank, in]. Convolution: [rank, in, kh, kw] (OIHW, as LoRA files store it), run with
    /// the base convolution's stride and padding.
    public let down: Tensor
    /// [out, rank], already multiplied by the scale.
    public let up: Tensor

    /// `down` as [rank, in] or [rank, in, kh, kw]; `up` as [out, rank].
    public init(down: Tensor, up: Tensor, scale: Float) {
        precondition(up.rank == 2 && up.shape[1] == down.shape[0], "low-rank update: up \(up.shape) does not follow down \(down.shape)")
        self.down = down
        self.up = Autograd.noGrad { up.scaled(scale) }
    }

    public var rank: Int { down.shape[0] }

    /// The correction for a linear layer's input x: [..., in] → [..., out].
    func linear(_ x: Tensor) -> Tensor {
        F.linear(F.linear(x, weight: down), weight: up)
    }

    /// The correction for a convolution's NHWC input.
    func conv(_ x: Tensor, stride: Int, padding: Int) -> Tensor {
        F.linear(F.conv2d(x, weight: down, stride: stride, padding: padding), weight: up)
    }
}

extension Linear {
    /// The layer's output plus every attached low-rank update.
    func addingLowRank(_ y: Tensor, input x: Tensor) -> Tensor {
        lowRankUpdates.reduce(y) { $0 + $1.linear(x) }
    }
}

extension Conv2d {
    /// The layer's output plus every attached low-rank update.
    public func addingLowRank(_ y: Tensor, input x: Tensor) -> Tensor {
        lowRankUpdates.reduce(y) { $0 + $1.conv(x, stride: stride, padding: padding) }
    }
}
