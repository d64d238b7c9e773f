import CKernels
/// Elementwise arithmetic with broadcasting, and activations.

enum BinaryOp { case add, sub, mul, div }

@inline(__always)
private func applyBinary(_ op: BinaryOp, _ a: UnsafePointer<Float>, _ sa: Int,
                         _ b: UnsafePointer<Float>, _ sb: Int,
                         _ o: UnsafeMutablePointer<Float>, _ n: Int) {
    switch (sa, sb) {
    case (1, 1):
        switch op {
        case .add: mapVec16(a, b, o, n) { $0 + $1 }
        case .sub: mapVec16(a, b, o, n) { $0 - $1 }
        case .mul: mapVec16(a, b, o, n) { $0 * $1 }
        case .div: mapVec16(a, b, o, n) { $0 / $1 }
        }
    case (1, 0):
        let v = Vec16(repeating: b[0])
        switch op {
        case .add: mapVec16(a, o, n) { $0 + v }
        case .sub: mapVec16(a, o, n) { $0 - v }
        case .mul: mapVec16(a, o, n) { $0 * v }
        case .div: mapVec16(a, o, n) { $0 / v }
        }
    default:
        for j in 0..<n {
            let x = a[j * sa], y = b[j * sb]
            switch op {
            case .add: o[j] = x + y
            case .sub: o[j] = x - y
            case .mul: o[j] = x * y
            case .div: o[j] = x / y
            }
        }
    }
}

func binaryKernel(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) -> Tensor {
    let shape = a.shape == b.shape ? a.shape : broadcastShape(a.shape, b.shape)
    let out = Tensor(uninitialized: shape)
    let pa = UnsafePointer(a.data), pb = UnsafePointer(b.data), po = out.data
    if a.shape == b.shape {
        parallelRanges(out.count, grain: 1 << 15) { r in
            applyBinary(op, pa + r.lowerBound, 1, pb + r.lowerBound, 1, po + r.lowerBound, r.count)
        }
        return out
    }
    var outStrides = [Int](repeating: 0, count: shape.count)
    var s = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) { outStrides[i] = s; s *= shape[i] }
    let (dims, st) = coalesce(shape, [broadcastStrides(a.shape, to: shape), broadcastStrides(b.shape, to: shape), outStrides])
    let inner = dims.last!
    let rows = dims.count == 1 ? 1 : dims.dropLast().reduce(1, *)
    let sa = st[0].last!, sb = st[1].last!
    parallelRanges(rows, grain: max(1, (1 << 14) / max(inner, 1))) { range in
        forEachRow(shape: dims, strides: st, rows: range) { off in
            if sa == 0 && sb == 1 && (op == .add || op == .mul) {
                // Commutative: reuse the (vector, scalar) path.
                applyBinary(op, pb + off[1], 1, pa + off[0], 0, po + off[2], inner)
            } else {
                applyBinary(op, pa + off[0], sa, pb + off[1], sb, po + off[2], inner)
            }
        }
    }
    return out
}

extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        binaryKernel(.add, a, b).recorded("add", [a, b]) { g in
            [a.needsGrad ? g.sumToShape(a.shape) : nil, b.needsGrad ? g.sumToShape(b.shape) : nil]
        }
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        binaryKernel(.sub, a, b).recorded("sub", [a, b]) { g in
            [a.needsGrad ? g.sumToShape(a.shape) : nil, b.needsGrad ? g.scaled(-1).sumToShape(b.shape) : nil]
        }
    }

    public static func * (a: Tensor, b: Tensor) -> Tensor {
        binaryKernel(.mul, a, b).recorded("mul", [a, b]) { g in
            [a.needsGrad ? binaryKernel(.mul, g, b).sumToShape(a.shape) : nil,
             b.needsGrad ? binaryKernel(.mul, g, a).sumToShape(b.shape) : nil]
        }
    }

    public static func / (a: Tensor, b: Tensor) -> Tensor {
        binaryKernel(.div, a, b).recorded("div", [a, b]) { g in
            let ga = binaryKernel(.div, g, b)
            var gb: Tensor? = nil
            if b.needsGrad {
                // d(a/b)/db = -a / b²
                gb = binaryKernel(.mul, ga, binaryKernel(.div, a, b)).scaled(-1).sumToShape(b.shape)
            }
            return [a.needsGrad ? ga.sumToShape(a.shape) : nil, gb]
        }
    }

    public static func * (a: Tensor, s: Float) -> Tensor { a.scaled(s) }
    public static func * (s: Float, a: Tensor) -> Tensor { a.scaled(s) }
    public static func + (a: Tensor, s: Float) -> Tensor { a.addingScalar(s) }
    public static func - (a: Tensor, s: Float) -> Tensor { a.addingScalar(-s) }
    public static prefix func - (a: Tensor) -> Tensor { a.scaled(-1) }

    /// self · s
    public func scaled(_ s: Float) -> Tensor {
        let out = unary { x in x * Vec16(repeating: s) }
        return out.recorded("scale", [self]) { g in [g.scaled(s)] }
    }

    /// self + s
    public func addingScalar(_ s: Float) -> Tensor {
        let out = unary { x in x + Vec16(repeating: s) }
        return out.recorded("addScalar", [self]) { g in [g] }
    }

    /// Unrecorded sum of two same-count tensors (for gradient accumulation).
    func adding(_ other: Tensor) -> Tensor {
        let out = Tensor(uninitialized: shape)
        let a = UnsafePointer(data), b = UnsafePointer(other.data), o = out.data
        parallelRanges(count, grain: 1 << 15) { r in
            mapVec16(a + r.lowerBound, b + r.lowerBound, o + r.lowerBound, r.count) { $0 + $1 }
        }
        return out
    }

    /// self += other (same count), not recorded.
    public func addInPlace(_ other: Tensor, scale: Float = 1) {
        precondition(other.count == count, "addInPlace: \(other.shape) into \(shape)")
        let a = data, b = UnsafePointer(other.data)
        let s = Vec16(repeating: scale)
        parallelRanges(count, grain: 1 << 15) { r in
            mapVec16(a + r.lowerBound, b + r.lowerBound, a + r.lowerBound, r.count) { $0 + s * $1 }
        }
    }

    /// Applies a vectorized function elementwise (not recorded).
    @inline(__always)
    func unary(_ f: (Vec16) -> Vec16) -> Tensor {
        let out = Tensor(uninitialized: shape)
        let src = UnsafePointer(data), dst = out.data
        parallelRanges(count, grain: 1 << 14) { r in
            mapVec16(src + r.lowerBound, dst + r.lowerBound, r.count, f)
        }
        return out
    }

    /// Elementwise combination of two same-shape tensors (not recorded).
    @inline(__always)
    func zipMap(_ other: Tensor, _ f: (Vec16, Vec16) -> Vec16) -> Tensor {
        precondition(other.count == count)
        let out = Tensor(uninitialized: shape)
        let a = UnsafePointer(data), b = UnsafePointer(other.data), dst = out.data
        parallelRanges(count, grain: 1 << 14) { r in
            mapVec16(a + r.lowerBound, b + r.lowerBound, dst + r.lowerBound, r.count, f)
        }
        return out
    }
}

/// Activations. Each backward uses the input (saved by the closure).
public enum F {}

extension F {
    public static func silu(_ x: Tensor) -> Tensor {
        let y: Tensor
        if let kernel = VectorKernels.pick(nest_silu, nest_silu_avx2) {
            y = Tensor(uninitialized: x.shape)
            let src = UnsafePointer(x.data), dst = y.data
            parallelRanges(x.count, grain: 1 << 14) { r in kernel(src + r.lowerBound, dst + r.lowerBound, r.count) }
        } else {
            y = x.unary { $0 * vsigmoid($0) }
        }
        return y.recorded("silu", [x]) { g in
            // d/dx x·σ(x) = σ(x)·(1 + x·(1 - σ(x)))
            [g.zipMap(x) { g, x in
                let s = vsigmoid(x)
                return g * s * (Vec16(repeating: 1) + x * (Vec16(repeating: 1) - s))
            }]
        }
    }

