import Foundation
import NestEngine
import NestIO
import NestModels

/// What the importer cannot read from the checkpoint: the subject's words and the
/// read-out settings the encoder was published with.
public struct AdapterImportSettings: Sendable {
    public var placeholderToken: String
    public var classWord: String
    /// λ (`vq_normalize_factor`), stored as `defaults.value_normalization`; nil: none.
    public var valueNormalization: Float?
    /// w (`special_token_weight`), stored as `defaults.token_weight`.
    public var tokenWeight: Float
    public var mapping: ImportMapping

    public init(placeholderToken: String, classWord: String, valueNormalization: Float? = nil, tokenWeight: Float = 1,
                mapping: ImportMapping = .ipAdapterLineage) {
        self.placeholderToken = placeholderToken; self.classWord = classWord
        self.valueNormalization = valueNormalization; self.tokenWeight = tokenWeight; self.mapping = mapping
    }
}

/// A foreign Nested Attention encoder checkpoint read through an `ImportMapping`: the
/// adapter config it amounts to for one UNet and image encoder, and which checkpoint key
/// fills each adapter parameter. Everything is checked from names and shapes before a
/// value is read; every key no rule matches, every number naming no layer and every
/// shape a rule or the adapter refuses is named.
public struct AdapterImport {
    /// One UNet cross-attention as the table's numbers name it.
    public struct NumberedLayer: Equatable {
        public var number: Int
        public var path: String
        public var width: Int
    }

    public let config: AdapterConfig
    /// Adapter parameter name → the checkpoint key it is read from.
    public let sources: [String: String]
    /// The cross-attentions the checkpoint has projections for, in UNet order (`layers.K` is the K-th).
    public let layers: [NumberedLayer]

    public init(source: WeightSource, unet: UNet2DConditionConfig, imageEncoder: CLIPVisionConfig,
                settings: AdapterImportSettings) throws {
        let mapping = settings.mapping
        try mapping.validate()
        let matches = try Self.matchEveryKey(source.tensorNames.sorted(), mapping)
        let candidates = Self.numberedLayers(unet, numbering: mapping.layerNumbering)
        layers = try Self.boundLayers(matches, candidates, mapping: mapping)
        let index = Dictionary(uniqueKeysWithValues: layers.enumerated().map { ($1.number, $0) })
        var targets: [String: String] = [:]
        for (key, m) in matches {
            let target = ImportMapping.fill(mapping.rules[m.rule].to, number: nil, layer: m.number.flatMap { index[$0] }, rest: m.rest)
            if let other = targets[target] { throw AdapterImportError("\(other) and \(key) both map to \(target)") }
            targets[target] = key
        }
        sources = targets
        let resampler = try Self.resamplerConfig(targets, source, mapping: mapping)
        var config = AdapterConfig(
            kind: .nested, placeholderToken: settings.placeholderToken, classWord: settings.classWord,
            imageEncoder: .init(hiddenSize: imageEncoder.encoder.hiddenSize, imageSize: imageEncoder.imageSize, featureLayer: -2),
            resampler: resampler, layers: layers.map { AdapterConfig.Layer(path: $0.path, width: $0.width) })
        config.defaults = .init(valueNormalization: settings.valueNormalization, tokenWeight: settings.tokenWeight)
        do {
            try config.validate()
            try config.validate(against: imageEncoder)
            try NestedAttentionOptions(valueNormalization: settings.valueNormalization, tokenWeight: settings.tokenWeight).validate()
        } catch { throw AdapterImportError("\(error)") }
        self.config = config
        let widths = Widths(token: resampler.outputDim, feature: imageEncoder.encoder.hiddenSize)
        try checkShapeRules(matches, source, mapping: mapping, widths: widths)
        try checkAgainstAdapter(source, mapping: mapping)
    }

    /// The adapter with the checkpoint's values (float16 and bfloat16 files are widened to float32).
    public func load(from source: WeightSource) throws -> PersonalizationAdapter {
        let mapped = MappedWeightSource(base: source, names: sources)
        do {
            let adapter = try Module.build(checkedAgainst: mapped) { PersonalizationAdapter(config: config) }
            try adapter.load(from: mapped)
            return adapter
        } catch let error as WeightLoadingError { throw AdapterImportError(error.description) }
    }

    /// Every key's rule, or one error listing every key no rule matches.
    static func matchEveryKey(_ keys: [String], _ mapping: ImportMapping) throws -> [(key: String, match: ImportMapping.Match)] {
        var matched: [(key: String, match: ImportMapping.Match)] = [], unmatched: [String] = []
        for key in keys {
            if let m = mapping.match(key) { matched.append((key, m)) } else { unmatched.append(key) }
        }
        guard unmatched.isEmpty else {
            throw AdapterImportError("\(unmatched.count) tensor(s) match no rule of the import table '\(mapping.name)' "
                                     + "and are not guessed at: \(unmatched.map { Escaped.text($0) }.joined(separator: ", "))")
        }
        guard !matched.isEmpty else { throw AdapterImportError("the checkpoint holds no tensors") }
        return matched
    }

