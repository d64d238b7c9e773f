import CKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A weight kept as IEEE float16 and widened to float32 for each use.
///
/// Halves what a large model's weights occupy (an SDXL UNet: 10.3 → 5.1 GB)
/// at the price of one conversion per call, which runs at memory speed and
/// costs a few percent of a UNet step. Lossless for checkpoints that were
/// float16 to begin with (the `fp16` variants); otherwise each weight is
/// rounded to float16 once. Inference only: the weight cannot train.
public final class HalfWeights: @unchecked Sendable {
    public let shape: [Int]
    let bits: UnsafeMutablePointer<UInt16>
    /// Keeps borrowed bits valid (a mapped float16 checkpoint); nil when they are owned.
    private let owner: AnyObject?
    public var count: Int { shape.reduce(1, *) }
    /// True when the values are a checkpoint's own bytes, used in place.
    public var usesFileInPlace: Bool { owner != nil }

    /// Rounds `tensor` to float16 (nearest, ties to even).
    public init(_ tensor: Tensor) {
        shape = tensor.shape
        owner = nil
        bits = .allocate(capacity: max(tensor.count, 1))
        let (src, dst) = (UnsafePointer(tensor.data), bits)
        parallelRanges(tensor.count, grain: 1 << 16) { r in
            nest_f32_to_f16(src + r.lowerBound, dst + r.lowerBound, r.count)
        }
    }

    /// Uses float16 values that `owner` keeps valid, in place (no copy).
    init(shape: [Int], borrowing bits: UnsafeMutablePointer<UInt16>, owner: AnyObject) {
        self.shape = shape; self.bits = bits; self.owner = owner
    }

    deinit { if owner == nil { bits.deallocate() } }

    /// A new float32 tensor with the weight's values.
    public func widened() -> Tensor {
        let out = Tensor(uninitialized: shape)
        let (src, dst) = (UnsafePointer(bits), out.data)
        parallelRanges(count, grain: 1 << 16) { r in
            nest_f16_to_f32(src + r.lowerBound, dst + r.lowerBound, r.count)
        }
        return out
    }
}

extension Tensor {
    /// Drops the float32 values of a weight now held elsewhere (as float16):
    /// the shape stays, `isReleased` turns true, and reading or writing the
    /// values is refused where the engine would (`assign`, saving).
    func releaseStorage() {
        storage = Storage(count: 0)
        released = true
    }
}

extension Module {
    /// Stores every Linear and Conv2d weight of at least `minimumCount`
    /// values as float16 (see `HalfWeights`); biases, norms and embeddings
    /// stay float32. Returns the bytes of float32 storage given back.
    /// Frozen weights only: a weight that requires gradients is left alone.
    @discardableResult
    public func storeWeightsAsHalf(minimumCount: Int = 4096) -> Int {
        var saved = 0
        for module in allModules() {
            if let linear = module as? Linear, linear.halfWeight == nil, !linear.weight.requiresGrad,
               linear.weight.count >= minimumCount {
                linear.halfWeight = HalfWeights(linear.weight)
                saved += linear.weight.count * 2
                linear.weight.releaseStorage()
            } else if let conv = module as? Conv2d, conv.halfWeight == nil, !conv.weight.requiresGrad,
                      conv.weight.count >= minimumCount {
                conv.halfWeight = HalfWeights(conv.weight)
                saved += conv.weight.count * 2
                conv.weight.releaseStorage()
            }
        }
        return saved
    }

    /// This module and every module below it.
    func allModules() -> [Module] { [self] + children.flatMap { $0.module.allModules() } }
}
