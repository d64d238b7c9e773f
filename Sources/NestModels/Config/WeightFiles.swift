import Foundation
import NestEngine
import NestIO

/// Finding and loading a component's weights inside a diffusers/transformers folder.
///
/// A component folder (e.g. `unet/`) holds `config.json` and its weights in
/// one of the layouts the libraries write: `diffusion_pytorch_model.safetensors`
/// (diffusers) or `model.safetensors` (transformers), possibly sharded behind
/// a `*.safetensors.index.json`, possibly as an fp16 variant
/// (`diffusion_pytorch_model.fp16.safetensors`).
public enum WeightFiles {
    static let stems = ["diffusion_pytorch_model", "model"]

    /// The weights file (or shard index) to read; `variant` ("fp16") is preferred when given,
    /// and used as a fallback when the plain file is absent.
    public static func locate(in folder: URL, variant: String? = nil) throws -> URL {
        let fm = FileManager.default
        guard fm.fileExists(atPath: folder.path) else {
            throw ModelConfigError("\(folder.path): folder not found")
        }
        var candidates: [String] = []
        let variants = variant.map { [$0, nil] } ?? [nil, "fp16"]
        for v in variants {
            for stem in stems {
                let base = v.map { "\(stem).\($0)" } ?? stem
                candidates.append("\(base).safetensors")
                candidates.append("\(base).safetensors.index.json")
            }
        }
        for name in candidates where fm.fileExists(atPath: folder.appendingPathComponent(name).path) {
            return folder.appendingPathComponent(name)
        }
        if fm.fileExists(atPath: folder.appendingPathComponent("diffusion_pytorch_model.bin").path)
            || fm.fileExists(atPath: folder.appendingPathComponent("pytorch_model.bin").path) {
            throw ModelConfigError("\(folder.path): only PyTorch .bin weights found; convert them to safetensors")
        }
        throw ModelConfigError("\(folder.path): no weights file (expected diffusion_pytorch_model.safetensors or model.safetensors)")
    }

    /// Loads `module`'s parameters from the folder's weights, strictly: any
    /// missing, unexpected or mis-shaped tensor is an error naming it.
    @discardableResult
    public static func load(_ module: Module, from folder: URL, variant: String? = nil, prefix: String = "",
                            ignoring ignored: @escaping (String) -> Bool = { _ in false }) throws -> LoadReport {
        let (url, source) = try open(folder, variant: variant, ignoring: ignored)
        return try naming(url) { try module.load(from: source, prefix: prefix) }
    }

    /// Builds a model with `make` and loads the folder's weights into it, strictly.
    /// The shapes the config implies are compared with the weights' header
    /// first, without allocating, so a config that does not fit its weights
    /// (or asks for absurd sizes) fails before any large allocation.
    /// The model's parameters own no memory until loaded (nothing is
    /// initialized that the file overwrites); `options` picks the precision
    /// the large weights are kept in and reports progress.
    public static func build<M: Module>(from folder: URL, variant: String? = nil,
                                        ignoring ignored: @escaping (String) -> Bool = { _ in false },
                                        options: WeightLoadOptions = WeightLoadOptions(),
                                        _ make: () throws -> M) throws -> M {
        let (url, source) = try open(folder, variant: variant, ignoring: ignored)
        return try naming(url) {
            let model = try Module.build(checkedAgainst: source, make)
            try model.load(from: source, options: options)
            return model
        }
    }

    /// What `build` would hold with each precision, from the header alone:
    /// `make` runs in `ParameterShapes.plan`, so nothing is allocated.
    public static func loadingCost<M: Module>(from folder: URL, variant: String? = nil,
                                              ignoring ignored: @escaping (String) -> Bool = { _ in false },
                                              _ make: () throws -> M) throws -> [WeightPrecision: LoadingCost] {
        let (_, source) = try open(folder, variant: variant, ignoring: ignored)
        let model = try ParameterShapes.plan(make)
        return Dictionary(uniqueKeysWithValues: WeightPrecision.allCases.map { ($0, model.loadingCost(from: source, precision: $0)) })
    }

    static func open(_ folder: URL, variant: String?, ignoring ignored: @escaping (String) -> Bool)
        throws -> (URL, FilteredSource) {
        let url = try locate(in: folder, variant: variant)
        return (url, FilteredSource(base: try SafeTensorsCollection(path: url.path), ignored: ignored))
    }

    /// Weight problems as one line naming the weights file.
    static func naming<T>(_ url: URL, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as WeightLoadingError {
            throw ModelConfigError("\(url.path): \(error.description)")
        }
    }
}

/// Hides tensors a model deliberately does not use (e.g. transformers'
/// `position_ids` buffers) from strict loading.
struct FilteredSource: WeightSource {
    let base: WeightSource
    let ignored: (String) -> Bool
    var tensorNames: [String] { base.tensorNames.filter { !ignored($0) } }
    func shape(of name: String) -> [Int]? { ignored(name) ? nil : base.shape(of: name) }
    func read(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        try base.read(name, into: destination, count: count)
    }
    func weightBytes(of name: String) -> WeightBytes? { ignored(name) ? nil : base.weightBytes(of: name) }
}
