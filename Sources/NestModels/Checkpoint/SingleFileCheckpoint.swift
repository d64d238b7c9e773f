import Foundation
import NestEngine
import NestIO

/// A whole Stable Diffusion pipeline's weights in one `.safetensors` file, in the
/// original key layout the popular web UIs load (`model.diffusion_model.*`,
/// `first_stage_model.*`, `cond_stage_model.*` or SDXL's `conditioner.embedders.0/1.*`).
///
/// The family is recognized from the tensor names. Loading maps every parameter of
/// the diffusers models built from configs to its original tensor through the key
/// tables of `OriginalLayout`, and checks the whole file — every name, shape and
/// leftover tensor — before any model is built, so a bad file fails in one line
/// naming the tensor and nothing is half loaded.
public final class SingleFileCheckpoint {
    public let file: SafeTensorsFile
    public let family: CheckpointFamily
    public var path: String { file.path }

    public init(path: String) throws {
        do { file = try SafeTensorsFile(path: path) } catch { throw ModelConfigError(String(describing: error)) }
        let names = file.names
        do {
            family = try CheckpointFamily.recognize(names)
        } catch let error as ModelConfigError {
            throw ModelConfigError("\(path): \(error.description)")
        }
        for (prefix, what) in [(CheckpointFamily.unetPrefix, "UNet"), (CheckpointFamily.vaePrefix, "VAE")]
        where !names.contains(where: { $0.hasPrefix(prefix) }) {
            throw ModelConfigError("\(path): an \(family.rawValue) checkpoint without its \(what) (no \(prefix)* tensors)")
        }
    }

