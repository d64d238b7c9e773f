/// Reshape (a free view) and the explicit copies: permute, concat, split,
/// slice, nearest upsampling.

extension Tensor {
    /// Same values with a new shape; one dimension may be -1. Shares storage.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var target = newShape
        if let hole = target.firstIndex(of: -1) {
            let known = target.enumerated().filter { $0.offset != hole }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            target[hole] = count / known
        }
        precondition(target.reduce(1, *) == count, "cannot reshape \(shape) (\(count) values) to \(newShape)")
        let old = shape
        return Tensor(storage: storage, shape: target).recorded("reshape", [self]) { g in [g.reshaped(old)] }
    }

    /// Dimensions reordered: result dim i is input dim `order[i]`. Copies.
    public func permuted(_ order: [Int]) -> Tensor {
        precondition(order.sorted() == Array(0..<rank), "permutation \(order) invalid for rank \(rank)")
        let newShape = order.map { shape[$0] }
        let out = Tensor(uninitialized: newShape)
        var inStrides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * shape[i + 1] }
        var outStrides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { outStrides[i] = outStrides[i + 1] * newShape[i + 1] }
        // Walk the output contiguously, reading input with permuted strides.
        let srcStrides = order.map { inStrides[$0] }
        let (dims, st) = coalesce(newShape, [outStrides, srcStrides])
        let inner = dims.last!
        let rows = dims.count == 1 ? 1 : dims.dropLast().reduce(1, *)
        let si = st[1].last!
        let src = UnsafePointer(data), dst = out.data
        parallelRanges(rows, grain: max(1, 4096 / max(inner, 1))) { range in
            forEachRow(shape: dims, strides: st, rows: range) { off in
                let o = dst + off[0], a = src + off[1]
                if si == 1 { o.update(from: a, count: inner) } else { for j in 0..<inner { o[j] = a[j * si] } }
            }
        }
        var inverse = [Int](repeating: 0, count: rank)
        for (i, o) in order.enumerated() { inverse[o] = i }
        return out.recorded("permute", [self]) { g in [g.reshaped(newShape).permuted(inverse)] }
    }

    public func transposed(_ a: Int, _ b: Int) -> Tensor {
        var order = Array(0..<rank)
        order.swapAt(normalizeAxis(a, rank: rank), normalizeAxis(b, rank: rank))
        return permuted(order)
    }

    /// Elements `range` along `axis`. Copies.
    public func slice(axis: Int, _ range: Range<Int>) -> Tensor {
        let ax = normalizeAxis(axis, rank: rank)
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[ax],
                     "slice \(range) out of bounds for axis \(ax) of \(shape)")
        let outer = shape[..<ax].reduce(1, *), inner = shape[(ax + 1)...].reduce(1, *)
        var newShape = shape
        newShape[ax] = range.count
        let out = Tensor(uninitialized: newShape)
        let src = UnsafePointer(data), dst = out.data
        let srcRow = shape[ax] * inner, dstRow = range.count * inner
        parallelRanges(outer, grain: max(1, 4096 / max(dstRow, 1))) { r in
            for o in r { (dst + o * dstRow).update(from: src + o * srcRow + range.lowerBound * inner, count: dstRow) }
        }
        let full = shape
        return out.recorded("slice", [self]) { g in
            // Scatter the gradient back into a zero tensor of the input's shape.
            let gi = Tensor(zeros: full)
            let gs = UnsafePointer(g.data), gd = gi.data
            for o in 0..<outer { (gd + o * srcRow + range.lowerBound * inner).update(from: gs + o * dstRow, count: dstRow) }
            return [gi]
        }
    }

    /// Splits along `axis` into pieces of the given sizes.
    public func split(_ sizes: [Int], axis: Int) -> [Tensor] {
        let ax = normalizeAxis(axis, rank: rank)
        precondition(sizes.reduce(0, +) == shape[ax], "split sizes \(sizes) do not sum to \(shape[ax])")
        var start = 0
        return sizes.map { size in
            defer { start += size }
            return slice(axis: ax, start..<(start + size))
        }
    }

    /// Splits along `axis` into `parts` equal pieces.
    public func chunked(_ parts: Int, axis: Int) -> [Tensor] {
        let ax = normalizeAxis(axis, rank: rank)
        precondition(shape[ax] % parts == 0, "cannot split \(shape[ax]) into \(parts) equal parts")
        return split([Int](repeating: shape[ax] / parts, count: parts), axis: ax)
    }
}