    /// Every cross-attention of the UNet with the number the table's `{n}` gives it (built as shapes only).
    static func numberedLayers(_ unet: UNet2DConditionConfig, numbering: ImportMapping.LayerNumbering) -> [NumberedLayer] {
        let planned = ParameterShapes.plan { UNet2DConditionModel(config: unet) }
        let byPath = Dictionary(uniqueKeysWithValues: planned.attentionLayers.map { ($0.path, $0.layer) })
        let numbered: [(path: String, number: Int)] = switch numbering {
        case .processorPosition: IPAdapterLayout.keyNumbers(attentionPaths: planned.attentionLayers.map(\.path))
        case .crossAttentionIndex: planned.crossAttentionLayers.enumerated().map { ($1.path, $0) }
        }
        return numbered.map { path, number in
            let layer = byPath[path]!
            return NumberedLayer(number: number, path: path, width: layer.heads * layer.dimHead)
        }
    }

    /// The layers the checkpoint's numbers name, in UNet order; every number naming none is refused by its key.
    static func boundLayers(_ matches: [(key: String, match: ImportMapping.Match)], _ candidates: [NumberedLayer],
                            mapping: ImportMapping) throws -> [NumberedLayer] {
        let known = Set(candidates.map(\.number))
        let used = Set(matches.compactMap(\.match.number))
        let stray = matches.filter { $0.match.number.map { !known.contains($0) } ?? false }.map(\.key)
        guard stray.isEmpty else {
            let numbers = candidates.map(\.number)
            let range = numbers.count > 3 ? "\(numbers[0]), \(numbers[1]), …, \(numbers.last!)" : numbers.map(String.init).joined(separator: ", ")
            throw AdapterImportError("\(stray.joined(separator: ", ")): the number names no cross-attention of this UNet "
                                     + "(\(mapping.layerNumbering.rawValue) numbers here: \(range)); the checkpoint was made for another base model")
        }
        return candidates.filter { used.contains($0.number) }
    }

    /// The resampler's shape, inferred from the tensors mapped to `resampler.*` as diffusers infers IP-Adapter Plus's.
    static func resamplerConfig(_ targets: [String: String], _ source: WeightSource, mapping: ImportMapping) throws -> Resampler.Config {
        let prefix = "resampler."
        let parts = Set(targets.keys.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) })
        guard parts.contains("latents") else {
            throw AdapterImportError("no tensor maps to resampler.latents (the learned queries): the encoder must be an "
                                     + "IP-Adapter Plus resampler, and the table '\(mapping.name)' finds none")
        }
        do {
            return try IPAdapterLayout.plusConfig(parts) { part in
                guard let key = targets[prefix + part], let shape = source.shape(of: key) else {
                    throw AdapterImportError("no tensor maps to resampler.\(part)")
                }
                return shape
            }
        } catch let error as IPAdapterError { throw AdapterImportError(error.description) }
    }

    struct Widths { let token: Int, feature: Int }

    /// The table's own shape rules, each problem naming its key.
    func checkShapeRules(_ matches: [(key: String, match: ImportMapping.Match)], _ source: WeightSource,
                         mapping: ImportMapping, widths: Widths) throws {
        let byNumber = Dictionary(uniqueKeysWithValues: layers.map { ($0.number, $0) })
        var problems: [String] = []
        for (key, m) in matches {
            guard let rule = mapping.rules[m.rule].shape, let shape = source.shape(of: key) else { continue }
            let layer = m.number.flatMap { byNumber[$0] }
            let want: [Int?] = rule.map { d in
                switch d {
                case let .fixed(n): n
                case .any: nil
                case .layerWidth: layer?.width
                case .tokenWidth: widths.token
                case .featureWidth: widths.feature
                }
            }
            let fits = shape.count == want.count && zip(shape, want).allSatisfy { $1 == nil || $0 == $1 }
            if !fits {
                let named = zip(rule, want).map { d, n in n.map { "\(d) \($0)" } ?? "\(d)" }.joined(separator: ", ")
                problems.append("\(key) is \(shape) but must be [\(named)]" + (layer.map { " for \($0.path)" } ?? ""))
            }
        }
        guard problems.isEmpty else { throw AdapterImportError(problems.joined(separator: "; ")) }
    }

    /// Every mapped tensor must be a parameter of the adapter with its shape, and every parameter mapped.
    func checkAgainstAdapter(_ source: WeightSource, mapping: ImportMapping) throws {
        let config = self.config
        let planned = ParameterShapes.plan { PersonalizationAdapter(config: config) }
        let expected = Dictionary(uniqueKeysWithValues: planned.checkpointShapes().map { ($0.name, $0.shape) })
        var problems: [String] = []
        for (target, key) in sources.sorted(by: { $0.value < $1.value }) {
            guard let want = expected[target] else {
                problems.append("\(key) maps to \(target), which is no parameter of a nested adapter")
                continue
            }
            if let shape = source.shape(of: key), shape != want { problems.append("\(key) is \(shape) but \(target) needs \(want)") }
        }
        for target in expected.keys.sorted() where sources[target] == nil {
            problems.append("no tensor for \(target)" + (originalName(of: target, mapping: mapping).map { " (expected \($0))" } ?? ""))
        }
        guard problems.isEmpty else { throw AdapterImportError(problems.joined(separator: "; ")) }
    }

    /// The checkpoint key that would fill `target` under the table, for naming what is missing.
    func originalName(of target: String, mapping: ImportMapping) -> String? {
        let reversed = ImportMapping(name: mapping.name, layerNumbering: mapping.layerNumbering, rules: mapping.rules.map {
            ImportMapping.Rule(from: $0.to.replacingOccurrences(of: "{layer}", with: "{n}"), to: $0.from)
        })
        guard let m = reversed.match(target) else { return nil }
        if let k = m.number, !layers.indices.contains(k) { return nil }
        return ImportMapping.fill(reversed.rules[m.rule].to, number: m.number.map { layers[$0].number }, layer: nil, rest: m.rest)
    }
}

