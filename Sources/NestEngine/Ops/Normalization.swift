import CKernels
/// Group norm (channels-last), layer norm (last dim) and softmax (last dim).

extension F {
    /// Group normalization of x: [N, ..., C] (channels last) over `groups`
    /// groups of channels; statistics per sample and group over all positions.
    public static func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
        groupNorm(x, groups: groups, weight: weight, bias: bias, eps: eps, thenSiLU: false)
    }

    /// silu(groupNorm(x)), the opening of every ResNet block: when no
    /// gradient is recorded, one pass writes the activated output directly.
    public static func groupNormSiLU(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
        let recording = Autograd.isEnabled && (x.needsGrad || weight?.needsGrad == true || bias?.needsGrad == true)
        if recording { return silu(groupNorm(x, groups: groups, weight: weight, bias: bias, eps: eps)) }
        return groupNorm(x, groups: groups, weight: weight, bias: bias, eps: eps, thenSiLU: true)
    }

    static func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float, thenSiLU: Bool) -> Tensor {
        precondition(x.rank >= 2, "groupNorm needs [N, ..., C], got \(x.shape)")
        let n = x.shape[0], c = x.shape[x.rank - 1]
        precondition(c % groups == 0, "groupNorm: \(c) channels not divisible by \(groups) groups")
        let p = x.count / max(n * c, 1), cg = c / groups
        let (mean, rstd) = groupStatistics(x, groups: groups, eps: eps)
        let mp = mean.data, rp = rstd.data
        let xs = UnsafePointer(x.data)
        // y = x·scale + shift with per-(sample, channel) scale and shift.
        let scale = Tensor(uninitialized: [n, c]), shift = Tensor(uninitialized: [n, c])
        for img in 0..<n {
            for ch in 0..<c {
                let t = img * groups + ch / cg
                let gamma = weight?.data[ch] ?? 1, beta = bias?.data[ch] ?? 0
                scale.data[img * c + ch] = rp[t] * gamma
                shift.data[img * c + ch] = beta - mp[t] * rp[t] * gamma
            }
        }
        let out = Tensor(uninitialized: x.shape)
        let op = out.data, sp = UnsafePointer(scale.data), hp = UnsafePointer(shift.data)
        let fused = thenSiLU ? VectorKernels.pick(nest_affine_silu, nest_affine_silu_avx2) : nil
        parallelRanges(n * p, grain: max(1, 8192 / c)) { rows in
            for r in rows {
                let img = r / p
                if let fused {
                    fused(xs + r * c, sp + img * c, hp + img * c, op + r * c, c)
                    continue
                }
                affineRow(xs + r * c, sp + img * c, hp + img * c, op + r * c, c)
                if thenSiLU { mapVec16(UnsafePointer(op + r * c), op + r * c, c) { $0 * vsigmoid($0) } }
            }
        }
        if thenSiLU { return out }
        var inputs = [x]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        return out.recorded("group_norm", inputs) { gy in
            let (gx, gGamma, gBeta) = groupNormBackward(gy, x: x, mean: mean, rstd: rstd, weight: weight, groups: groups)
            var grads: [Tensor?] = [x.needsGrad ? gx : nil]
            if let weight { grads.append(weight.needsGrad ? gGamma.sumToShape([c]).reshaped(weight.shape) : nil) }
            if let bias { grads.append(bias.needsGrad ? gBeta.sumToShape([c]).reshaped(bias.shape) : nil) }
            return grads
        }
    }

    /// Layer normalization over the last dimension.
    public static func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
        let d = x.shape.last ?? 1
        let rows = x.count / max(d, 1)
        let mean = Tensor(uninitialized: [rows]), rstd = Tensor(uninitialized: [rows])
        let out = Tensor(uninitialized: x.shape)
        let xs = UnsafePointer(x.data), op = out.data, mp = mean.data, rp = rstd.data
        let ones = Tensor(ones: [d]), zeros = Tensor(zeros: [d])
        let gp = UnsafePointer((weight ?? ones).data), bp = UnsafePointer((bias ?? zeros).data)
        parallelRanges(rows, grain: max(1, 4096 / d)) { r in
            for i in r {
                let row = xs + i * d
                var s: Float = 0
                for j in 0..<d { s += row[j] }
                let m = s / Float(d)
                var v: Float = 0
                for j in 0..<d { let t = row[j] - m; v += t * t }
                let rs = 1 / (v / Float(d) + eps).squareRoot()
                mp[i] = m; rp[i] = rs
                let o = op + i * d
                for j in 0..<d { o[j] = (row[j] - m) * rs * gp[j] + bp[j] }
            }
        }
        var inputs = [x]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        return out.recorded("layer_norm", inputs) { gy in
            // Re-derive pointers here so the closure keeps its tensors alive.
            let xs = UnsafePointer(x.data), mp = UnsafePointer(mean.data), rp = UnsafePointer(rstd.data)
            let gp = UnsafePointer((weight ?? ones).data)
            let gx = Tensor(uninitialized: x.shape)
            let workers = workerCount(rows, grain: max(1, 4096 / d))
            let partG = ScratchBuffers(count: workers, floats: d, zeroed: true)
            let partB = ScratchBuffers(count: workers, floats: d, zeroed: true)
            let gyp = UnsafePointer(gy.data), gxp = gx.data
            _ = parallelWorkers(rows, grain: max(1, 4096 / d)) { w, r in
                let pg = partG[w], pb = partB[w]
                for i in r {
                    let row = xs + i * d, dyr = gyp + i * d, dx = gxp + i * d
                    let m = mp[i], rs = rp[i]
                    var a1: Float = 0, a2: Float = 0
                    for j in 0..<d {
                        let xh = (row[j] - m) * rs
                        let dyg = dyr[j] * gp[j]
                        a1 += dyg; a2 += dyg * xh
                        pg[j] += dyr[j] * xh; pb[j] += dyr[j]
                    }
                    let m1 = a1 / Float(d), m2 = a2 / Float(d)
                    for j in 0..<d { let xh = (row[j] - m) * rs; dx[j] = rs * (dyr[j] * gp[j] - m1 - xh * m2) }
                }
            }
            func reduce(_ parts: ScratchBuffers) -> Tensor {
                let t = Tensor(zeros: [d])
                for w in 0..<workers { for j in 0..<d { t.data[j] += parts[w][j] } }
                return t
            }
            var grads: [Tensor?] = [x.needsGrad ? gx : nil]
            if let weight { grads.append(weight.needsGrad ? reduce(partG).reshaped(weight.shape) : nil) }
            if let bias { grads.append(bias.needsGrad ? reduce(partB).reshaped(bias.shape) : nil) }
            return grads
        }
    }

    /// Softmax over the last dimension.
    public static func softmax(_ x: Tensor) -> Tensor {
        let d = x.shape.last ?? 1
        let rows = x.count / max(d, 1)
        let out = Tensor(uninitialized: x.shape)
        let xs = UnsafePointer(x.data), op = out.data
        parallelRanges(rows, grain: max(1, 4096 / d)) { r in
            for i in r { softmaxRow(xs + i * d, op + i * d, d) }
        }
        return out.recorded("softmax", [x]) { gy in
            // dx = y ⊙ (dy - Σ dy·y)
            let gx = Tensor(uninitialized: x.shape)
            let gyp = UnsafePointer(gy.data), gxp = gx.data, yp = UnsafePointer(out.data)
            parallelRanges(rows, grain: max(1, 4096 / d)) { r in
                for i in r {
                    let y = yp + i * d, dy = gyp + i * d, dx = gxp + i * d
                    var dot: Float = 0
                    for j in 0..<d { dot += dy[j] * y[j] }
                    for j in 0..<d { dx[j] = y[j] * (dy[j] - dot) }
                }
            }
            return [gx]
        }
    }
}

