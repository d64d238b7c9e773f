import CKernels

/// AdamW (Loshchilov & Hutter): Adam with weight decay applied directly to
/// the weights rather than through the gradient, as `torch.optim.AdamW` does.
public final class AdamW {
    public struct Config: Sendable, Codable {
        public var learningRate: Float = 1e-4
        public var beta1: Float = 0.9
        public var beta2: Float = 0.999
        public var eps: Float = 1e-8
        public var weightDecay: Float = 1e-2
        public init(learningRate: Float = 1e-4, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 1e-2) {
            self.learningRate = learningRate; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
        }
    }

    public let parameters: [(path: String, tensor: Tensor)]
    public var config: Config
    /// Steps taken so far (bias correction depends on it; saved in checkpoints).
    public var step: Int = 0
    /// First and second moment estimates, one pair per parameter.
    public private(set) var firstMoments: [Tensor]
    public private(set) var secondMoments: [Tensor]
    /// Per parameter, the fraction of the learning rate it moves at (and
    /// decays with): parameter groups, as a pretrained model fine-tuned
    /// beside a new module takes a smaller rate than the module.
    public let rateScales: [Float]

    public init(parameters: [(path: String, tensor: Tensor)], config: Config = Config(), rateScales: [Float]? = nil) {
        precondition(rateScales.map { $0.count == parameters.count } ?? true, "one rate scale per parameter")
        self.parameters = parameters
        self.config = config
        self.rateScales = rateScales ?? Array(repeating: 1, count: parameters.count)
        firstMoments = parameters.map { Tensor(zeros: $0.tensor.shape) }
        secondMoments = parameters.map { Tensor(zeros: $0.tensor.shape) }
    }

    /// One update with the current gradients; `learningRate` overrides the
    /// configured rate (schedules pass theirs here). Parameters without a
    /// gradient are left alone.
    public func update(learningRate: Float? = nil) {
        step += 1
        let lr = learningRate ?? config.learningRate
        let c = config
        let bc1 = 1 - powf(c.beta1, Float(step)), bc2 = 1 - powf(c.beta2, Float(step))
        for (i, p) in parameters.enumerated() {
            guard let g = p.tensor.grad else { continue }
            let rate = lr * rateScales[i]
            let stepSize = rate / bc1
            let decay = 1 - rate * c.weightDecay
            let w = p.tensor.data, gp = UnsafePointer(g.data)
            let m = firstMoments[i].data, v = secondMoments[i].data
            let sqrtBc2 = bc2.squareRoot()
            let vector = VectorKernels.useAVX512
            parallelRanges(p.tensor.count, grain: 1 << 14) { r in
                if vector {
                    let o = r.lowerBound
                    nest_adamw(w + o, m + o, v + o, gp + o, r.count, c.beta1, c.beta2, decay, stepSize, sqrtBc2, c.eps)
                    return
                }
                for j in r {
                    let gj = gp[j]
                    m[j] = c.beta1 * m[j] + (1 - c.beta1) * gj
                    v[j] = c.beta2 * v[j] + (1 - c.beta2) * gj * gj
                    w[j] = w[j] * decay - stepSize * m[j] / (v[j].squareRoot() / sqrtBc2 + c.eps)
                }
            }
        }
    }

    public func zeroGrad() { for p in parameters { p.tensor.grad = nil } }

    /// Restores moments from a checkpoint (shapes must match).
    public func loadState(step: Int, first: [Tensor], second: [Tensor]) {
        precondition(first.count == parameters.count && second.count == parameters.count, "optimizer state size mismatch")
        self.step = step
        for i in parameters.indices {
            firstMoments[i].assign(first[i])
            secondMoments[i].assign(second[i])
        }
    }
}

/// Scales all gradients so their global L2 norm is at most `maxNorm`
/// (like `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    // The sum of squares in fixed chunks, each summed on its own and then
    // added in order: the same norm whatever the thread count.
    let chunk = 1 << 16
    let grads = parameters.compactMap(\.grad)
    var pieces: [(tensor: Int, range: Range<Int>)] = []
    for (t, g) in grads.enumerated() {
        for start in stride(from: 0, to: g.count, by: chunk) { pieces.append((t, start..<min(g.count, start + chunk))) }
    }
    var sums = [Double](repeating: 0, count: pieces.count)
    let vector = VectorKernels.useAVX512
    sums.withUnsafeMutableBufferPointer { out in
        parallelRanges(pieces.count) { r in
            for i in r {
                let (t, range) = pieces[i]
                let x = UnsafePointer(grads[t].data) + range.lowerBound
                if vector { out[i] = nest_sum_squares(x, range.count); continue }
                var total: Double = 0
                for j in 0..<range.count { let value = Double(x[j]); total += value * value }
                out[i] = total
            }
        }
    }
    let norm = Float(sums.reduce(0, +).squareRoot())
    let coefficient = maxNorm / (norm + 1e-6)
    if coefficient < 1 {
        for g in grads {
            let data = g.data
            parallelRanges(g.count, grain: 1 << 14) { r in for j in r { data[j] *= coefficient } }
        }
    }
    return norm
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