/// The checkpoint's tensors under the adapter's parameter names (zero-copy where the file allows).
struct MappedWeightSource: WeightSource {
    let base: WeightSource
    /// Adapter name → checkpoint key.
    let names: [String: String]
    var tensorNames: [String] { names.keys.sorted() }
    func shape(of name: String) -> [Int]? { names[name].flatMap { base.shape(of: $0) } }
    func read(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        guard let key = names[name] else { throw WeightLoadingError("\(name): no checkpoint tensor maps to it") }
        try base.read(key, into: destination, count: count)
    }
    func weightBytes(of name: String) -> WeightBytes? { names[name].flatMap { base.weightBytes(of: $0) } }
}

extension AdapterImport {
    /// What an import wrote.
    public struct Written {
        public let configPath: String
        public let weightsPath: String
        public let config: AdapterConfig
        /// Checkpoint tensors read.
        public let tensors: Int
    }

    /// Imports `checkpoint` for the base model in `model` (its `unet/config.json` gives the
    /// layers; its `image_encoder/`, or `imageEncoder`, the feature width) and writes
    /// `folder/adapter.json` + `folder/adapter.safetensors`, never over existing files unless asked.
    public static func importFile(_ checkpoint: URL, model: URL, imageEncoder: URL? = nil, settings: AdapterImportSettings,
                                  to folder: URL, overwrite: Bool = false) throws -> Written {
        let name = checkpoint.lastPathComponent
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: checkpoint.path) } catch { throw AdapterImportError("\(checkpoint.path): \(error)") }
        let unet: UNet2DConditionConfig, encoder: CLIPVisionConfig
        do {
            unet = try UNet2DConditionConfig.load(from: model.appendingPathComponent("unet/config.json"))
            let encoderFolder = imageEncoder ?? model.appendingPathComponent("image_encoder")
            if imageEncoder == nil && !FileManager.default.fileExists(atPath: encoderFolder.path) {
                throw AdapterImportError("\(model.path) has no image_encoder/; name the encoder's CLIP image encoder folder (--image-encoder)")
            }
            encoder = try decodeConfig(CLIPVisionConfig.self, from: encoderFolder.appendingPathComponent("config.json"))
        } catch { throw AdapterImportError("\(error)") }
        let plan: AdapterImport, adapter: PersonalizationAdapter
        do {
            plan = try AdapterImport(source: file, unet: unet, imageEncoder: encoder, settings: settings)
            adapter = try plan.load(from: file)
        } catch let error as AdapterImportError { throw AdapterImportError("\(name): \(error.description)") }
        let base = folder.appendingPathComponent("adapter")
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for ext in ["json", "safetensors"] where !overwrite {
                let path = base.appendingPathExtension(ext).path
                if FileManager.default.fileExists(atPath: path) {
                    throw AdapterImportError("\(path) already exists; pass --overwrite to replace it")
                }
            }
            try adapter.save(path: base.path, overwrite: overwrite)
        } catch let error as AdapterImportError { throw error } catch {
            throw AdapterImportError("\(folder.path): \(error)")
        }
        return Written(configPath: base.appendingPathExtension("json").path, weightsPath: base.appendingPathExtension("safetensors").path,
                       config: plan.config, tensors: file.tensorNames.count)
    }
}
