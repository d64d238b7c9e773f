import NestEngine
import NestModels

/// The layers of one model part a LoRA may correct (every Linear and Conv2d), by
/// module path, and the web UI's names for them: the path with dots as underscores
/// (what kohya writes for SD 1/2 and the text encoders) and, for the UNet, the LDM
/// name the same way (what it writes for SDXL).
struct LoRATargets {
    private(set) var layers: [String: Module] = [:]
    private var kohya: [String: String] = [:]

    init(_ root: Module, unet: UNet2DConditionConfig? = nil) {
        collect(root, path: "")
        // The single-file checkpoints' key table names the UNet's modules the LDM way.
        let original = unet.map { OriginalLayout.unet($0) }
        for path in layers.keys {
            var names = [path] + Self.prefixAliases.compactMap { path.hasPrefix($0.path) ? $0.alias + path.dropFirst($0.path.count) : nil }
            if let original, let ldm = original.moduleName(path) { names.append(ldm) }
            for name in names {
                dotted[name] = path
                kohya[Self.underscored(name)] = path
            }
        }
    }

    /// Other spellings of a path's beginning: transformers 5 saves CLIP text encoders
    /// without the `text_model.` level, so LoRAs trained on them name `encoder.layers.…`.
    static let prefixAliases: [(path: String, alias: String)] = [("text_model.", "")]

    private var dotted: [String: String] = [:]

    private mutating func collect(_ module: Module, path: String) {
        if module is Linear || module is Conv2d { layers[path] = module }
        for (name, child) in module.children { collect(child, path: path.isEmpty ? name : path + "." + name) }
    }

    static func underscored(_ path: String) -> String { path.replacingOccurrences(of: ".", with: "_") }

    /// The module path a pair's name denotes, if this model part has it.
    func path(_ name: String, naming: LoRANaming) -> String? {
        switch naming {
        case .dotted: return dotted[name]
        case .kohya: return kohya[name]
        }
    }
}

/// The LoRA updates attached to a pipeline's layers, to be detached together.
public final class AttachedLoRAs {
    private var attached: [(module: Module, update: LowRankUpdate)] = []

    public init() {}

    public var isEmpty: Bool { attached.isEmpty }

    /// Reads `path` and attaches its pairs at `scale` to the UNet and text encoders.
    /// Checks every pair first: a file that does not fit leaves the model unchanged.
    public func attach(path: String, scale: Float, unet: UNet2DConditionModel, textEncoders: [CLIPTextModel]) throws {
        let file = try LoRAFile(path: path)
        var targets: [LoRAComponent: LoRATargets] = [.unet: LoRATargets(unet, unet: unet.config)]
        for (i, component) in [LoRAComponent.textEncoder, .textEncoder2].enumerated() where i < textEncoders.count {
            targets[component] = LoRATargets(textEncoders[i])
        }
        var planned: [(Module, LowRankUpdate)] = []
        let order = LoRAComponent.allCases
        for pair in file.pairs.sorted(by: { (order.firstIndex(of: $0.component)!, $0.module) < (order.firstIndex(of: $1.component)!, $1.module) }) {
            guard let parts = targets[pair.component] else {
                throw LoRAError("\(path): \(pair.down) is for \(pair.component.rawValue), which this model does not have")
            }
            guard let modulePath = parts.path(pair.module, naming: pair.naming), let module = parts.layers[modulePath] else {
                throw LoRAError("\(path): \(pair.down) names no layer of this model's \(pair.component.rawValue) (a LoRA for another architecture?)")
            }
            let down = try file.file.tensor(pair.down), up = try file.file.tensor(pair.up)
            let update = try LoRAShapes.update(for: module, down: down, up: up, alpha: pair.alpha, scale: scale,
                                               describe: "\(path): \(pair.down)")
            planned.append((module, update))
        }
        for (module, update) in planned { Self.add(update, to: module) }
        attached += planned.map { (module: $0.0, update: $0.1) }
    }

    /// Takes every attached update off its layer.
    public func detachAll() {
        for (module, update) in attached {
            if let linear = module as? Linear { linear.lowRankUpdates.removeAll { $0 === update } }
            if let conv = module as? Conv2d { conv.lowRankUpdates.removeAll { $0 === update } }
        }
        attached = []
    }

    private static func add(_ update: LowRankUpdate, to module: Module) {
        if let linear = module as? Linear { linear.lowRankUpdates.append(update) }
        if let conv = module as? Conv2d { conv.lowRankUpdates.append(update) }
    }
}

/// Checks a pair's shapes against the layer it corrects and builds the update.
enum LoRAShapes {
    /// down: [r, in] or [r, in, kh, kw] (PyTorch layout); up: [out, r] or [out, r, 1, 1].
    static func update(for module: Module, down: Tensor, up: Tensor, alpha: Float?, scale: Float,
                       describe: String) throws -> LowRankUpdate {
        let rank = down.shape.first ?? 0
        guard rank > 0, up.shape.count == down.shape.count, up.shape.count == 2 || up.shape.count == 4,
              up.shape.count == 2 || (up.shape[1] == rank && up.shape[2] == 1 && up.shape[3] == 1),
              up.shape[1] == rank else {
            throw LoRAError("\(describe) is \(down.shape) with an up tensor of \(up.shape): not a low-rank pair")
        }
        let factor = scale * (alpha ?? Float(rank)) / Float(rank)
        let up2 = up.reshaped([up.shape[0], rank])
        let mismatch = { (want: String) in
            LoRAError("\(describe) is \(down.shape) → \(up.shape), but the layer needs \(want): a LoRA for another architecture?")
        }
        if let linear = module as? Linear {
            let (out, inF) = (linear.weight.shape[0], linear.weight.shape[1])
            let square = down.shape.count == 2 || (down.shape[2] == 1 && down.shape[3] == 1)
            guard square, down.shape[1] == inF, up.shape[0] == out else { throw mismatch("[r, \(inF)] → [\(out), r]") }
            return LowRankUpdate(down: down.reshaped([rank, inF]), up: up2, scale: factor)
        }
        let conv = module as! Conv2d
        let w = conv.weight.shape  // [O, I, kh, kw]
        let kernel = down.shape.count == 4 ? [down.shape[2], down.shape[3]] : [1, 1]
        guard down.shape[1] == w[1], kernel == [w[2], w[3]], up.shape[0] == w[0] else {
            throw mismatch("[r, \(w[1]), \(w[2]), \(w[3])] → [\(w[0]), r, 1, 1]")
        }
        return LowRankUpdate(down: down.reshaped([rank, w[1], w[2], w[3]]), up: up2, scale: factor)
    }
}