/// o = x·scale + shift, elementwise over a row.
@inline(__always)
func affineRow(_ x: UnsafePointer<Float>, _ scale: UnsafePointer<Float>, _ shift: UnsafePointer<Float>,
               _ o: UnsafeMutablePointer<Float>, _ n: Int) {
    var j = 0
    while j + 16 <= n {
        store16(load16(x + j) * load16(scale + j) + load16(shift + j), o + j)
        j += 16
    }
    while j < n { o[j] = x[j] * scale[j] + shift[j]; j += 1 }
}

/// Per (sample, group) mean and 1/sqrt(var + eps) of channels-last x,
/// two passes (mean, then squared deviations) as PyTorch. Each pass runs over
/// chunks of positions in parallel, accumulating per channel across
/// contiguous rows (vectorizes), then sums the chunks per group in Double.
func groupStatistics(_ x: Tensor, groups: Int, eps: Float) -> (mean: Tensor, rstd: Tensor) {
    let n = x.shape[0], c = x.shape[x.rank - 1]
    let p = x.count / max(n * c, 1), cg = c / groups
    let chunkRows = 64
    let chunks = (p + chunkRows - 1) / chunkRows
    let partial = Tensor(uninitialized: [n * chunks, c])
    let xs = UnsafePointer(x.data), pp = partial.data
    let mean = Tensor(uninitialized: [n, groups]), rstd = Tensor(uninitialized: [n, groups])
    let mp = mean.data, rp = rstd.data
    let count = Double(p * cg)
    // Per-channel means of each group, broadcast back to channels for the second pass.
    let channelMean = Tensor(uninitialized: [n, c])
    let cm = channelMean.data
    func pass(_ squared: Bool) {
        parallelRanges(n * chunks) { tasks in
            for t in tasks {
                let img = t / chunks, chunk = t % chunks
                let acc = pp + t * c
                acc.update(repeating: 0, count: c)
                let r0 = chunk * chunkRows, r1 = min(p, r0 + chunkRows)
                let m = UnsafePointer(cm + img * c)
                for r in r0..<r1 {
                    let row = xs + (img * p + r) * c
                    if squared {
                        for j in 0..<c { let d = row[j] - m[j]; acc[j] += d * d }
                    } else {
                        for j in 0..<c { acc[j] += row[j] }
                    }
                }
            }
        }
    }
    func reduce(into out: UnsafeMutablePointer<Float>, _ finish: (Int, Double) -> Float) {
        for img in 0..<n {
            for grp in 0..<groups {
                var s: Double = 0
                for chunk in 0..<chunks {
                    let acc = pp + (img * chunks + chunk) * c + grp * cg
                    for j in 0..<cg { s += Double(acc[j]) }
                }
                out[img * groups + grp] = finish(img * groups + grp, s)
            }
        }
    }
    pass(false)
    reduce(into: mp) { _, s in Float(s / count) }
    for img in 0..<n { for ch in 0..<c { cm[img * c + ch] = mp[img * groups + ch / cg] } }
    pass(true)
    reduce(into: rp) { _, v in Float(1 / (v / count + Double(eps)).squareRoot()) }
    return (mean, rstd)
}

