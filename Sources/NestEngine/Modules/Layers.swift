import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Basic layers with PyTorch's parameter names and default initialization
/// (uniform ±1/√fan_in), seeded so tiny test models are reproducible.

/// Default seeds for layers built without one: a process-wide counter, so two
/// layers of the same shape never start identical, while a program that
/// builds its model in the same order gets the same weights every run.
public enum ParameterSeeds {
    static let counter = Atomic<UInt64>(0x5EED)
    static let step: UInt64 = 0x9E37_79B9_7F4A_7C15

    final class Scope { var current: UInt64; init(_ seed: UInt64) { current = seed } }
    static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    public static func next() -> UInt64 {
        if let raw = pthread_getspecific(key) {
            let scope = Unmanaged<Scope>.fromOpaque(raw).takeUnretainedValue()
            scope.current &+= step
            return scope.current
        }
        return counter.wrappingAdd(step, ordering: .relaxed).newValue
    }

    /// Builds `body` with default seeds drawn from `seed` on this thread, so a
    /// model constructed inside is the same whatever else the process builds.
    public static func scoped<T>(_ seed: UInt64, _ body: () throws -> T) rethrows -> T {
        let scope = Scope(seed)
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, Unmanaged.passUnretained(scope).toOpaque())
        defer { pthread_setspecific(key, previous); withExtendedLifetime(scope) {} }
        return try body()
    }
}

public final class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, seed: UInt64? = nil) {
        let seed = seed ?? ParameterSeeds.next()
        let bound = 1 / Float(max(inFeatures, 1)).squareRoot()
        weight = ParameterShapes.make([outFeatures, inFeatures]) {
            Tensor.uniform([outFeatures, inFeatures], low: -bound, high: bound, seed: seed)
        }
        self.bias = bias ? ParameterShapes.make([outFeatures]) {
            Tensor.uniform([outFeatures], low: -bound, high: bound, seed: seed &+ 1)
        } : nil
        super.init()
        parameter("weight", weight)
        if let b = self.bias { parameter("bias", b) }
    }

    /// The weight as float16 once `storeWeightsAsHalf` ran (then `weight` keeps only its shape).
    public internal(set) var halfWeight: HalfWeights?

    /// The weight as packed bfloat16 once `storeWeightsAsBFloat16` ran.
    public internal(set) var bfloat16Weight: BFloat16Weights?

    /// The float32 weight to compute with (widened from float16 or bfloat16 when stored so).
    public var computeWeight: Tensor { halfWeight?.widened() ?? bfloat16Weight?.widened() ?? weight }

    /// LoRA updates added to this layer's output (see `LowRankUpdate`).
    public var lowRankUpdates: [LowRankUpdate] = []

    public func callAsFunction(_ x: Tensor) -> Tensor {
        lowRankUpdates.isEmpty ? base(x) : addingLowRank(base(x), input: x)
    }

    private func base(_ x: Tensor) -> Tensor {
        // The bfloat16 product records no gradient: an input that needs one takes the float32 path.
        if let bfloat16Weight, !x.needsGrad { return F.linear(x, bfloat16: bfloat16Weight, bias: bias) }
        return F.linear(x, weight: computeWeight, bias: bias)
    }
}

