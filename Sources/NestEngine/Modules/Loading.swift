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
        let params = namedParameters()
        // Every name and shape is checked before any value is read.
        let check = weightProblems(params.map { (prefix + $0.path, $0.parameter.checkpointShape) }, in: source,
                                   prefix: prefix, strict: strict)
        if !check.problems.isEmpty { throw WeightLoadingError(weightProblemSummary(check.problems)) }
        var report = LoadReport(missing: check.missing, unexpected: check.unexpected)
        for (path, p) in params {
            let name = prefix + path
            guard source.shape(of: name) != nil else { continue }
            switch p.layout {
            case .plain:
                try source.read(name, into: p.tensor.data, count: p.tensor.count)
            case .convOIHW:
                let raw = Tensor(uninitialized: p.checkpointShape)
                try source.read(name, into: raw.data, count: raw.count)
                p.tensor.assign(Autograd.noGrad { raw.permuted([0, 2, 3, 1]) })
            }
            report.loaded.append(name)
        }
        return report
    }

    /// Builds a module whose parameters are to be loaded from `source`: the
    /// shapes `build` implies are first compared with the source's, without
    /// allocating any parameter, so a config that does not match its weights
    /// (or asks for absurd sizes) fails before memory is spent on it.
    /// `part` picks the sub-module the source holds (the whole module by default).
    public static func build<M: Module>(checkedAgainst source: WeightSource, prefix: String = "",
                                        part: (M) -> Module = { $0 }, _ build: () throws -> M) throws -> M {
        let planned = try ParameterShapes.plan(build)
        let check = weightProblems(part(planned).checkpointShapes(prefix: prefix), in: source, prefix: prefix)
        if !check.problems.isEmpty { throw WeightLoadingError(weightProblemSummary(check.problems)) }
        return try build()
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
