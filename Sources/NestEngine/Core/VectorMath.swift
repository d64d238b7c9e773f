import CKernels
import Synchronization

/// Vectorized transcendental functions for the engine's kernels.
///
/// libm's scalar `expf`/`erff` would dominate softmax, attention and GELU, so
/// these evaluate 16 lanes at a time with polynomial approximations accurate
/// to a few ulp (exp) or ~1e-7 absolute (erf, tanh), well inside float32
/// parity with PyTorch.
public typealias Vec16 = SIMD16<Float>

/// Whether the engine's hot loops use the AVX-512 versions in CKernels
/// (detected once at startup; tests switch it off to check both paths agree).
public enum VectorKernels {
    public static let available = nest_kernels_avx512() != 0
    static let enabled = Atomic<Bool>(VectorKernels.available)
    /// A choice for the current task only (see `KernelSwitches`); nil: the global one.
    @TaskLocal static var taskOverride: Bool? = nil
    /// How many `with` scopes are open anywhere: while none is, the hot
    /// loops (a read per softmax row) skip the task-local lookup (~40 ns).
    static let openScopes = Atomic<Int>(0)

    /// Runs `body` with the vector kernels on or off for this task only
    /// (tests compare both paths while others run beside them).
    public static func with<T>(_ on: Bool, _ body: () throws -> T) rethrows -> T {
        openScopes.wrappingAdd(1, ordering: .relaxed)
        defer { openScopes.wrappingSubtract(1, ordering: .relaxed) }
        return try $taskOverride.withValue(on, operation: body)
    }

    public static var useAVX512: Bool {
        get {
            if openScopes.load(ordering: .relaxed) != 0, let on = taskOverride { return on && available }
            return enabled.load(ordering: .relaxed)
        }
        set { enabled.store(newValue && available, ordering: .relaxed) }
    }

    /// Whether the CPU has AVX2 and FMA: the kernels built for them run
    /// where AVX-512 is missing (x86-64 CPUs since about 2013).
    public static let availableAVX2 = nest_kernels_avx2() != 0
    static let enabledAVX2 = Atomic<Bool>(VectorKernels.availableAVX2)

    /// Whether the hot loops that have an AVX2 version use it. Callers ask
    /// `useAVX512` first. `with(false)` switches these off too, so one scope
    /// compares every hand-written kernel with the portable Swift.
    public static var useAVX2: Bool {
        get {
            if openScopes.load(ordering: .relaxed) != 0, let on = taskOverride { return on && availableAVX2 }
            return enabledAVX2.load(ordering: .relaxed)
        }
        set { enabledAVX2.store(newValue && availableAVX2, ordering: .relaxed) }
    }

    /// The AVX-512 or the AVX2 build of a CKernels function, whichever this
    /// task uses; nil: the portable Swift.
    @inline(__always) static func pick<Kernel>(_ avx512: Kernel, _ avx2: Kernel) -> Kernel? {
        useAVX512 ? avx512 : useAVX2 ? avx2 : nil
    }
}

@inline(__always) func load16(_ p: UnsafePointer<Float>) -> Vec16 {
    UnsafeRawPointer(p).loadUnaligned(as: Vec16.self)
}

@inline(__always) func store16(_ v: Vec16, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vec16.self)
}

