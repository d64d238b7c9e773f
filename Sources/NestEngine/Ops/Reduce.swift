/// Sums, means and the MSE loss.

extension Tensor {
    /// Sum of all elements (accumulated in double precision).
    public func sum() -> Tensor {
        let n = count, src = UnsafePointer(data)
        var partials = [Double](repeating: 0, count: max(1, Threads.count))
        partials.withUnsafeMutableBufferPointer { parts in
            let p = parts.baseAddress!
            _ = parallelWorkers(n, grain: 1 << 16) { w, r in
                // Float lanes over blocks of 4096, folded into a double per block.
                var acc: Double = 0
                var i = r.lowerBound
                while i + 16 <= r.upperBound {
                    var v = Vec16(repeating: 0)
                    let end = min(r.upperBound, i + 4096)
                    while i + 16 <= end { v += load16(src + i); i += 16 }
                    var lanes: Double = 0
                    for lane in 0..<16 { lanes += Double(v[lane]) }
                    acc += lanes
                }
                while i < r.upperBound { acc += Double(src[i]); i += 1 }
                p[w] = acc
            }
        }
        let shape = self.shape
        return Tensor(scalar: Float(partials.reduce(0, +))).recorded("sum", [self]) { g in
            [Tensor(repeating: g.item, shape: shape)]
        }
    }

    public func mean() -> Tensor { sum().scaled(1 / Float(Swift.max(count, 1))) }

    /// Sum over `axes`, optionally keeping them as size-1 dims.
    public func sum(axes: [Int], keepDims: Bool = false) -> Tensor {
        let axs = Set(axes.map { normalizeAxis($0, rank: rank) })
        let kept = shape.enumerated().map { axs.contains($0.offset) ? 1 : $0.element }
        let reduced = Autograd.noGrad { sumToShape(kept) }
        let final = keepDims ? kept : shape.enumerated().filter { !axs.contains($0.offset) }.map(\.element)
        let inputShape = shape
        return Tensor(storage: reduced.storage, shape: final).recorded("sum_axes", [self]) { g in
            // Broadcast the gradient back over the reduced axes.
            [Tensor(zeros: inputShape) + g.reshaped(kept)]
        }
    }

    public func mean(axes: [Int], keepDims: Bool = false) -> Tensor {
        let n = Set(axes.map { normalizeAxis($0, rank: rank) }).reduce(1) { $0 * shape[$1] }
        return sum(axes: axes, keepDims: keepDims).scaled(1 / Float(n))
    }
}

extension F {
    /// mean((a - b)²)
    /// Σ w·(a − b)² / Σ w for constant weights `w` (same shape): a squared
    /// error where some elements count more, on the same scale as `mseLoss`
    /// (equal to it when every weight is equal).
    public static func weightedMSELoss(_ a: Tensor, _ b: Tensor, weights w: Tensor) -> Tensor {
        precondition(a.shape == b.shape && a.shape == w.shape, "weightedMSELoss: shapes \(a.shape), \(b.shape), \(w.shape) differ")
        let diff = Autograd.noGrad { a - b }
        var total: Double = 0, weight: Double = 0
        for i in 0..<diff.count {
            let d = Double(diff.data[i]), wi = Double(w.data[i])
            total += wi * d * d; weight += wi
        }
        let norm = Float(1 / Swift.max(weight, 1e-12))
        return Tensor(scalar: Float(total) * norm).recorded("weighted_mse", [a, b]) { g in
            let ga = Tensor(uninitialized: diff.shape)
            let k = 2 * g.item * norm
            for i in 0..<diff.count { ga.data[i] = k * w.data[i] * diff.data[i] }
            return [a.needsGrad ? ga : nil, b.needsGrad ? ga.scaled(-1) : nil]
        }
    }

    public static func mseLoss(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.shape == b.shape, "mseLoss: shapes \(a.shape) and \(b.shape) differ")
        let diff = Autograd.noGrad { a - b }
        let n = Float(a.count)
        var total: Double = 0
        for i in 0..<diff.count { let d = Double(diff.data[i]); total += d * d }
        return Tensor(scalar: Float(total / Double(max(a.count, 1)))).recorded("mse", [a, b]) { g in
            let ga = diff.scaled(2 * g.item / n)
            return [a.needsGrad ? ga : nil, b.needsGrad ? ga.scaled(-1) : nil]
        }
    }
}
