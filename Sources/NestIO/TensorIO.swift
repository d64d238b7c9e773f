import NestEngine

/// Bridges safetensors files and engine tensors: reading tensors (zero-copy
/// for F32), loading modules by name, and saving tensors.

extension SafeTensorsFile: WeightSource {
    public var tensorNames: [String] { names }
    public func shape(of name: String) -> [Int]? { tensors[name]?.shape }
    public func read(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        try copyFloats(name, into: destination, count: count)
    }

    /// float32, float16 and bfloat16 tensors in place in the mapping, which the bytes keep alive.
    public func weightBytes(of name: String) -> WeightBytes? {
        guard let info = tensors[name], let element = WeightBytes.Element(info.dtype),
              let bytes = try? rawBytes(name) else { return nil }
        return WeightBytes(element: element, bytes: bytes, owner: self, mappedFromFile: true)
    }

    /// The named tensor as float32. F32 data is viewed in place (the tensor
    /// keeps the mapping alive) when `copy` is false; other dtypes are converted.
    public func tensor(_ name: String, copy: Bool = true) throws -> Tensor {
        let info = try self.info(name)
        let count = info.shape.reduce(1, *)
        if !copy, info.dtype == .f32 {
            let raw = try rawBytes(name)
            if let base = raw.baseAddress, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 {
                let pointer = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Float.self))
                return Tensor(storage: Storage(borrowing: pointer, count: count, owner: self), shape: info.shape)
            }
        }
        let t = Tensor(uninitialized: info.shape)
        try copyFloats(name, into: t.data, count: count)
        return t
    }
}

extension SafeTensorsCollection: WeightSource {
    public var tensorNames: [String] { names }
    public func shape(of name: String) -> [Int]? { tensors[name]?.shape }
    public func read(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        try copyFloats(name, into: destination, count: count)
    }

    public func weightBytes(of name: String) -> WeightBytes? {
        (try? file(containing: name))?.weightBytes(of: name)
    }

    public func tensor(_ name: String) throws -> Tensor {
        let info = try self.info(name)
        let t = Tensor(uninitialized: info.shape)
        try copyFloats(name, into: t.data, count: t.count)
        return t
    }
}

/// Writes tensors to a safetensors file atomically (F32, or F16/BF16 to halve size).
public func saveSafeTensors(_ tensors: [(name: String, tensor: Tensor)], to path: String,
                            dtype: SafeTensorsDType = .f32, metadata: [String: String] = [:],
                            overwrite: Bool = false) throws {
    var writer = SafeTensorsWriter(metadata: metadata)
    for (name, t) in tensors {
        writer.add(name, shape: t.shape, floats: t.array, as: dtype)
    }
    try writer.write(to: path, overwrite: overwrite)
}

extension Module {
    /// Saves the parameters in checkpoint layout (OIHW convolutions), by name.
    public func save(to path: String, prefix: String = "", dtype: SafeTensorsDType = .f32,
                     metadata: [String: String] = [:], overwrite: Bool = false) throws {
        try saveSafeTensors(checkpointTensors(prefix: prefix), to: path, dtype: dtype, metadata: metadata, overwrite: overwrite)
    }
}

extension WeightBytes.Element {
    /// The loader's name for a safetensors dtype it can use in place (nil: convert through `read`).
    init?(_ dtype: SafeTensorsDType) {
        switch dtype {
        case .f32: self = .float32
        case .f16: self = .float16
        case .bf16: self = .bfloat16
        default: return nil
        }
    }
}