extension F {
    /// Joins tensors along `axis`; all other dims must agree.
    public static func concat(_ tensors: [Tensor], axis: Int) -> Tensor {
        precondition(!tensors.isEmpty, "concat of nothing")
        let first = tensors[0]
        let ax = normalizeAxis(axis, rank: first.rank)
        for t in tensors {
            precondition(t.rank == first.rank && (0..<t.rank).allSatisfy { $0 == ax || t.shape[$0] == first.shape[$0] },
                         "concat: shape \(t.shape) does not match \(first.shape) outside axis \(ax)")
        }
        var newShape = first.shape
        newShape[ax] = tensors.reduce(0) { $0 + $1.shape[ax] }
        let outer = first.shape[..<ax].reduce(1, *), inner = first.shape[(ax + 1)...].reduce(1, *)
        let out = Tensor(uninitialized: newShape)
        let dstRow = newShape[ax] * inner
        var offset = 0
        for t in tensors {
            let row = t.shape[ax] * inner
            let src = UnsafePointer(t.data), dst = out.data + offset
            parallelRanges(outer, grain: max(1, 4096 / max(row, 1))) { r in
                for o in r { (dst + o * dstRow).update(from: src + o * row, count: row) }
            }
            offset += row
        }
        let sizes = tensors.map { $0.shape[ax] }
        return out.recorded("concat", tensors) { g in g.split(sizes, axis: ax) }
    }

    /// Nearest-neighbour ×2 upsampling of an NHWC tensor.
    public static func upsampleNearest2x(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4, "upsampleNearest2x expects NHWC, got \(x.shape)")
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let out = Tensor(uninitialized: [n, 2 * h, 2 * w, c])
        let src = UnsafePointer(x.data), dst = out.data
        parallelRanges(n * h, grain: 4) { rows in
            for r in rows {
                let s = src + r * w * c
                let d0 = dst + (2 * r) * (2 * w) * c
                for j in 0..<w {
                    (d0 + (2 * j) * c).update(from: s + j * c, count: c)
                    (d0 + (2 * j + 1) * c).update(from: s + j * c, count: c)
                }
                (d0 + 2 * w * c).update(from: d0, count: 2 * w * c)
            }
        }
        return out.recorded("upsample2x", [x]) { g in
            // Each input pixel receives the sum of its 2×2 block.
            let gi = Tensor(uninitialized: x.shape)
            let gs = UnsafePointer(g.data), gd = gi.data
            parallelRanges(n * h, grain: 4) { rows in
                for r in rows {
                    let top = gs + (2 * r) * (2 * w) * c, bottom = top + 2 * w * c
                    for j in 0..<w {
                        let d = gd + (r * w + j) * c
                        for k in 0..<c {
                            d[k] = top[2 * j * c + k] + top[(2 * j + 1) * c + k] + bottom[2 * j * c + k] + bottom[(2 * j + 1) * c + k]
                        }
                    }
                }
            }
            return [gi]
        }
    }

    /// Rows of `table` ([vocab, dim]) picked by `ids`; result shape `idsShape + [dim]`.
    public static func embedding(_ ids: [Int], shape idsShape: [Int], table: Tensor) -> Tensor {
        precondition(table.rank == 2, "embedding table must be [count, dim], got \(table.shape)")
        precondition(ids.count == idsShape.reduce(1, *), "\(ids.count) ids for shape \(idsShape)")
        let (vocab, dim) = (table.shape[0], table.shape[1])
        for id in ids { precondition(id >= 0 && id < vocab, "embedding id \(id) outside 0..<\(vocab)") }
        let out = Tensor(uninitialized: idsShape + [dim])
        let src = UnsafePointer(table.data), dst = out.data
        for (i, id) in ids.enumerated() { (dst + i * dim).update(from: src + id * dim, count: dim) }
        return out.recorded("embedding", [table]) { g in
            let gt = Tensor(zeros: table.shape)
            let gs = UnsafePointer(g.data), gd = gt.data
            for (i, id) in ids.enumerated() { for k in 0..<dim { gd[id * dim + k] += gs[i * dim + k] } }
            return [gt]
        }
    }
}