public final class Conv2d: Module {
    public let weight: Tensor  // [O, I, kh, kw] (OIHW, as checkpoints store it)
    public let bias: Tensor?
    public let stride: Int
    public let padding: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                bias: Bool = true, seed: UInt64? = nil) {
        let seed = seed ?? ParameterSeeds.next()
        let fanIn = inChannels * kernelSize * kernelSize
        let bound = 1 / Float(max(fanIn, 1)).squareRoot()
        let shape = [outChannels, inChannels, kernelSize, kernelSize]
        weight = ParameterShapes.make(shape) { Tensor.uniform(shape, low: -bound, high: bound, seed: seed) }
        self.bias = bias ? ParameterShapes.make([outChannels]) {
            Tensor.uniform([outChannels], low: -bound, high: bound, seed: seed &+ 1)
        } : nil
        self.stride = stride
        self.padding = padding
        super.init()
        parameter("weight", weight)
        if let b = self.bias { parameter("bias", b) }
    }

    /// The weight as float16 once `storeWeightsAsHalf` ran (then `weight` keeps only its shape).
    public internal(set) var halfWeight: HalfWeights?

    /// The weight as packed bfloat16 once `storeWeightsAsBFloat16` ran.
    public internal(set) var bfloat16Weight: BFloat16Weights?

    /// The float32 weight to compute with (widened from float16 or bfloat16 when stored so).
    public var computeWeight: Tensor { halfWeight?.widened() ?? bfloat16Weight?.widened() ?? weight }

    /// LoRA updates added to this layer's output (see `LowRankUpdate`).
    public var lowRankUpdates: [LowRankUpdate] = []

    public func callAsFunction(_ x: Tensor) -> Tensor {
        lowRankUpdates.isEmpty ? base(x) : addingLowRank(base(x), input: x)
    }

    private func base(_ x: Tensor) -> Tensor {
        // A 1×1, stride-1, unpadded convolution over NHWC is a linear layer over channels.
        if let bfloat16Weight, !x.needsGrad {
            if weight.shape[2] == 1 && weight.shape[3] == 1 && stride == 1 && padding == 0 {
                return F.linear(x, bfloat16: bfloat16Weight, bias: bias)
            }
            if let y = F.conv2d(x, bfloat16: bfloat16Weight, bias: bias, stride: stride, padding: padding) { return y }
        }
        return F.conv2d(x, weight: computeWeight, bias: bias, stride: stride, padding: padding)
    }
}

public final class GroupNorm: Module {
    public let groups: Int
    public let eps: Float
    public let weight: Tensor?
    public let bias: Tensor?

    public init(groups: Int, channels: Int, eps: Float = 1e-5, affine: Bool = true) {
        self.groups = groups
        self.eps = eps
        weight = affine ? ParameterShapes.make([channels]) { Tensor(ones: [channels]) } : nil
        bias = affine ? ParameterShapes.make([channels]) { Tensor(zeros: [channels]) } : nil
        super.init()
        if let weight { parameter("weight", weight) }
        if let bias { parameter("bias", bias) }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        F.groupNorm(x, groups: groups, weight: weight, bias: bias, eps: eps)
    }

    /// silu(self(x)) in one pass when no gradient is recorded.
    public func silu(_ x: Tensor) -> Tensor {
        F.groupNormSiLU(x, groups: groups, weight: weight, bias: bias, eps: eps)
    }
}

public final class LayerNorm: Module {
    public let eps: Float
    public let weight: Tensor?
    public let bias: Tensor?

    public init(_ dim: Int, eps: Float = 1e-5, affine: Bool = true, bias: Bool = true) {
        self.eps = eps
        weight = affine ? ParameterShapes.make([dim]) { Tensor(ones: [dim]) } : nil
        self.bias = affine && bias ? ParameterShapes.make([dim]) { Tensor(zeros: [dim]) } : nil
        super.init()
        if let weight { parameter("weight", weight) }
        if let b = self.bias { parameter("bias", b) }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { F.layerNorm(x, weight: weight, bias: bias, eps: eps) }
}

public final class Embedding: Module {
    public let weight: Tensor

    public init(_ count: Int, _ dim: Int, seed: UInt64? = nil) {
        let seed = seed ?? ParameterSeeds.next()
        weight = ParameterShapes.make([count, dim]) { Tensor.randn([count, dim], seed: seed) }
        super.init()
        parameter("weight", weight)
    }

    public func callAsFunction(_ ids: [Int], shape: [Int]) -> Tensor { F.embedding(ids, shape: shape, table: weight) }
}
