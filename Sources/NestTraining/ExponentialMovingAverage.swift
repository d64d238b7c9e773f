import NestEngine

/// An exponential moving average of trained weights: after every optimizer
/// update each shadow moves to decay × shadow + (1 − decay) × weight. The
/// average of the last few thousand steps samples better than the last step's
/// weights, whose noise from the final updates it smooths out.
///
/// With `warmup` the decay of the n-th update is min(decay, (1 + n) / (10 + n)),
/// as diffusers' EMAModel does by default: the first updates move the shadow
/// most of the way, so it does not keep the random initial weights for
/// thousands of steps. The count of updates is the optimizer's step, so a
/// checkpoint needs nothing but the shadows to continue exactly.
public final class ExponentialMovingAverage {
    public let decay: Float
    public let warmup: Bool
    /// The averaged copy of each weight, in the order and with the names of the optimizer's parameters.
    public let shadows: [(path: String, tensor: Tensor)]
    /// Checkpoint names of the shadows: "ema." + the weight's name.
    public static let prefix = "ema."

    public init(_ parameters: [(path: String, tensor: Tensor)], decay: Float, warmup: Bool = false) {
        precondition(decay >= 0 && decay < 1, "EMA decay \(decay) outside [0, 1)")
        self.decay = decay
        self.warmup = warmup
        shadows = parameters.map { (Self.prefix + $0.path, $0.tensor.copy()) }
    }

    /// The decay of update number `update` (1 for the first).
    public func decay(atUpdate update: Int) -> Float {
        guard warmup else { return decay }
        let n = Float(max(update, 1))
        return min(decay, (1 + n) / (10 + n))
    }

    /// Moves every shadow toward its weight; `update` counts the optimizer's updates so far, this one included.
    public func update(toward parameters: [Tensor], update: Int) {
        precondition(parameters.count == shadows.count, "EMA: \(parameters.count) weights for \(shadows.count) shadows")
        let d = decay(atUpdate: update), keep = 1 - d
        for (shadow, p) in zip(shadows.map(\.tensor), parameters) {
            let s = shadow.data, w = p.data
            for i in 0..<p.count { s[i] = d * s[i] + keep * w[i] }
        }
    }

    /// Runs `body` with the averaged values in `parameters` (the same list
    /// the average was made from), then puts the trained values back.
    public func withAveragedWeights<T>(in parameters: [Tensor], _ body: () throws -> T) rethrows -> T {
        precondition(parameters.count == shadows.count, "EMA: \(parameters.count) weights for \(shadows.count) shadows")
        let trained = parameters.map { $0.copy() }
        for (p, shadow) in zip(parameters, shadows) { p.assign(shadow.tensor) }
        defer { for (p, value) in zip(parameters, trained) { p.assign(value) } }
        return try body()
    }
}
