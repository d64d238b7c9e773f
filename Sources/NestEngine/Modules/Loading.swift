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
    /// The tensor's bytes where they already lie, when the loader may use
    /// them in place (float32, float16 or bfloat16 in a mapped file); nil
    /// makes the loader copy through `read`. A source that renames tensors
    /// forwards this under the new name to keep loading zero-copy.
    func weightBytes(of name: String) -> WeightBytes?
}

extension WeightSource {
    public func weightBytes(of name: String) -> WeightBytes? { nil }
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
    /// Loads every parameter from `source` (the engine keeps each tensor in its checkpoint's layout).
    ///
    /// Strict loading (the default) fails on any missing or unexpected tensor
    /// and on any shape mismatch, naming each; non-strict loading skips
    /// missing ones and reports them. A parameter built for loading
    /// (`ParameterShapes.forLoading`) that the source does not fill is an
    /// error by name either way. float32 values that a mapped file holds in
    /// the engine's layout are used in place (copy-on-write: changing a
    /// weight later never reaches the file); `options.precision` keeps the
    /// large weights narrow straight from the file.
    @discardableResult
    public func load(from source: WeightSource, prefix: String = "", strict: Bool = true,
                     options: WeightLoadOptions = WeightLoadOptions()) throws -> LoadReport {
        let params = namedParameters()
        // Every name and shape is checked before any value is read.
        let check = weightProblems(params.map { (prefix + $0.path, $0.parameter.checkpointShape) }, in: source,
                                   prefix: prefix, strict: strict)
        if !check.problems.isEmpty { throw WeightLoadingError(weightProblemSummary(check.problems)) }
        var report = LoadReport(missing: check.missing, unexpected: check.unexpected)
        let filler = ParameterFiller(source: source, precision: options.precision,
                                     minimumNarrowedCount: options.minimumNarrowedCount, module: self)
        let present = params.filter { source.shape(of: prefix + $0.path) != nil }
        let totalBytes = options.progress == nil ? 0 : present.reduce(0) { $0 + filler.byteCount(prefix + $1.path, $1.parameter.tensor) }
        var loadedBytes = 0
        for (path, p) in present {
            let name = prefix + path
            try filler.fill(name, p)
            report.loaded.append(name)
            if let progress = options.progress {
                loadedBytes += filler.byteCount(name, p.tensor)
                progress(WeightLoadProgress(loadedBytes: loadedBytes, totalBytes: totalBytes))
            }
        }
        let unloaded = unloadedParameters
        if !unloaded.isEmpty {
            throw WeightLoadingError(weightProblemSummary(unloaded.map { "\(prefix + $0): missing from checkpoint" }))
        }
        return report
    }

    /// Builds a module whose parameters are to be loaded from `source`: the
    /// shapes `build` implies are first compared with the source's, without
    /// allocating any parameter, so a config that does not match its weights
    /// (or asks for absurd sizes) fails before memory is spent on it.
    /// `part` picks the sub-module the source holds (the whole module by default).
    /// The parameters own no memory until `load` fills them: build, then load.
    public static func build<M: Module>(checkedAgainst source: WeightSource, prefix: String = "",
                                        part: (M) -> Module = { $0 }, _ build: () throws -> M) throws -> M {
        let planned = try ParameterShapes.plan(build)
        let check = weightProblems(part(planned).checkpointShapes(prefix: prefix), in: source, prefix: prefix)
        if !check.problems.isEmpty { throw WeightLoadingError(weightProblemSummary(check.problems)) }
        return try ParameterShapes.forLoading(build)
    }

    /// Parameters by checkpoint name, ready to save.
    public func checkpointTensors(prefix: String = "") -> [(name: String, tensor: Tensor)] {
        namedParameters().map { path, p in
            precondition(!p.tensor.released, "\(prefix + path) is stored as float16 for inference (storeWeightsAsHalf); it cannot be saved")
            return (prefix + path, p.tensor)
        }
    }
}
