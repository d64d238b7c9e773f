import NestEngine
import NestIO

/// Image augmentation, deterministic for a seed: the same (seed, sample,
/// epoch) always gives the same crop, flip and colour change.
public struct Augmentation: Codable, Sendable, Equatable {
    /// Fraction of the image area a random crop keeps (1...1 disables cropping).
    public var cropScale: ClosedRange<Float>
    /// Aspect-ratio range of the crop (width / height).
    public var cropRatio: ClosedRange<Float>
    public var flip: Bool
    /// Maximum relative change of brightness, contrast and saturation.
    public var colorJitter: Float

    public init(cropScale: ClosedRange<Float> = 0.6...1, cropRatio: ClosedRange<Float> = 0.8...1.25,
                flip: Bool = true, colorJitter: Float = 0.1) {
        self.cropScale = cropScale; self.cropRatio = cropRatio; self.flip = flip; self.colorJitter = colorJitter
    }

    /// Only a horizontal flip (what targets get: their layout is in the caption).
    public static let flipOnly = Augmentation(cropScale: 1...1, cropRatio: 1...1, flip: true, colorJitter: 0)
    public static let none = Augmentation(cropScale: 1...1, cropRatio: 1...1, flip: false, colorJitter: 0)

    /// The augmented image as NHWC [1, size, size, 3] in `range`.
    public func apply(_ image: RGBImage, size: Int, seed: UInt64, range: ClosedRange<Float> = -1...1) -> Tensor {
        var rng = SeededRandom(seed: seed)
        let (w, h) = (Float(image.width), Float(image.height))
        // Random resized crop (falls back to the largest centred square-ish crop).
        var crop = (x: Float(0), y: Float(0), w: w, h: h)
        if cropScale.lowerBound < 1 || cropRatio.lowerBound != cropRatio.upperBound {
            for _ in 0..<10 {
                let area = w * h * (cropScale.lowerBound + (cropScale.upperBound - cropScale.lowerBound) * rng.nextFloat())
                let logRatio = log(cropRatio.lowerBound) + (log(cropRatio.upperBound) - log(cropRatio.lowerBound)) * rng.nextFloat()
                let ratio = exp(logRatio)
                let cw = (area * ratio).squareRoot(), ch = (area / ratio).squareRoot()
                if cw <= w && ch <= h {
                    crop = ((w - cw) * rng.nextFloat(), (h - ch) * rng.nextFloat(), cw, ch)
                    break
                }
            }
        }
        let flipped = flip && rng.nextFloat() < 0.5
        let brightness = 1 + colorJitter * (2 * rng.nextFloat() - 1)
        let contrast = 1 + colorJitter * (2 * rng.nextFloat() - 1)
        let saturation = 1 + colorJitter * (2 * rng.nextFloat() - 1)

        let out = Tensor(uninitialized: [1, size, size, 3])
        var mean: Float = 0
        for y in 0..<size {
            for x in 0..<size {
                // Bilinear sample at the centre of the output pixel, in source coordinates.
                let fx = (Float(flipped ? size - 1 - x : x) + 0.5) / Float(size)
                let sx = crop.x + fx * crop.w - 0.5, sy = crop.y + (Float(y) + 0.5) / Float(size) * crop.h - 0.5
                let rgb = bilinear(image, sx, sy)
                let gray = 0.299 * rgb.0 + 0.587 * rgb.1 + 0.114 * rgb.2
                let i = (y * size + x) * 3
                out.data[i] = (gray + (rgb.0 - gray) * saturation) * brightness
                out.data[i + 1] = (gray + (rgb.1 - gray) * saturation) * brightness
                out.data[i + 2] = (gray + (rgb.2 - gray) * saturation) * brightness
                mean += out.data[i] + out.data[i + 1] + out.data[i + 2]
            }
        }
        mean /= Float(size * size * 3)
        for i in 0..<out.count {
            let v = min(1, max(0, mean + (out.data[i] - mean) * contrast))
            out.data[i] = range.lowerBound + v * (range.upperBound - range.lowerBound)
        }
        return out
    }

    private func bilinear(_ image: RGBImage, _ x: Float, _ y: Float) -> (Float, Float, Float) {
        let x0 = Int(x.rounded(.down)), y0 = Int(y.rounded(.down))
        let ax = x - Float(x0), ay = y - Float(y0)
        func pixel(_ px: Int, _ py: Int) -> (Float, Float, Float) {
            let cx = min(image.width - 1, max(0, px)), cy = min(image.height - 1, max(0, py))
            let i = (cy * image.width + cx) * 3
            return (Float(image.pixels[i]) / 255, Float(image.pixels[i + 1]) / 255, Float(image.pixels[i + 2]) / 255)
        }
        let p00 = pixel(x0, y0), p10 = pixel(x0 + 1, y0), p01 = pixel(x0, y0 + 1), p11 = pixel(x0 + 1, y0 + 1)
        func mix(_ a: Float, _ b: Float, _ c: Float, _ d: Float) -> Float {
            (a * (1 - ax) + b * ax) * (1 - ay) + (c * (1 - ax) + d * ax) * ay
        }
        return (mix(p00.0, p10.0, p01.0, p11.0), mix(p00.1, p10.1, p01.1, p11.1), mix(p00.2, p10.2, p01.2, p11.2))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
