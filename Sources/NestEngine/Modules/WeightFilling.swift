/// Giving one parameter its values from a checkpoint at the least cost.
/// Every parameter has its file's layout (convolutions included: OIHW), so
/// float32 bytes that lie aligned in a mapped file are used in place, with no
/// copy and no reordering; weights kept narrow (`WeightPrecision`) go from the
/// file to float16 or bfloat16 one tensor at a time, never through a whole
/// float32 model.
struct ParameterFiller {
    let source: WeightSource
    let precision: WeightPrecision
    /// The Linear and Conv2d layers whose weight this load narrows, by weight tensor.
    let narrowed: [ObjectIdentifier: Module]

    init(source: WeightSource, precision: WeightPrecision, minimumNarrowedCount: Int, module: Module) {
        self.source = source
        self.precision = precision
        var narrowed: [ObjectIdentifier: Module] = [:]
        func narrowable(_ weight: Tensor, _ half: HalfWeights?, _ bfloat16: BFloat16Weights?) -> Bool {
            Self.narrowable(weight, half, bfloat16) && weight.count >= minimumNarrowedCount
        }
        if precision != .float32 {
            for layer in module.allModules() {
                if let linear = layer as? Linear, narrowable(linear.weight, linear.halfWeight, linear.bfloat16Weight) {
                    narrowed[ObjectIdentifier(linear.weight)] = linear
                } else if let conv = layer as? Conv2d, narrowable(conv.weight, conv.halfWeight, conv.bfloat16Weight) {
                    narrowed[ObjectIdentifier(conv.weight)] = conv
                }
            }
        }
        self.narrowed = narrowed
    }

    /// The same rule as `storeWeightsAsHalf`: frozen, not narrowed yet (and large enough).
    static func narrowable(_ weight: Tensor, _ half: HalfWeights?, _ bfloat16: BFloat16Weights?) -> Bool {
        half == nil && bfloat16 == nil && !weight.requiresGrad
    }

    /// Checkpoint bytes this parameter reads (for progress).
    func byteCount(_ name: String, _ tensor: Tensor) -> Int {
        source.weightBytes(of: name)?.bytes.count ?? tensor.count * 4
    }

    /// The bytes as the engine's values, when they can serve in place:
    /// the wanted element type at an aligned address.
    static func inPlace<T>(_ bytes: WeightBytes, _ element: WeightBytes.Element, _ type: T.Type) -> UnsafeMutablePointer<T>? {
        bytes.element == element ? bytes.typed(type) : nil
    }

    /// What filling this parameter will hold, by the same rules as `fill`.
    func cost(_ name: String, _ parameter: Module.Parameter) -> LoadingCost {
        let count = parameter.tensor.count
        let bytes = source.weightBytes(of: name)
        if narrowed[ObjectIdentifier(parameter.tensor)] != nil {
            if precision == .float16, let bytes, Self.inPlace(bytes, .float16, UInt16.self) != nil {
                return LoadingCost(inPlaceBytes: count * 2, allocatedBytes: 0)
            }
            return LoadingCost(inPlaceBytes: 0, allocatedBytes: count * 2)
        }
        if let bytes, Self.inPlace(bytes, .float32, Float.self) != nil {
            return LoadingCost(inPlaceBytes: count * 4, allocatedBytes: 0)
        }
        return LoadingCost(inPlaceBytes: 0, allocatedBytes: count * 4)
    }

    func fill(_ name: String, _ parameter: Module.Parameter) throws {
        let tensor = parameter.tensor
        if tensor.released {
            throw WeightLoadingError("\(name): the model holds this weight narrowed (float16 or bfloat16); it cannot be reloaded")
        }
        if let layer = narrowed[ObjectIdentifier(tensor)] {
            try narrow(name, tensor, into: layer)
            return
        }
        let bytes = source.weightBytes(of: name)
        if let bytes, let pointer = Self.inPlace(bytes, .float32, Float.self) {
            tensor.replaceStorage(Storage(borrowing: pointer, count: tensor.count, owner: bytes.owner))
        } else if tensor.awaitsLoading {
            tensor.replaceStorage(try freshValues(name, tensor, bytes))
        } else {
            try source.read(name, into: tensor.data, count: tensor.count)
        }
    }

    /// The weight converted to float32 in fresh memory; mapped pages it was
    /// read from are given back.
    private func freshValues(_ name: String, _ tensor: Tensor, _ bytes: WeightBytes?) throws -> Storage {
        let out = Storage(count: tensor.count)
        try source.read(name, into: out.pointer, count: tensor.count)
        bytes?.discardPages()
        return out
    }

    private func narrow(_ name: String, _ tensor: Tensor, into layer: Module) throws {
        let bytes = source.weightBytes(of: name)
        func values() throws -> Tensor {
            Tensor(storage: try freshValues(name, tensor, bytes), shape: tensor.shape)
        }
        switch precision {
        case .float32:
            preconditionFailure("float32 weights are not narrowed")
        case .float16:
            let half: HalfWeights
            if let bytes, let bits = Self.inPlace(bytes, .float16, UInt16.self) {
                half = HalfWeights(shape: tensor.shape, borrowing: bits, owner: bytes.owner)
            } else {
                half = HalfWeights(try values())
            }
            if let linear = layer as? Linear { linear.halfWeight = half } else if let conv = layer as? Conv2d { conv.halfWeight = half }
        case .bfloat16:
            let packed = BFloat16Weights(try values())
            if let linear = layer as? Linear { linear.bfloat16Weight = packed } else if let conv = layer as? Conv2d { conv.bfloat16Weight = packed }
        }
        tensor.releaseStorage()
    }
}

/// The memory a model's weights hold once loaded.
public struct LoadingCost: Sendable, Equatable {
    /// Checkpoint bytes used in place from mapped files: resident as the page
    /// cache serves them, shared with it, never copied.
    public var inPlaceBytes: Int
    /// Fresh memory: converted or narrowed copies.
    public var allocatedBytes: Int
    public var totalBytes: Int { inPlaceBytes + allocatedBytes }

    public init(inPlaceBytes: Int, allocatedBytes: Int) {
        self.inPlaceBytes = inPlaceBytes; self.allocatedBytes = allocatedBytes
    }

    public static func + (a: LoadingCost, b: LoadingCost) -> LoadingCost {
        LoadingCost(inPlaceBytes: a.inPlaceBytes + b.inPlaceBytes, allocatedBytes: a.allocatedBytes + b.allocatedBytes)
    }
}

extension Module {
    /// What `load(from:prefix:options:)` with this precision would hold, without
    /// reading a value: works on a model from `ParameterShapes.plan`.
    public func loadingCost(from source: WeightSource, prefix: String = "", precision: WeightPrecision,
                            minimumNarrowedCount: Int = WeightPrecision.minimumNarrowedCount) -> LoadingCost {
        let filler = ParameterFiller(source: source, precision: precision, minimumNarrowedCount: minimumNarrowedCount,
                                     module: self)
        return namedParameters().reduce(LoadingCost(inPlaceBytes: 0, allocatedBytes: 0)) { total, item in
            total + filler.cost(prefix + item.path, item.parameter)
        }
    }
}
