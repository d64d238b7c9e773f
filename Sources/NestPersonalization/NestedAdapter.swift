import Foundation
import NestEngine
import NestIO
import NestModels

/// A personalization adapter: the subject encoder (resampler over CLIP image
/// features) and the per-layer projections of its kind.
///
/// - nested: `layers.N.to_k` / `to_v` make nested keys and values K̃ = E·W̃_K,
///   Ṽ = E·W̃_V for the N-th bound cross-attention layer;
/// - ip-adapter: the same names make the decoupled branch's K_ip, V_ip;
/// - single-token: `token_proj` maps the mean encoder token to one context vector.
public final class PersonalizationAdapter: Module {
    public final class Projection: Module {
        public let to_k: Linear, to_v: Linear
        init(inputWidth: Int, width: Int) {
            to_k = Linear(inputWidth, width, bias: false)
            to_v = Linear(inputWidth, width, bias: false)
            super.init()
            child("to_k", to_k); child("to_v", to_v)
        }
    }

    public let config: AdapterConfig
    public let resampler: Resampler
    public let layers: ModuleList<Projection>
    public let token_proj: Linear?
    /// The adapter's own image encoder when `config.imageEncoder.tuned`
    /// (attached before loading or training; see `attachImageEncoder`).
    public private(set) var image_encoder: CLIPVisionModel?

    public init(config: AdapterConfig, seed: UInt64 = 0) {
        self.config = config
        // Every inner layer draws its seed from `seed`, so the same config and seed give the same adapter.
        resampler = ParameterSeeds.scoped(seed) { Resampler(config: config.resampler, seed: seed) }
        let tokenWidth = config.resampler.outputDim
        layers = ParameterSeeds.scoped(seed &+ 1) {
            ModuleList(config.kind == .singleToken ? [] : config.layers.map { Projection(inputWidth: tokenWidth, width: $0.width) })
        }
        token_proj = config.kind == .singleToken ? Linear(tokenWidth, config.contextWidth ?? tokenWidth, seed: seed &+ 9) : nil
        super.init()
        child("resampler", resampler)
        child("layers", layers)
        if let token_proj { child("token_proj", token_proj) }
    }

    /// Gives a tuned adapter its image encoder (a model of the base folder's
    /// image-encoder architecture); its weights load and save with the adapter.
    public func attachImageEncoder(_ encoder: CLIPVisionModel) {
        precondition(config.imageEncoder.tuned && image_encoder == nil, "attachImageEncoder: only once, on a tuned adapter")
        image_encoder = child("image_encoder", encoder)
    }

    /// The hidden state of `config.imageEncoder.featureLayer` for CLIP input
    /// `pixels`, from the adapter's own encoder when it has one, else `shared`.
    /// Records gradients only when grad mode is on and the encoder is trainable.
    /// Runs only the encoder layers that feature needs.
    public func imageFeatures(pixels: Tensor, shared: CLIPVisionModel) -> Tensor {
        let encoder = image_encoder ?? shared
        let layer = config.imageEncoder.featureLayer
        let index = layer < 0 ? encoder.config.encoder.layers + 1 + layer : layer
        return encoder.forward(pixels: pixels, layers: index).hiddenStates[index]
    }

    /// Attaches a trainable copy of `shared` (without its projection, which
    /// the features never reach) to a tuned adapter.
    public func attachImageEncoder(copying shared: CLIPVisionModel) {
        let own = CLIPVisionModel(config: shared.config, withProjection: false)
        for (mine, theirs) in zip(own.vision_model.namedParameters(), shared.vision_model.namedParameters()) {
            mine.parameter.tensor.assign(theirs.parameter.tensor)
        }
        attachImageEncoder(own)
    }