    /// Whether a tensor name belongs to the original layout (for telling such files from other safetensors).
    public static func isOriginalLayoutName(_ name: String) -> Bool {
        ["model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "conditioner.embedders."].contains { name.hasPrefix($0) }
    }

    /// Cross-attention layers of the UNet (`attn2` of every transformer block): 70 in SDXL base, 16 in SD 1.x/2.x.
    public var crossAttentionLayers: Int {
        file.names.filter { $0.hasPrefix(CheckpointFamily.unetPrefix) && $0.hasSuffix(".attn2.to_k.weight") }.count
    }

    /// The configs of the models a file is loaded into (a diffusers folder's, or built-in ones).
    public struct Configs: Sendable {
        public var unet: UNet2DConditionConfig
        public var vae: AutoencoderKLConfig
        /// One per text encoder, in diffusers' order.
        public var textEncoders: [CLIPTextConfig]
        public init(unet: UNet2DConditionConfig, vae: AutoencoderKLConfig, textEncoders: [CLIPTextConfig]) {
            self.unet = unet; self.vae = vae; self.textEncoders = textEncoders
        }
    }

    /// The weight source of every component, and what the file holds that no model reads.
    public struct Plan {
        public var unet: RenamedSource
        public var vae: RenamedSource
        public var textEncoders: [RenamedSource]
        /// Tensors that are present and deliberately unused, counted by reason.
        public var ignored: [String: Int]
    }

    /// Maps every parameter of the models `configs` describe to the file and checks
    /// names and shapes, without allocating any weight. Every problem is named:
    /// a missing tensor (with the parameter it would fill), a wrong shape, and
    /// every tensor no model reads unless it is one the original models keep for
    /// other purposes (`IgnoredTensors`).
    public func plan(_ configs: Configs) throws -> Plan {
        guard configs.textEncoders.count == family.textEncoderTables.count else {
            throw ModelConfigError("\(path): an \(family.rawValue) checkpoint has \(family.textEncoderTables.count) text encoder(s), "
                                   + "the configs describe \(configs.textEncoders.count)")
        }
        var problems: [String] = []
        var used = Set<String>()
        func source(_ component: String, _ table: KeyTable, _ model: () throws -> Module) rethrows -> RenamedSource {
            let planned = try ParameterShapes.plan(model)
            let (keys, claimed, found) = mapKeys(component, table, planned.checkpointShapes())
            problems += found
            used.formUnion(claimed)
            return RenamedSource(file: file, keys: keys)
        }
        let unet = source("unet", OriginalLayout.unet(configs.unet)) { UNet2DConditionModel(config: configs.unet) }
        let vae = try source("vae", OriginalLayout.vae(levels: configs.vae.blockOutChannels.count)) {
            try AutoencoderKL(config: configs.vae)
        }
        let names = ["text_encoder", "text_encoder_2"]
        let text = zip(configs.textEncoders, family.textEncoderTables).enumerated().map { i, pair in
            source(names[i], pair.1) { CLIPTextModel(config: pair.0, withProjection: family.textEncoderHasProjection(i)) }
        }
        let ignoring = IgnoredTensors(family: family, textEncoders: configs.textEncoders)
        var ignored: [String: Int] = [:]
        for name in file.names where !used.contains(name) {
            if let reason = ignoring.reason(name) { ignored[reason, default: 0] += 1 } else {
                problems.append("\(name): not a weight of any \(family.rawValue) model this config describes")
            }
        }
        if !problems.isEmpty {
            throw ModelConfigError("\(path): \(weightProblemSummary(problems))")
        }
        return Plan(unet: unet, vae: vae, textEncoders: text, ignored: ignored)
    }

    /// The original tensor of every expected parameter, the original names claimed (a
    /// mis-shaped tensor is reported once, as such), and the problems found on the way.
    func mapKeys(_ component: String, _ table: KeyTable, _ expected: [(name: String, shape: [Int])])
        -> (keys: [String: MappedKey], claimed: Set<String>, problems: [String]) {
        var keys: [String: MappedKey] = [:], claimed = Set<String>(), problems: [String] = []
        for (name, want) in expected {
            guard let key = table.map(name) else {
                problems.append("\(component) \(name): no rule maps it to the original layout")
                continue
            }
            guard let stored = file.tensors[key.original]?.shape else {
                problems.append("\(key.original): missing (\(component) \(name))")
                continue
            }
            claimed.insert(key.original)
            guard let shape = key.transform.shape(from: stored), shape == want else {
                problems.append("\(key.original): shape \(stored), expected \(expectedStored(want, key.transform)) (\(component) \(name))")
                continue
            }
            keys[name] = key
        }
        return (keys, claimed, problems)
    }

    /// The stored shape a parameter of shape `want` needs, for messages.
    func expectedStored(_ want: [Int], _ transform: KeyTransform) -> String {
        switch transform {
        case .same: return "\(want)"
        case .squeezeConvolution: return "\(want + [1, 1])"
        case .transpose: return "\(Array(want.reversed()))"
        case let .slice(_, parts): return "\([want[0] * parts] + want.dropFirst())"
        }
    }

    /// The checked models, with their weights.
    public struct Models {
        public let unet: UNet2DConditionModel
        public let vae: AutoencoderKL
        public let textEncoders: [CLIPTextModel]
        public let ignored: [String: Int]
    }

    /// Plans (checking the whole file), then builds and loads every model, its
    /// large weights read straight into `precision` (see `WeightPrecision`).
    /// The models are built for loading: no weight is initialized first.
    public func load(_ configs: Configs, precision: WeightPrecision = .float32) throws -> Models {
        let plan = try plan(configs)
        let options = WeightLoadOptions(precision: precision)
        // Each component reads through a mapping of its own, dropped once it is loaded, so the
        // pages of loaded components leave memory as they do with a folder's per-component files.
        func fresh(_ planned: RenamedSource) throws -> RenamedSource {
            RenamedSource(file: try SafeTensorsFile(path: path), keys: planned.keys)
        }
        do {
            let unet = ParameterShapes.forLoading { UNet2DConditionModel(config: configs.unet) }
            try unet.load(from: try fresh(plan.unet), options: options)
            let vae = try ParameterShapes.forLoading { try AutoencoderKL(config: configs.vae) }
            try vae.load(from: try fresh(plan.vae), options: options)
            let text = try zip(configs.textEncoders, plan.textEncoders).enumerated().map { i, pair in
                let model = ParameterShapes.forLoading {
                    CLIPTextModel(config: pair.0, withProjection: family.textEncoderHasProjection(i))
                }
                try model.load(from: try fresh(pair.1), options: options)
                return model
            }
            return Models(unet: unet, vae: vae, textEncoders: text, ignored: plan.ignored)
        } catch let error as WeightLoadingError {
            throw ModelConfigError("\(path): \(error.description)")
        } catch let error as SafeTensorsError {
            throw ModelConfigError(error.description)
        }
    }
}
