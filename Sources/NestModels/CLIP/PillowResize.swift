import Foundation

/// Resizes 8-bit RGB exactly as Pillow's `Image.resize` does (bilinear,
/// bicubic and Lanczos), because transformers' CLIP image processor and diffusers'
/// VAE image processor (Lanczos, for image-to-image) resize through Pillow
/// when torchvision is absent (its PIL backend) and the image encoder then sees
/// Pillow's rounding. Matching it byte for byte makes preprocessing an exact
/// function of the input rather than an approximation to tolerate.
///
/// Pillow's method: a separable convolution, horizontal pass first, each pass
/// rounding to 8 bits. Each output sample's weights are the filter evaluated at
/// the input pixel centres around it, widened by the scale factor when shrinking
/// (so downscaling averages rather than aliases), normalized to sum to one and
/// then quantized to fixed point with 22 fractional bits.
public enum PillowFilter: Int, Sendable {
    case lanczos = 1
    case bilinear = 2
    case bicubic = 3

    /// Half-width of the kernel at scale 1, in input pixels.
    var support: Double {
        switch self {
        case .bilinear: 1
        case .bicubic: 2
        case .lanczos: 3
        }
    }

    func weight(_ t: Double) -> Double {
        let x = abs(t)
        switch self {
        case .bilinear:
            return x < 1 ? 1 - x : 0
        case .bicubic:
            // Keys' cubic convolution with a = -0.5.
            let a = -0.5
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        case .lanczos:
            // sinc(x)·sinc(x/3) on [-3, 3), Pillow's truncation.
            return t >= -3 && t < 3 ? Self.sinc(t) * Self.sinc(t / 3) : 0
        }
    }

    private static func sinc(_ x: Double) -> Double {
        if x == 0 { return 1 }
        let scaled = x * Double.pi
        return sin(scaled) / scaled
    }

    /// Pillow's `resample` codes (PIL.Image.Resampling); the others are refused by name.
    init(code: Int) throws {
        let names = [0: "NEAREST", 4: "BOX", 5: "HAMMING"]
        guard let filter = PillowFilter(rawValue: code) else {
            throw ModelConfigError("resample \(code) (\(names[code] ?? "unknown")) is not supported; use 1 (LANCZOS), 2 (BILINEAR) or 3 (BICUBIC)")
        }
        self = filter
    }
}

/// Fixed-point weights for one axis: for each output sample, the first input
/// index and its weights.
struct ResampleKernel {
    static let precisionBits = 22
    var starts: [Int] = []
    var weights: [[Int32]] = []

    init(inSize: Int, outSize: Int, filter: PillowFilter) {
        let scale = Double(inSize) / Double(outSize)
        let widen = max(scale, 1)
        let support = filter.support * widen
        let inverseWiden = 1 / widen  // multiplied, not divided: Pillow's rounding
        for o in 0..<outSize {
            let center = (Double(o) + 0.5) * scale
            // Int() truncates toward zero, as the C casts do.
            let first = max(Int(center - support + 0.5), 0)
            let end = min(Int(center + support + 0.5), inSize)
            var taps = (first..<end).map { filter.weight((Double($0) - center + 0.5) * inverseWiden) }
            let total = taps.reduce(0, +)
            if total != 0 { taps = taps.map { $0 / total } }
            let one = Double(1 << Self.precisionBits)
            starts.append(first)
            weights.append(taps.map { Int32($0 < 0 ? $0 * one - 0.5 : $0 * one + 0.5) })
        }
    }
}

/// Rounds a fixed-point accumulator (which started at one half) to a byte, clamping.
@inline(__always) private func clampToByte(_ sum: Int) -> UInt8 {
    let v = sum >> ResampleKernel.precisionBits  // arithmetic shift: floor
    return UInt8(min(max(v, 0), 255))
}

/// One separable pass over interleaved RGB: along rows (`horizontal`) or columns.
private func resamplePass(_ src: [UInt8], width: Int, height: Int, kernel: ResampleKernel,
                          horizontal: Bool) -> [UInt8] {
    let outW = horizontal ? kernel.starts.count : width
    let outH = horizontal ? height : kernel.starts.count
    var out = [UInt8](repeating: 0, count: outW * outH * 3)
    let half = 1 << (ResampleKernel.precisionBits - 1)
    for y in 0..<outH {
        for x in 0..<outW {
            let o = horizontal ? x : y
            let start = kernel.starts[o], taps = kernel.weights[o]
            var sums = (half, half, half)
            for (t, w) in taps.enumerated() {
                let p = (horizontal ? y * width + start + t : (start + t) * width + x) * 3
                let wi = Int(w)
                sums.0 += Int(src[p]) * wi
                sums.1 += Int(src[p + 1]) * wi
                sums.2 += Int(src[p + 2]) * wi
            }
            let q = (y * outW + x) * 3
            out[q] = clampToByte(sums.0)
            out[q + 1] = clampToByte(sums.1)
            out[q + 2] = clampToByte(sums.2)
        }
    }
    return out
}

/// Resizes interleaved 8-bit RGB (`width × height`) to `outWidth × outHeight` as Pillow does.
public func pillowResize(_ pixels: [UInt8], width: Int, height: Int, outWidth: Int, outHeight: Int,
                         filter: PillowFilter) -> [UInt8] {
    precondition(pixels.count == width * height * 3, "pillowResize: \(pixels.count) bytes for \(width)×\(height) RGB")
    precondition(outWidth > 0 && outHeight > 0, "pillowResize: empty output size \(outWidth)×\(outHeight)")
    var image = pixels, w = width
    if outWidth != width {
        image = resamplePass(image, width: w, height: height,
                             kernel: ResampleKernel(inSize: width, outSize: outWidth, filter: filter), horizontal: true)
        w = outWidth
    }
    if outHeight != height {
        image = resamplePass(image, width: w, height: height,
                             kernel: ResampleKernel(inSize: height, outSize: outHeight, filter: filter), horizontal: false)
    }
    return image
}
