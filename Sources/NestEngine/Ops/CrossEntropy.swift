#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Log-softmax and cross-entropy, for classification-style losses such as
/// CLIP's contrastive objective. Both are computed in one stable pass
/// (x − max − log Σ exp(x − max)) rather than as log(softmax(x)), which
/// would underflow to −∞ for very negative logits.
extension F {
    /// log(softmax(x)) over the last dimension.
    public static func logSoftmax(_ x: Tensor) -> Tensor {
        let d = x.shape.last ?? 1
        let rows = x.count / max(d, 1)
        let out = Tensor(uninitialized: x.shape)
        let xs = UnsafePointer(x.data), op = out.data
        for i in 0..<rows { logSoftmaxRow(xs + i * d, op + i * d, d) }
        return out.recorded("logSoftmax", [x]) { gy in
            // dx = dy − softmax(x) · Σ dy, with softmax = exp(y).
            let gx = Tensor(uninitialized: x.shape)
            let gyp = UnsafePointer(gy.data), gxp = gx.data, yp = UnsafePointer(out.data)
            for i in 0..<rows {
                let y = yp + i * d, dy = gyp + i * d, dx = gxp + i * d
                var total: Float = 0
                for j in 0..<d { total += dy[j] }
                for j in 0..<d { dx[j] = dy[j] - expf(y[j]) * total }
            }
            return [gx]
        }
    }

    /// Mean negative log-likelihood of `targets` (one class index per row)
    /// under softmax(`logits`) for logits [N, C]: PyTorch's
    /// `F.cross_entropy(logits, targets)` with the default mean reduction.
    public static func crossEntropy(_ logits: Tensor, targets: [Int]) -> Tensor {
        precondition(logits.rank == 2, "crossEntropy expects logits [N, C], got \(logits.shape)")
        let n = logits.shape[0], c = logits.shape[1]
        precondition(targets.count == n, "crossEntropy: \(targets.count) targets for \(n) rows")
        precondition(targets.allSatisfy { (0..<c).contains($0) }, "crossEntropy: a target is outside 0..<\(c)")
        let logProbs = Tensor(uninitialized: logits.shape)
        let xs = UnsafePointer(logits.data)
        var total: Double = 0
        for i in 0..<n {
            logSoftmaxRow(xs + i * c, logProbs.data + i * c, c)
            total -= Double(logProbs.data[i * c + targets[i]])
        }
        let out = Tensor([Float(total / Double(max(n, 1)))], shape: [])
        return out.recorded("crossEntropy", [logits]) { gy in
            // d/dlogits = (softmax − onehot(target)) · g / N
            let scale = gy.data[0] / Float(max(n, 1))
            let gx = Tensor(uninitialized: logits.shape)
            for i in 0..<n {
                for j in 0..<c { gx.data[i * c + j] = expf(logProbs.data[i * c + j]) * scale }
                gx.data[i * c + targets[i]] -= scale
            }
            return [gx]
        }
    }
}

/// o = x − max − log Σ exp(x − max) for one row.
@inline(__always)
func logSoftmaxRow(_ x: UnsafePointer<Float>, _ o: UnsafeMutablePointer<Float>, _ n: Int) {
    var m = -Float.infinity
    for j in 0..<n { m = max(m, x[j]) }
    var s: Double = 0
    for j in 0..<n { s += Double(expf(x[j] - m)) }
    let shift = m + Float(log(s))
    for j in 0..<n { o[j] = x[j] - shift }
}