/// e^x. Below -87.33 gives 0 (no denormals); above 88.376 (where 2^n would
/// overflow the exponent) gives +inf, slightly early: the true overflow is 88.72.
@inline(__always) public func vexp(_ x: Vec16) -> Vec16 {
    let clampedX = x.replacing(with: Vec16(repeating: 88.376), where: x .> 88.376)
        .replacing(with: Vec16(repeating: -87.33), where: x .< -87.33)
    // n = round(x / ln2) using the 1.5·2^23 trick, which leaves n in the low mantissa bits.
    let magic = Vec16(repeating: 12_582_912)
    let t = clampedX * Vec16(repeating: 1.442_695_04) + magic
    let n = t - magic
    // r = x - n·ln2 in two parts for accuracy.
    var r = clampedX - n * Vec16(repeating: 0.693_145_751_953_125)
    r = r - n * Vec16(repeating: 1.428_606_765_330_187e-06)
    // exp(r) on [-ln2/2, ln2/2]: degree-6 Taylor-like polynomial (Horner).
    var p = Vec16(repeating: 1.0 / 720)
    p = p * r + Vec16(repeating: 1.0 / 120)
    p = p * r + Vec16(repeating: 1.0 / 24)
    p = p * r + Vec16(repeating: 1.0 / 6)
    p = p * r + Vec16(repeating: 0.5)
    p = p * r + Vec16(repeating: 1)
    p = p * r + Vec16(repeating: 1)
    // 2^n from the integer bits of t.
    let tBits = unsafeBitCast(t, to: SIMD16<UInt32>.self), magicBits = unsafeBitCast(magic, to: SIMD16<UInt32>.self)
    let bits = (tBits &- magicBits &+ SIMD16<UInt32>(repeating: 127)) &<< 23
    var result = p * unsafeBitCast(bits, to: Vec16.self)
    result = result.replacing(with: Vec16(repeating: .infinity), where: x .> 88.376)
    result = result.replacing(with: Vec16(repeating: 0), where: x .< -87.33)
    // NaN in, NaN out.
    return result.replacing(with: x, where: x .!= x)
}

/// 1 / (1 + e^-x)
@inline(__always) public func vsigmoid(_ x: Vec16) -> Vec16 {
    Vec16(repeating: 1) / (Vec16(repeating: 1) + vexp(-x))
}

/// tanh(x) = sign(x)·(1 - 2 / (e^{2|x|} + 1)); for tiny |x| an odd polynomial
/// keeps relative accuracy.
@inline(__always) public func vtanh(_ x: Vec16) -> Vec16 {
    let ax = x.replacing(with: -x, where: x .< 0)
    let e = vexp(Vec16(repeating: 2) * ax)
    var big = Vec16(repeating: 1) - Vec16(repeating: 2) / (e + Vec16(repeating: 1))
    big = big.replacing(with: Vec16(repeating: 1), where: ax .> 9)
    let x2 = x * x
    // tanh x ≈ x - x³/3 + 2x⁵/15 - 17x⁷/315 for |x| < 0.0625
    let small = x * (Vec16(repeating: 1) + x2 * (Vec16(repeating: -1.0 / 3) + x2 * (Vec16(repeating: 2.0 / 15) + x2 * Vec16(repeating: -17.0 / 315))))
    let signed = big.replacing(with: -big, where: x .< 0)
    return signed.replacing(with: small, where: ax .< 0.0625)
}

/// erf(x) by Abramowitz & Stegun 7.1.26 refined: absolute error below 1.5e-7.
/// For |x| < 0.5 a Taylor series keeps relative accuracy near zero.
@inline(__always) public func verf(_ x: Vec16) -> Vec16 {
    let ax = x.replacing(with: -x, where: x .< 0)
    let t = Vec16(repeating: 1) / (Vec16(repeating: 1) + Vec16(repeating: 0.327_591_1) * ax)
    var poly = Vec16(repeating: 1.061_405_429)
    poly = poly * t + Vec16(repeating: -1.453_152_027)
    poly = poly * t + Vec16(repeating: 1.421_413_741)
    poly = poly * t + Vec16(repeating: -0.284_496_736)
    poly = poly * t + Vec16(repeating: 0.254_829_592)
    poly = poly * t
    let big = Vec16(repeating: 1) - poly * vexp(-ax * ax)
    // Taylor: 2/√π (x - x³/3 + x⁵/10 - x⁷/42 + x⁹/216 - x¹¹/1320)
    let x2 = x * x
    var s = Vec16(repeating: -1.0 / 1320)
    s = s * x2 + Vec16(repeating: 1.0 / 216)
    s = s * x2 + Vec16(repeating: -1.0 / 42)
    s = s * x2 + Vec16(repeating: 1.0 / 10)
    s = s * x2 + Vec16(repeating: -1.0 / 3)
    s = s * x2 + Vec16(repeating: 1)
    let small = Vec16(repeating: 1.128_379_167_095_512_6) * x * s
    let signed = big.replacing(with: -big, where: x .< 0)
    return signed.replacing(with: small, where: ax .< 0.5)
}

