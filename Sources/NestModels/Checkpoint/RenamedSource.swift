import NestEngine
import NestIO

/// Diffusers parameter names over the tensors of an original-layout file: the
/// weight source a model loads from, exactly as it loads from a diffusers folder.
public struct RenamedSource: WeightSource {
    public let file: SafeTensorsFile
    /// Diffusers parameter name → where its values are stored.
    public let keys: [String: MappedKey]

    public init(file: SafeTensorsFile, keys: [String: MappedKey]) {
        self.file = file
        self.keys = keys
    }

    public var tensorNames: [String] { keys.keys.sorted() }

    public func shape(of name: String) -> [Int]? {
        guard let key = keys[name], let stored = file.tensors[key.original]?.shape else { return nil }
        return key.transform.shape(from: stored)
    }

    public func read(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        guard let key = keys[name], let info = file.tensors[key.original], let shape = key.transform.shape(from: info.shape) else {
            throw WeightLoadingError("\(name): not in the checkpoint")
        }
        guard shape.reduce(1, *) == count else {
            throw WeightLoadingError("\(name) (\(key.original)): \(shape.reduce(1, *)) values, expected \(count)")
        }
        switch key.transform {
        case .same, .squeezeConvolution:
            try file.copyFloats(key.original, into: destination, count: count)
        case .transpose:
            let stored = try file.floats(key.original)
            let (rows, columns) = (info.shape[0], info.shape[1])
            for r in 0..<rows {
                for c in 0..<columns { destination[c * rows + r] = stored[r * columns + c] }
            }
        case let .slice(part, _):
            let stored = try file.floats(key.original)
            stored.withUnsafeBufferPointer { destination.update(from: $0.baseAddress! + part * count, count: count) }
        }
    }

    /// The stored bytes in place under the diffusers name, for every tensor
    /// whose values keep their stored order (as stored, a 1×1 convolution seen
    /// as a matrix, one part of a fused tensor): a single file then loads
    /// without copies, and float16 files stay narrow with `--half-weights`.
    /// Transposed tensors are reordered through `read`.
    public func weightBytes(of name: String) -> WeightBytes? {
        guard let key = keys[name], let stored = file.weightBytes(of: key.original) else { return nil }
        switch key.transform {
        case .same, .squeezeConvolution:
            return stored
        case let .slice(part, parts):
            let length = stored.bytes.count / parts
            let bytes = UnsafeRawBufferPointer(rebasing: stored.bytes[(part * length)..<((part + 1) * length)])
            return WeightBytes(element: stored.element, bytes: bytes, owner: stored.owner, mappedFromFile: stored.mappedFromFile)
        case .transpose:
            return nil
        }
    }
}
