import CKernels

/// GEGLU, the feed-forward gate of diffusion transformers: the last dim holds
/// [value, gate]; the result is value · gelu(gate) with exact GELU.
extension F {
    public static func geglu(_ x: Tensor) -> Tensor {
        let w2 = x.shape.last ?? 0
        precondition(w2 % 2 == 0, "geglu needs an even last dim, got \(x.shape)")
        let w = w2 / 2, rows = x.count / max(w2, 1)
        let out = Tensor(uninitialized: Array(x.shape.dropLast()) + [w])
        let xs = UnsafePointer(x.data), op = out.data
        let forward = VectorKernels.pick(nest_geglu_forward, nest_geglu_forward_avx2)
        let backward = VectorKernels.pick(nest_geglu_backward, nest_geglu_backward_avx2)
        parallelRanges(rows, grain: max(1, 8192 / max(w, 1))) { r in
            if let forward { forward(xs + r.lowerBound * w2, op + r.lowerBound * w, r.count, w); return }
            for i in r { mapVec16(xs + i * w2, xs + i * w2 + w, op + i * w, w) { a, g in a * geluExact(g) } }
        }
        return out.recorded("geglu", [x]) { gy in
            let gx = Tensor(uninitialized: x.shape)
            let gyp = UnsafePointer(gy.data), gxp = gx.data
            parallelRanges(rows, grain: max(1, 8192 / max(w, 1))) { r in
                if let backward { backward(xs + r.lowerBound * w2, gyp + r.lowerBound * w, gxp + r.lowerBound * w2, r.count, w); return }
                for i in r {
                    let a = xs + i * w2, g = a + w, dy = gyp + i * w
                    mapVec16(dy, g, gxp + i * w2, w) { dy, g in dy * geluExact(g) }
                    mapVec16(dy, UnsafePointer(a), gxp + i * w2 + w, w) { dy, a in dy * a }
                    mapVec16(UnsafePointer(gxp + i * w2 + w), g, gxp + i * w2 + w, w) { t, g in t * geluExactGrad(g) }
                }
            }
            return [gx]
        }
    }
}
