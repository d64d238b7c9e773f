import Foundation
import NestEngine
import NestIO

/// A small end-to-end run of the engine: a convolutional network with group
/// norm, SiLU and self-attention learns to paint a procedurally drawn critter
/// from pixel coordinates, trained by AdamW (`nest demo`).
public final class PainterDemo {
    public let steps: Int
    public let size: Int
    let target: Tensor
    let inputs: Tensor
    let model: Painter
    let optimizer: AdamW
    let schedule: LearningRateSchedule

    /// The critter at `size`×`size` and an untrained network seeded by `seed`.
    public init(steps: Int, size: Int, seed: UInt64) {
        self.steps = steps
        self.size = size
        target = renderCritter(size: size)
        inputs = coordinateFeatures(size: size)
        model = Painter(width: 32, seed: seed)
        model.unfreeze()
        optimizer = AdamW(parameters: model.trainableParameters, config: .init(learningRate: 3e-3, weightDecay: 1e-4))
        schedule = LearningRateSchedule(base: 3e-3, warmupSteps: steps / 10, totalSteps: steps, decay: .cosine, minimum: 1e-4)
    }

    /// The network's trainable parameters.
    public var parameterCount: Int { model.parameterCount }

    /// Trains every step, calling `report(step, loss)` after each; returns the last loss.
    public func train(report: (Int, Float) -> Void) -> Float {
        var loss: Float = 0
        for step in 0..<steps {
            optimizer.zeroGrad()
            let l = F.mseLoss(model(inputs), target)
            l.backward()
            clipGradNorm(model.trainableParameters.map(\.tensor), maxNorm: 1)
            optimizer.update(learningRate: schedule.rate(at: step))
            loss = l.item
            report(step, loss)
        }
        return loss
    }

    /// The target and the network's output side by side, zoomed to at least 128 pixels each.
    public func picture() throws -> RGBImage {
        let prediction = Autograd.noGrad { model(inputs) }
        return try sideBySide([target, prediction], size: size, zoom: max(1, 128 / size))
    }
}

/// Conv → GroupNorm → SiLU → self-attention → strided conv → upsample → conv.
final class Painter: Module {
    let conv_in: Conv2d, norm1: GroupNorm, norm2: LayerNorm
    let to_qkv: Linear, to_out: Linear
    let down: Conv2d, conv_out: Conv2d
    let heads = 4

    init(width: Int, seed: UInt64) {
        conv_in = Conv2d(8, width, kernelSize: 3, padding: 1, seed: seed &+ 1)
        norm1 = GroupNorm(groups: 8, channels: width)
        norm2 = LayerNorm(width)
        to_qkv = Linear(width, 3 * width, seed: seed &+ 2)
        to_out = Linear(width, width, seed: seed &+ 3)
        down = Conv2d(width, width, kernelSize: 3, stride: 2, padding: 1, seed: seed &+ 4)
        conv_out = Conv2d(width, 3, kernelSize: 3, padding: 1, seed: seed &+ 5)
        super.init()
        child("conv_in", conv_in); child("norm1", norm1); child("norm2", norm2)
        child("to_qkv", to_qkv); child("to_out", to_out); child("down", down); child("conv_out", conv_out)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = F.silu(norm1(conv_in(x)))
        let (n, hh, ww, c) = (h.shape[0], h.shape[1], h.shape[2], h.shape[3])
        let tokens = h.reshaped([n, hh * ww, c])
        let qkv = to_qkv(norm2(tokens)).chunked(3, axis: -1)
        let attended = to_out(F.attention(query: qkv[0], key: qkv[1], value: qkv[2], heads: heads))
        h = (tokens + attended).reshaped([n, hh, ww, c])
        h = h + F.upsampleNearest2x(F.silu(down(h)))
        return conv_out(h)
    }
}

/// Pixel coordinates and a few Fourier features, [1, size, size, 8].
func coordinateFeatures(size: Int) -> Tensor {
    let t = Tensor(uninitialized: [1, size, size, 8])
    for y in 0..<size {
        for x in 0..<size {
            let u = Float(x) / Float(size - 1) * 2 - 1, v = Float(y) / Float(size - 1) * 2 - 1
            let f: [Float] = [u, v, sin(3 * u), cos(3 * u), sin(3 * v), cos(3 * v), sin(7 * (u + v)), cos(7 * (u - v))]
            for k in 0..<8 { t.data[(y * size + x) * 8 + k] = f[k] }
        }
    }
    return t
}

/// An anti-aliased critter (body, belly, eyes) on a gradient, values in [-1, 1], [1, size, size, 3].
func renderCritter(size: Int) -> Tensor {
    let t = Tensor(uninitialized: [1, size, size, 3])
    func coverage(_ distance: Float) -> Float { max(0, min(1, 0.5 - distance * Float(size) / 2)) }
    for y in 0..<size {
        for x in 0..<size {
            let u = (Float(x) + 0.5) / Float(size) * 2 - 1, v = (Float(y) + 0.5) / Float(size) * 2 - 1
            var color: (Float, Float, Float) = (0.55 + 0.3 * v, 0.75 + 0.1 * v, 0.95)
            func paint(_ c: (Float, Float, Float), _ a: Float) {
                color = (color.0 + (c.0 - color.0) * a, color.1 + (c.1 - color.1) * a, color.2 + (c.2 - color.2) * a)
            }
            let body = ((u / 0.62) * (u / 0.62) + ((v - 0.1) / 0.5) * ((v - 0.1) / 0.5)).squareRoot() - 1
            paint((0.95, 0.45, 0.2), coverage(body * 0.5))
            let belly = ((u / 0.35) * (u / 0.35) + ((v - 0.3) / 0.25) * ((v - 0.3) / 0.25)).squareRoot() - 1
            paint((1.0, 0.85, 0.6), coverage(belly * 0.25))
            for ex: Float in [-0.22, 0.22] {
                let eye = ((u - ex) * (u - ex) + (v + 0.1) * (v + 0.1)).squareRoot() - 0.12
                paint((1, 1, 1), coverage(eye))
                let pupil = ((u - ex * 1.1) * (u - ex * 1.1) + (v + 0.08) * (v + 0.08)).squareRoot() - 0.055
                paint((0.1, 0.1, 0.15), coverage(pupil))
            }
            let i = (y * size + x) * 3
            t.data[i] = color.0 * 2 - 1; t.data[i + 1] = color.1 * 2 - 1; t.data[i + 2] = color.2 * 2 - 1
        }
    }
    return t
}

/// Images in [-1, 1] placed left to right, each zoomed by pixel repetition.
func sideBySide(_ images: [Tensor], size: Int, zoom: Int) throws -> RGBImage {
    let side = size * zoom, width = side * images.count
    var pixels = [Float](repeating: 0, count: width * side * 3)
    for (k, img) in images.enumerated() {
        for y in 0..<side {
            for x in 0..<side {
                let src = ((y / zoom) * size + x / zoom) * 3
                let dst = (y * width + k * side + x) * 3
                for c in 0..<3 { pixels[dst + c] = img.data[src + c] }
            }
        }
    }
    return try RGBImage(width: width, height: side, floats: pixels, range: -1...1)
}