/// Applies a 16-lane function to `n` floats, handling the tail by padding.
@inline(__always) public func mapVec16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int,
                                       _ f: (Vec16) -> Vec16) {
    var i = 0
    while i + 16 <= n {
        store16(f(load16(src + i)), dst + i)
        i += 16
    }
    if i < n {
        var tmp = Vec16(repeating: 0)
        for j in 0..<(n - i) { tmp[j] = src[i + j] }
        let r = f(tmp)
        for j in 0..<(n - i) { dst[i + j] = r[j] }
    }
}

/// Same for a binary function of two inputs.
@inline(__always) public func mapVec16(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                       _ dst: UnsafeMutablePointer<Float>, _ n: Int,
                                       _ f: (Vec16, Vec16) -> Vec16) {
    var i = 0
    while i + 16 <= n {
        store16(f(load16(a + i), load16(b + i)), dst + i)
        i += 16
    }
    if i < n {
        var ta = Vec16(repeating: 0), tb = Vec16(repeating: 0)
        for j in 0..<(n - i) { ta[j] = a[i + j]; tb[j] = b[i + j] }
        let r = f(ta, tb)
        for j in 0..<(n - i) { dst[i + j] = r[j] }
    }
}

/// Scalar conveniences built on the vector versions (for tests and setup code).
public func fastExp(_ x: Float) -> Float { vexp(Vec16(repeating: x))[0] }
public func fastErf(_ x: Float) -> Float { verf(Vec16(repeating: x))[0] }
public func fastTanh(_ x: Float) -> Float { vtanh(Vec16(repeating: x))[0] }

/// Largest of `n` floats (-inf for none).
@inline(__always) public func rowMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    if let kernel = VectorKernels.pick(nest_row_max, nest_row_max_avx2) { return kernel(x, n) }
    var m = Vec16(repeating: -.infinity)
    var i = 0
    // Compare-and-blend: `pointwiseMax` and `.max()` compile to lane-by-lane
    // stack traffic on baseline x86-64, several times slower.
    while i + 16 <= n { let v = load16(x + i); m = m.replacing(with: v, where: v .> m); i += 16 }
    var r = -Float.infinity
    for lane in 0..<16 where m[lane] > r { r = m[lane] }
    while i < n { r = Swift.max(r, x[i]); i += 1 }
    return r
}

/// Sum of `n` floats, 16 lanes at a time.
@inline(__always) public func rowSum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var s = Vec16(repeating: 0)
    var i = 0
    while i + 16 <= n { s += load16(x + i); i += 16 }
    var r = s.sum()
    while i < n { r += x[i]; i += 1 }
    return r
}

/// x[i] = exp(x[i] - shift) over `n` floats; returns their sum.
@inline(__always) public func expShiftedInPlace(_ x: UnsafeMutablePointer<Float>, _ n: Int, shift: Float) -> Float {
    if let kernel = VectorKernels.pick(nest_exp_shift_sum, nest_exp_shift_sum_avx2) { return kernel(x, n, shift) }
    let sv = Vec16(repeating: shift)
    var s = Vec16(repeating: 0)
    var i = 0
    while i + 16 <= n {
        let e = vexp(load16(x + i) - sv)
        store16(e, x + i)
        s += e
        i += 16
    }
    var r = s.sum()
    if i < n {
        var tmp = Vec16(repeating: -.infinity)
        for j in 0..<(n - i) { tmp[j] = x[i + j] }
        let e = vexp(tmp - sv)
        for j in 0..<(n - i) { x[i + j] = e[j]; r += e[j] }
    }
    return r
}

/// x[i] *= s over `n` floats.
@inline(__always) public func scaleInPlace(_ x: UnsafeMutablePointer<Float>, _ n: Int, _ s: Float) {
    let sv = Vec16(repeating: s)
    var i = 0
    while i + 16 <= n { store16(load16(x + i) * sv, x + i); i += 16 }
    while i < n { x[i] *= s; i += 1 }
}
