import NestEngine

/// diffusers' Downsample2D with a convolution: 3×3, stride 2. With
/// `padding: 0` (the VAE encoder) the input is first padded by one pixel on
/// the bottom and right only, as diffusers does.
public final class Downsample2D: Module {
    public let conv: Conv2d
    public let padding: Int

    public init(channels: Int, outChannels: Int? = nil, padding: Int = 1) {
        conv = Conv2d(channels, outChannels ?? channels, kernelSize: 3, stride: 2, padding: padding)
        self.padding = padding
        super.init()
        child("conv", conv)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        if padding == 0 {
            return F.conv2d(x, weight: conv.computeWeight, bias: conv.bias, stride: 2, padding: (top: 0, left: 0, bottom: 1, right: 1))
        }
        return conv(x)
    }
}

/// diffusers' Upsample2D with a convolution: nearest ×2, then 3×3.
public final class Upsample2D: Module {
    public let conv: Conv2d

    public init(channels: Int, outChannels: Int? = nil) {
        conv = Conv2d(channels, outChannels ?? channels, kernelSize: 3, padding: 1)
        super.init()
        child("conv", conv)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { conv(F.upsampleNearest2x(x)) }
}