/// Group normalization's gradients: dx, and per sample dγ and dβ ([n, c]).
/// With x̂ = (x − μ)·r and g = dy·γ, per (sample, group)
/// dx = r·(g − mean(g) − x̂·mean(g·x̂)). Both means follow from two
/// per-channel sums, Σdy and Σdy·x̂ (which are also dβ and dγ), so one pass
/// over chunks of positions accumulates them channel-contiguously (it
/// vectorizes, as the statistics do), the chunks are summed in Double, and a
/// second pass writes dx = a·dy − b·(x − μ) − e with per-channel a, b, e.
func groupNormBackward(_ gy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor?, groups: Int)
    -> (gx: Tensor, gGamma: Tensor, gBeta: Tensor) {
    let n = x.shape[0], c = x.shape[x.rank - 1]
    let p = x.count / max(n * c, 1), cg = c / groups
    let count = Double(p * cg)
    // Per channel: the group's mean and 1/std, and γ.
    let perChannel = Tensor(uninitialized: [n, 3, c])
    let pc = perChannel.data
    for img in 0..<n {
        for ch in 0..<c {
            let t = img * groups + ch / cg
            pc[(img * 3) * c + ch] = mean.data[t]
            pc[(img * 3 + 1) * c + ch] = rstd.data[t]
            pc[(img * 3 + 2) * c + ch] = weight?.data[ch] ?? 1
        }
    }
    let chunkRows = 64
    let chunks = (p + chunkRows - 1) / chunkRows
    let partial = Tensor(uninitialized: [n * chunks, 2, c])
    let xs = UnsafePointer(x.data), gys = UnsafePointer(gy.data), pp = partial.data
    parallelRanges(n * chunks) { tasks in
        for t in tasks {
            let img = t / chunks, chunk = t % chunks
            let sdy = pp + t * 2 * c, sdyx = sdy + c
            sdy.update(repeating: 0, count: 2 * c)
            let m = UnsafePointer(pc + img * 3 * c), r = UnsafePointer(pc + (img * 3 + 1) * c)
            for row in (chunk * chunkRows)..<min(p, (chunk + 1) * chunkRows) {
                let xr = xs + (img * p + row) * c, dr = gys + (img * p + row) * c
                for j in 0..<c {
                    let d = dr[j]
                    sdy[j] += d
                    sdyx[j] += d * ((xr[j] - m[j]) * r[j])
                }
            }
        }
    }
    let gGamma = Tensor(uninitialized: [n, c]), gBeta = Tensor(uninitialized: [n, c])
    // Per channel for the second pass: a = r·γ, b = r·mean(g·x̂)·r, e = r·mean(g).
    let coefficients = Tensor(uninitialized: [n, 3, c])
    let cf = coefficients.data
    var sumDy = [Double](repeating: 0, count: c), sumDyX = [Double](repeating: 0, count: c)
    for img in 0..<n {
        for ch in 0..<c { sumDy[ch] = 0; sumDyX[ch] = 0 }
        for chunk in 0..<chunks {
            let sdy = pp + (img * chunks + chunk) * 2 * c, sdyx = sdy + c
            for ch in 0..<c { sumDy[ch] += Double(sdy[ch]); sumDyX[ch] += Double(sdyx[ch]) }
        }
        for grp in 0..<groups {
            var a1: Double = 0, a2: Double = 0
            for ch in (grp * cg)..<((grp + 1) * cg) {
                let gamma = Double(pc[(img * 3 + 2) * c + ch])
                a1 += gamma * sumDy[ch]; a2 += gamma * sumDyX[ch]
            }
            let m1 = a1 / count, m2 = a2 / count
            for ch in (grp * cg)..<((grp + 1) * cg) {
                let r = Double(pc[(img * 3 + 1) * c + ch]), gamma = Double(pc[(img * 3 + 2) * c + ch])
                gBeta.data[img * c + ch] = Float(sumDy[ch])
                gGamma.data[img * c + ch] = Float(sumDyX[ch])
                cf[(img * 3) * c + ch] = Float(r * gamma)
                cf[(img * 3 + 1) * c + ch] = Float(r * m2 * r)
                cf[(img * 3 + 2) * c + ch] = Float(r * m1)
            }
        }
    }
    let gx = Tensor(uninitialized: x.shape)
    let gxp = gx.data
    parallelRanges(n * p, grain: max(1, 8192 / max(c, 1))) { rows in
        for row in rows {
            let img = row / p
            let m = UnsafePointer(pc + img * 3 * c)
            let a = UnsafePointer(cf + img * 3 * c), b = a + c, e = a + 2 * c
            let xr = xs + row * c, dr = gys + row * c, o = gxp + row * c
            for j in 0..<c { o[j] = a[j] * dr[j] - b[j] * (xr[j] - m[j]) - e[j] }
        }
    }
    return (gx, gGamma, gBeta)
}

/// Numerically stable softmax of one row.
@inline(__always)
func softmaxRow(_ x: UnsafePointer<Float>, _ o: UnsafeMutablePointer<Float>, _ n: Int) {
    let m = rowMax(x, n)
    if m == -.infinity { o.update(repeating: 0, count: n); return }
    if UnsafePointer(o) != x { o.update(from: x, count: n) }
    let s = expShiftedInPlace(o, n, shift: m)
    scaleInPlace(o, n, 1 / s)
}