    /// Reads `NAME.json` and `NAME.safetensors` (pass either path, or the stem).
    /// `imageEncoder`, the base folder's image-encoder config, is checked against
    /// the adapter (feature layer, width); a tuned adapter needs it to rebuild its encoder.
    public static func load(path: String, imageEncoder: CLIPVisionConfig? = nil) throws -> PersonalizationAdapter {
        let base = URL(fileURLWithPath: path).deletingPathExtension()
        let configURL = base.appendingPathExtension("json"), weightsURL = base.appendingPathExtension("safetensors")
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            throw ModelConfigError("\(path): adapter config \(configURL.lastPathComponent) not found")
        }
        let config = try AdapterConfig.load(from: configURL)
        if let imageEncoder {
            do { try config.validate(against: imageEncoder) } catch let error as ModelConfigError {
                throw ModelConfigError("\(configURL.path): \(error.description)")
            }
        }
        let weights = try SafeTensorsFile(path: weightsURL.path)
        if config.imageEncoder.tuned && imageEncoder == nil {
            throw ModelConfigError("\(path): the adapter carries its own image encoder; load it with the model's image-encoder config")
        }
        // Shapes are checked against the weights before anything is allocated.
        let make = {
            let adapter = PersonalizationAdapter(config: config)
            if config.imageEncoder.tuned, let imageEncoder {
                adapter.attachImageEncoder(CLIPVisionModel(config: imageEncoder, withProjection: false))
            }
            return adapter
        }
        let adapter: PersonalizationAdapter
        do {
            adapter = try Module.build(checkedAgainst: weights, make)
            try adapter.load(from: weights)
        } catch let error as WeightLoadingError {
            throw ModelConfigError("\(weightsURL.path): \(error.description)")
        }
        return adapter
    }

    /// Writes the adapter pair atomically; refuses to overwrite unless asked.
    /// `trainedWithUNet`: the digest of the UNet the adapter was trained together with, recorded in its config.
    public func save(path: String, overwrite: Bool = false, trainedWithUNet: String? = nil) throws {
        var config = self.config
        if let trainedWithUNet { config.trainedWithUNet = trainedWithUNet }
        let base = URL(fileURLWithPath: path).deletingPathExtension()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let configURL = base.appendingPathExtension("json")
        if FileManager.default.fileExists(atPath: configURL.path) && !overwrite {
            throw ModelConfigError("\(configURL.path) already exists; pass --overwrite to replace it")
        }
        try save(to: base.appendingPathExtension("safetensors").path, overwrite: overwrite)
        do { try encoder.encode(config).write(to: configURL, options: .atomic) } catch {
            throw ModelConfigError("\(configURL.path): cannot write (\(FileErrorText.reason(error)))")
        }
    }

    /// Encoder tokens E for subject image features (CLIP hidden states of `feature_layer`).
    public func encode(features: Tensor) -> Tensor { resampler(features) }

    /// Checks that the adapter's layers exist in this UNet with the widths it was made for.
    public func resolveLayers(in crossAttention: [(path: String, layer: Attention)]) throws -> [Attention] {
        let byPath = Dictionary(uniqueKeysWithValues: crossAttention.map { ($0.path, $0.layer) })
        return try config.layers.map { entry in
            guard let layer = byPath[entry.path] else {
                throw ModelConfigError("adapter '\(config.placeholderToken)': the UNet has no cross-attention layer '\(entry.path)' (made for a different base model?)")
            }
            let width = layer.heads * layer.dimHead
            guard width == entry.width else {
                throw ModelConfigError("adapter '\(config.placeholderToken)': layer '\(entry.path)' is \(width) wide, the adapter expects \(entry.width) (made for a different base model)")
            }
            return layer
        }
    }

    /// Per bound layer, the keys and values the adapter contributes for encoder tokens `tokens` ([B, M, D]).
    public func layerKeysValues(_ tokens: Tensor) -> [(keys: Tensor, values: Tensor)] {
        layers.items.map { ($0.to_k(tokens), $0.to_v(tokens)) }
    }

    /// The adapter layout for every cross-attention layer of a UNet, in order.
    public static func layers(for crossAttention: [(path: String, layer: Attention)]) -> [AdapterConfig.Layer] {
        crossAttention.map { AdapterConfig.Layer(path: $0.path, width: $0.layer.heads * $0.layer.dimHead) }
    }
}
