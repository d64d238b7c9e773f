import NestEngine
import Testing

/// Compares autograd gradients with central finite differences of
/// L = Σ f(inputs) ⊙ R for a fixed random R.
///
/// Float32 differences are noisy, so the check uses a moderate step and
/// compares against the scale of the gradient; a wrong backward is off by
/// far more than this tolerance.
func checkGradients(_ name: String, inputs: [Tensor], eps: Float = 1e-2, tolerance: Float = 2e-2,
                    samplesPerInput: Int = 24, _ f: ([Tensor]) -> Tensor) {
    for t in inputs { t.requiresGrad = true; t.grad = nil }
    let out = f(inputs)
    let r = Tensor.randn(out.shape, seed: 99)
    let loss = (out * r).sum()
    loss.backward()

    func lossValue() -> Double {
        Autograd.noGrad {
            let y = f(inputs)
            var s: Double = 0
            for i in 0..<y.count { s += Double(y.data[i]) * Double(r.data[i]) }
            return s
        }
    }

    for (index, t) in inputs.enumerated() {
        guard let grad = t.grad else {
            Issue.record("\(name): input \(index) got no gradient")
            continue
        }
        #expect(grad.shape == t.shape, "\(name): gradient shape \(grad.shape) for input \(t.shape)")
        var maxAbs: Float = 1e-3
        for i in 0..<grad.count { maxAbs = max(maxAbs, abs(grad.data[i])) }
        var rng = SeededRandom(seed: UInt64(index) &+ 7)
        let picks = t.count <= samplesPerInput ? Array(0..<t.count) : (0..<samplesPerInput).map { _ in rng.nextInt(below: t.count) }
        var worst: Float = 0
        for i in picks {
            let saved = t.data[i]
            t.data[i] = saved + eps
            let plus = lossValue()
            t.data[i] = saved - eps
            let minus = lossValue()
            t.data[i] = saved
            let numeric = Float((plus - minus) / Double(2 * eps))
            worst = max(worst, abs(numeric - grad.data[i]) / maxAbs)
        }
        #expect(worst < tolerance, "\(name): input \(index) gradient differs from finite differences by \(worst) (relative to max |g| = \(maxAbs))")
    }
}