    public static func sigmoid(_ x: Tensor) -> Tensor {
        x.unary { vsigmoid($0) }.recorded("sigmoid", [x]) { g in
            [g.zipMap(x) { g, x in let s = vsigmoid(x); return g * s * (Vec16(repeating: 1) - s) }]
        }
    }

    public static func tanh(_ x: Tensor) -> Tensor {
        x.unary { vtanh($0) }.recorded("tanh", [x]) { g in
            [g.zipMap(x) { g, x in let t = vtanh(x); return g * (Vec16(repeating: 1) - t * t) }]
        }
    }

    public static func exp(_ x: Tensor) -> Tensor {
        x.unary { vexp($0) }.recorded("exp", [x]) { g in [g.zipMap(x) { g, x in g * vexp(x) }] }
    }

    public static func relu(_ x: Tensor) -> Tensor {
        x.unary { $0.replacing(with: 0, where: $0 .< 0) }.recorded("relu", [x]) { g in
            [g.zipMap(x) { g, x in g.replacing(with: 0, where: x .<= 0) }]
        }
    }

    public static func sqrt(_ x: Tensor) -> Tensor {
        let out = x.unary { $0.squareRoot() }
        return out.recorded("sqrt", [x]) { g in [g.zipMap(out) { g, y in g / (2 * y) }] }
    }

    public static func square(_ x: Tensor) -> Tensor {
        x.unary { $0 * $0 }.recorded("square", [x]) { g in [g.zipMap(x) { g, x in 2 * g * x }] }
    }

    public enum GELUApproximation: Sendable { case none, tanh }

    /// GELU: exact x·Φ(x) (PyTorch's default) or the tanh approximation.
    public static func gelu(_ x: Tensor, approximate: GELUApproximation = .none) -> Tensor {
        switch approximate {
        case .none:
            return x.unary(geluExact).recorded("gelu", [x]) { g in [g.zipMap(x) { g, x in g * geluExactGrad(x) }] }
        case .tanh:
            return x.unary(geluTanh).recorded("gelu_tanh", [x]) { g in [g.zipMap(x) { g, x in g * geluTanhGrad(x) }] }
        }
    }

    /// CLIP's x·σ(1.702x).
    public static func quickGelu(_ x: Tensor) -> Tensor {
        x.unary { $0 * vsigmoid(Vec16(repeating: 1.702) * $0) }.recorded("quick_gelu", [x]) { g in
            [g.zipMap(x) { g, x in
                let s = vsigmoid(Vec16(repeating: 1.702) * x)
                return g * (s + Vec16(repeating: 1.702) * x * s * (Vec16(repeating: 1) - s))
            }]
        }
    }
}

@inline(__always) func geluExact(_ x: Vec16) -> Vec16 {
    Vec16(repeating: 0.5) * x * (Vec16(repeating: 1) + verf(x * Vec16(repeating: 0.707_106_781_186_547_6)))
}

@inline(__always) func geluExactGrad(_ x: Vec16) -> Vec16 {
    let cdf = Vec16(repeating: 0.5) * (Vec16(repeating: 1) + verf(x * Vec16(repeating: 0.707_106_781_186_547_6)))
    let pdf = Vec16(repeating: 0.398_942_280_401_432_7) * vexp(Vec16(repeating: -0.5) * x * x)
    return cdf + x * pdf
}

@inline(__always) func geluTanh(_ x: Vec16) -> Vec16 {
    let inner = Vec16(repeating: 0.797_884_560_802_865_4) * (x + Vec16(repeating: 0.044715) * x * x * x)
    return Vec16(repeating: 0.5) * x * (Vec16(repeating: 1) + vtanh(inner))
}

@inline(__always) func geluTanhGrad(_ x: Vec16) -> Vec16 {
    let k = Vec16(repeating: 0.797_884_560_802_865_4)
    let inner = k * (x + Vec16(repeating: 0.044715) * x * x * x)
    let t = vtanh(inner)
    let dInner = k * (Vec16(repeating: 1) + Vec16(repeating: 3 * 0.044715) * x * x)
    return Vec16(repeating: 0.5) * (Vec16(repeating: 1) + t) + Vec16(repeating: 0.5) * x * (Vec16(repeating: 1) - t * t) * dInner
}
