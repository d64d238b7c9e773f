/// Broadcasting helpers shared by the binary elementwise operations and the
/// reductions that undo broadcasting in backward passes.

/// numpy/PyTorch broadcasting: align trailing dims; each pair equal or 1.
public func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int] {
    let r = max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let da = i < r - a.count ? 1 : a[i - (r - a.count)]
        let db = i < r - b.count ? 1 : b[i - (r - b.count)]
        precondition(da == db || da == 1 || db == 1, "shapes \(a) and \(b) do not broadcast")
        out[i] = da == 1 ? db : da
    }
    return out
}

/// Strides of `shape` when viewed as `target` (rank-padded, 0 on broadcast dims).
func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
    let pad = target.count - shape.count
    var strides = [Int](repeating: 0, count: target.count)
    var s = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        strides[i + pad] = shape[i] == 1 && target[i + pad] != 1 ? 0 : s
        s *= shape[i]
    }
    return strides
}

/// Merges adjacent dims that every operand traverses contiguously, so the
/// inner loop of a broadcast kernel is as long as possible.
func coalesce(_ shape: [Int], _ strides: [[Int]]) -> ([Int], [[Int]]) {
    var dims: [Int] = []
    var st: [[Int]] = strides.map { _ in [] }
    for d in 0..<shape.count where shape[d] != 1 {
        if let last = dims.last,
           strides.indices.allSatisfy({ st[$0].last! == strides[$0][d] * shape[d] }) {
            dims[dims.count - 1] = last * shape[d]
            for k in strides.indices { st[k][st[k].count - 1] = strides[k][d] }
        } else {
            dims.append(shape[d])
            for k in strides.indices { st[k].append(strides[k][d]) }
        }
    }
    if dims.isEmpty { return ([1], strides.map { _ in [1] }) }
    return (dims, st)
}

/// Visits every row of the (coalesced) output: `body(offsets, innerCount, innerStrides)`
/// where offsets are the starting element offsets of each operand.
func forEachRow(shape: [Int], strides: [[Int]], rows: Range<Int>,
                _ body: (_ offsets: [Int]) -> Void) {
    let r = shape.count
    if r == 1 { body(strides.map { _ in 0 }); return }
    var index = [Int](repeating: 0, count: r - 1)
    // Decompose the first row number into a multi-index over the outer dims.
    var rem = rows.lowerBound
    for d in stride(from: r - 2, through: 0, by: -1) { index[d] = rem % shape[d]; rem /= shape[d] }
    for _ in rows {
        var offsets = [Int](repeating: 0, count: strides.count)
        for k in strides.indices {
            var o = 0
            for d in 0..<(r - 1) { o += index[d] * strides[k][d] }
            offsets[k] = o
        }
        body(offsets)
        var d = r - 2
        while d >= 0 {
            index[d] += 1
            if index[d] < shape[d] { break }
            index[d] = 0
            d -= 1
        }
    }
}

extension Tensor {
    /// Sums this tensor down to `target` (the inverse of broadcasting `target` up to our shape).
    public func sumToShape(_ target: [Int]) -> Tensor {
        if target == shape { return self }
        let out = Tensor(zeros: target)
        let outStrides = broadcastStrides(target, to: shape)
        var inStrides = [Int](repeating: 0, count: shape.count)
        var s = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) { inStrides[i] = s; s *= shape[i] }
        let (dims, st) = coalesce(shape, [inStrides, outStrides])
        let inner = dims.last!
        let rows = dims.count == 1 ? 1 : dims.dropLast().reduce(1, *)
        let si = st[0].last!, so = st[1].last!
        let src = data, dst = out.data
        // Serial: different rows may add into the same output element.
        forEachRow(shape: dims, strides: st, rows: 0..<rows) { off in
            let a = src + off[0], o = dst + off[1]
            if so == 0 {
                var acc: Float = 0
                for j in 0..<inner { acc += a[j * si] }
                o[0] += acc
            } else {
                for j in 0..<inner { o[j * so] += a[j * si] }
            }
        }
        return out
    }
}
