/// A dense, contiguous float32 tensor in row-major order.
///
/// Reshape shares storage (a free view); permutes, slices and concatenations
/// are explicit copies. Images are channels-last: [N, H, W, C].
///
/// Autograd: when gradient recording is on (`Autograd.isEnabled`) and an
/// operation has an input that requires gradients, the result remembers how
/// it was made (`node`), so `backward()` can walk back to the leaves.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public internal(set) var storage: Storage
    /// Leaves with `requiresGrad` accumulate gradients into `grad`.
    public var requiresGrad: Bool
    public var grad: Tensor?
    var node: GradNode?
    /// True once the float32 values were dropped for a float16 copy (`Module.storeWeightsAsHalf`).
    public internal(set) var released = false

    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    public var data: UnsafeMutablePointer<Float> { storage.pointer }
    public var isLeaf: Bool { node == nil }

    public init(storage: Storage, shape: [Int], requiresGrad: Bool = false) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(storage.count == shape.reduce(1, *),
                     "storage holds \(storage.count) values, shape \(shape) needs \(shape.reduce(1, *))")
        self.shape = shape
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    /// Uninitialized tensor: for kernels that write every element.
    public convenience init(uninitialized shape: [Int]) {
        self.init(storage: Storage(count: shape.reduce(1, *)), shape: shape)
    }

    public convenience init(zeros shape: [Int], requiresGrad: Bool = false) {
        self.init(storage: Storage(count: shape.reduce(1, *), zeroed: true), shape: shape, requiresGrad: requiresGrad)
    }

    public convenience init(repeating value: Float, shape: [Int]) {
        self.init(uninitialized: shape)
        data.update(repeating: value, count: count)
    }

    public convenience init(ones shape: [Int]) { self.init(repeating: 1, shape: shape) }

    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) {
        precondition(values.count == shape.reduce(1, *),
                     "\(values.count) values do not fill shape \(shape)")
        self.init(uninitialized: shape)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
        self.requiresGrad = requiresGrad
    }

    public convenience init(scalar: Float) { self.init([scalar], shape: []) }

    /// Normally distributed values (mean 0, std 1) from a seeded generator.
    public static func randn(_ shape: [Int], seed: UInt64, std: Float = 1) -> Tensor {
        var rng = SeededRandom(seed: seed)
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.data[i] = rng.nextNormal() * std }
        return t
    }

    /// Uniform values in [low, high) from a seeded generator.
    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1, seed: UInt64) -> Tensor {
        var rng = SeededRandom(seed: seed)
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.data[i] = low + (high - low) * rng.nextFloat() }
        return t
    }

    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// The value of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item needs a one-element tensor, shape is \(shape)")
        return data[0]
    }

    public subscript(flat index: Int) -> Float {
        get { data[index] }
        set { data[index] = newValue }
    }

    /// A copy that shares nothing with this tensor and records no history.
    public func copy() -> Tensor {
        let t = Tensor(uninitialized: shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// The same values, cut off from autograd history (shares storage).
    public func detached() -> Tensor { Tensor(storage: storage, shape: shape) }

    /// Overwrites this tensor's values in place (shapes must hold the same count).
    /// In-place writes are not recorded by autograd: use on leaves or buffers.
    public func assign(_ other: Tensor) {
        precondition(other.count == count, "assign: \(other.shape) into \(shape)")
        precondition(!released, "assign: this weight is stored as float16 (storeWeightsAsHalf); its float32 values are gone")
        if other.data != data { data.update(from: other.data, count: count) }
    }

    /// Replaces the storage (e.g. with a zero-copy view of a mapped file).
    public func replaceStorage(_ newStorage: Storage) {
        precondition(newStorage.count == count, "replaceStorage: \(newStorage.count) values for shape \(shape)")
        storage = newStorage
    }

    public func zeroGrad() { grad = nil }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = (0..<min(count, 8)).map { String(data[$0]) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(preview)\(count > 8 ? ", ..." : "")])"
    }
}

/// Normalizes a possibly negative axis against a rank.
@inline(__always)
func normalizeAxis(_ axis: Int, rank: Int) -> Int {
    let a = axis < 0 ? axis + rank : axis
    precondition(a >= 0 && a < rank, "axis \(axis) out of range for rank \(rank)")
    return a
}

extension Tensor {
    /// False when any value is NaN or infinite: a cheap check on results before they
    /// become images or weights, where NaN would otherwise turn silently into black.
    public var allFinite: Bool {
        let p = data
        // Any NaN or infinity makes the product with zero NaN; a finite sum of zeros stays 0.
        var probe: Float = 0
        for i in 0..<count { probe += p[i] * 0 }
        return probe == 0
    }
}
