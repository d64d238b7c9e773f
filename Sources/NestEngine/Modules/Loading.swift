/// Filling a module's parameters from named checkpoint tensors.

public struct WeightLoadingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Something that can hand out checkpoint tensors by name, in checkpoint
/// layout (e.g. a safetensors file or a dictionary).
public protocol WeightSource {
    var tensorNames: [String] { get }
    func shape(of name: String) -> [Int]?
    /// Writes the tensor's values as float32 into `destination` (`count` floats).
    func read(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws
}

/// An in-memory source (tests, converted weights).
public struct TensorDictionary: WeightSource {
    public var tensors: [String: Tensor]
    public init(_ tensors: [String: Tensor]) { self.tensors = tensors }
    public var tensorNames: [String] { tensors.keys.sorted() }
    public func shape(of name: String) -> [Int]? { tensors[name]?.shape }
    public func read(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        guard let t = tensors[name] else { throw WeightLoadingError("missing tensor \(name)") }
        guard t.count == count else { throw WeightLoadingError("\(name): \(t.count) values, expected \(count)") }
        destination.update(from: t.data, count: count)
    }
}

/// What a load did, for reporting.
public struct LoadReport: Sendable {
    public var loaded: [String] = []
    public var missing: [String] = []
    public var unexpected: [String] = []
}

extension Module {
    /// Loads every parameter from `source`, converting layouts (OIHW → OHWI).
    ///
    /// Strict loading (the default) fails on any missing or unexpected tensor
    /// and on any shape mismatch, naming each; non-strict loading skips
    /// missing ones and reports them.
    @discardableResult
    public func load(from source: WeightSource, prefix: String = "", strict: Bool = true) throws -> LoadReport {
        var report = LoadReport()
        let params = namedParameters()
        var expected = Set<String>()
        var problems: [String] = []
        for (path, p) in params {
            let name = prefix + path
            expected.insert(name)
            guard let shape = source.shape(of: name) else { report.missing.append(name); continue }
            let want = p.checkpointShape
            guard shape == want else {
                problems.append("\(name): checkpoint shape \(shape), model expects \(want)")
                continue
            }
            switch p.layout {
            case .plain:
                try source.read(name, into: p.tensor.data, count: p.tensor.count)
            case .convOIHW:
                let raw = Tensor(uninitialized: want)
                try source.read(name, into: raw.data, count: raw.count)
                p.tensor.assign(Autograd.noGrad { raw.permuted([0, 2, 3, 1]) })
            }
            report.loaded.append(name)
        }
        report.unexpected = source.tensorNames.filter { $0.hasPrefix(prefix) && !expected.contains($0) }
        if strict {
            problems += report.missing.map { "\($0): missing from checkpoint" }
            problems += report.unexpected.map { "\($0): not a parameter of the model" }
        }
        if !problems.isEmpty {
            let shown = problems.prefix(20).joined(separator: "; ")
            throw WeightLoadingError("\(problems.count) weight problem(s): \(shown)\(problems.count > 20 ? "; ..." : "")")
        }
        return report
    }

    /// Parameters in checkpoint layout (OHWI → OIHW), ready to save.
    public func checkpointTensors(prefix: String = "") -> [(name: String, tensor: Tensor)] {
        namedParameters().map { path, p in
            precondition(!p.tensor.released, "\(prefix + path) is stored as float16 for inference (storeWeightsAsHalf); it cannot be saved")
            switch p.layout {
            case .plain: return (prefix + path, p.tensor)
            case .convOIHW: return (prefix + path, Autograd.noGrad { p.tensor.permuted([0, 3, 1, 2]) })
            }
        }
    }
}
