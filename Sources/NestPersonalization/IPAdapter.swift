import Foundation
import NestEngine
import NestIO
import NestModels

/// IP-Adapter (decoupled cross-attention) from an original single-file
/// checkpoint such as `ip-adapter_sd15.safetensors` or
/// `ip-adapter-plus_sd15.safetensors`. Parameter paths are the file's tensor
/// names: `image_proj.*` (plain projection or Plus resampler) and
/// `ip_adapter.N.to_k_ip.weight` / `to_v_ip.weight`, where the k-th
/// cross-attention of the UNet (diffusers' `attn_processors` order) reads
/// N = 2k+1.
///
/// Use per generation: `imageTokens` (or `guidanceTokens`) for the reference
/// image, then `processors(for:tokens:scale:over:)`, which projects the tokens to
/// each layer's image keys and values once, set for the generation with
/// `unet.withAttentionProcessors` (or `install` … `uninstall(from:)` by hand).
public final class IPAdapter: Module {
    /// The projection from image-encoder output to context tokens.
    public enum ImageProjection {
        case plain(IPAdapterImageProjection)
        case plus(Resampler)
    }

    /// One layer's `to_k_ip` / `to_v_ip` (bias-free, [width, crossAttentionDim]).
    public final class AttentionWeights: Module {
        public let to_k_ip: Linear, to_v_ip: Linear
        init(crossAttentionDim: Int, width: Int) {
            to_k_ip = Linear(crossAttentionDim, width, bias: false)
            to_v_ip = Linear(crossAttentionDim, width, bias: false)
            super.init()
            child("to_k_ip", to_k_ip); child("to_v_ip", to_v_ip)
        }
    }

    public let layout: IPAdapterLayout
    public let imageProjection: ImageProjection
    /// By number N (1, 3, 5, …).
    public let attentionWeights: [Int: AttentionWeights]

    public var crossAttentionDim: Int { layout.crossAttentionDim }
    /// True for Plus (reads penultimate hidden states), false for plain (reads image_embeds).
    public var readsHiddenStates: Bool { if case .plus = layout.projection { return true } else { return false } }

    /// An adapter with default weights for `layout` (what `load` fills).
    public init(layout: IPAdapterLayout) {
        self.layout = layout
        let projectionModule: Module
        switch layout.projection {
        case let .plain(embedDim, tokens):
            let p = IPAdapterImageProjection(imageEmbedDim: embedDim, tokens: tokens, width: layout.crossAttentionDim)
            imageProjection = .plain(p); projectionModule = p
        case let .plus(config):
            let r = Resampler(config: config)
            imageProjection = .plus(r); projectionModule = r
        }
        var weights: [Int: AttentionWeights] = [:]
        let container = Module()
        for layer in layout.layers {
            let w = AttentionWeights(crossAttentionDim: layout.crossAttentionDim, width: layer.width)
            weights[layer.number] = w
            container.child(String(layer.number), w)
        }
        attentionWeights = weights
        super.init()
        child("image_proj", projectionModule)
        child("ip_adapter", container)
    }

    /// Reads an original single-file IP-Adapter (`.safetensors`).
    public static func load(path: URL) throws -> IPAdapter {
        if path.pathExtension == "bin" {
            throw IPAdapterError("\(path.lastPathComponent): .bin (pickle) IP-Adapter files are not read; use the .safetensors release")
        }
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path.path) } catch { throw IPAdapterError("\(error)") }
        do { return try load(source: file) } catch let e as IPAdapterError {
            throw IPAdapterError("\(path.lastPathComponent): \(e.description)")
        }
    }

    /// Reads the layout from the tensors' names and shapes, then loads every tensor strictly.
    public static func load(source: WeightSource) throws -> IPAdapter {
        let layout = try IPAdapterLayout.read(source)
        do {
            // Shapes are compared with the file's before the adapter is allocated.
            let adapter = try Module.build(checkedAgainst: source) { IPAdapter(layout: layout) }
            try adapter.load(from: source)
            return adapter
        } catch { throw IPAdapterError("\(error)") }
    }

    /// Context tokens for reference images: plain reads CLIP `image_embeds` [B, D]
    /// (or [B, n, D] for n images), Plus reads penultimate hidden states [B, S, D]
    /// (or [B, n, S, D]). Returns [B, n·tokens, crossAttentionDim]: several
    /// images' tokens side by side, as diffusers' processor concatenates them.
    public func imageTokens(_ features: Tensor) -> Tensor {
        let s = features.shape
        switch imageProjection {
        case let .plain(p):
            let dim = p.imageEmbedDim
            precondition((s.count == 2 || s.count == 3) && s.last == dim,
                         "IP-Adapter: image embeds must be [B, \(dim)] or [B, n, \(dim)], got \(s)")
            return p(features.reshaped([-1, dim])).reshaped([s[0], -1, crossAttentionDim])
        case let .plus(r):
            let dim = r.config.embeddingDim
            precondition((s.count == 3 || s.count == 4) && s.last == dim,
                         "IP-Adapter Plus: hidden states must be [B, S, \(dim)] or [B, n, S, \(dim)], got \(s)")
            return r(features.reshaped([-1, s[s.count - 2], dim])).reshaped([s[0], -1, crossAttentionDim])
        }
    }

    /// The UNet's decoupled cross-attentions, each with its `ip_adapter.N` weights;
    /// throws one line naming the key or layer when the file does not fit this UNet.
    public func bindings(for unet: UNet2DConditionModel) throws -> [(path: String, layer: Attention, weights: AttentionWeights)] {
        let layers = Dictionary(uniqueKeysWithValues: unet.attentionLayers.map { ($0.path, $0.layer) })
        let numbered = IPAdapterLayout.keyNumbers(attentionPaths: unet.attentionLayers.map(\.path))
        let unetCross = numbered.first.map { layers[$0.path]!.to_k.weight.shape[1] }
        if let unetCross, unetCross != crossAttentionDim {
            throw IPAdapterError("IP-Adapter tokens are \(crossAttentionDim) wide but this UNet's cross-attention is "
                                 + "\(unetCross) wide: the adapter was made for a different base model")
        }
        let expected = numbered.map(\.number), present = layout.layers.map(\.number)
        if let extra = present.first(where: { !expected.contains($0) }) {
            throw IPAdapterError("ip_adapter.\(extra) has no layer in this UNet (it has \(expected.count) cross-attentions, "
                                 + "ip_adapter.1 … ip_adapter.\(expected.last ?? 0)): the adapter was made for a different base model")
        }
        return try numbered.map { path, n in
            let layer = layers[path]!
            let name = path.replacingOccurrences(of: ".processor", with: "")
            guard let w = attentionWeights[n] else { throw IPAdapterError("ip_adapter.\(n).to_k_ip.weight is missing (for \(name))") }
            let want = [layer.to_k.weight.shape[0], layer.to_k.weight.shape[1]]
            guard w.to_k_ip.weight.shape == want else {
                throw IPAdapterError("ip_adapter.\(n).to_k_ip.weight is \(w.to_k_ip.weight.shape) but \(name) needs \(want): "
                                     + "the adapter was made for a different base model")
            }
            return (path, layer, w)
        }
    }

    /// Puts an `IPAdapterProcessor` on every decoupled cross-attention with
    /// K_ip = to_k_ip(tokens) and V_ip = to_v_ip(tokens) computed here, once.
    /// `tokens` [B, T, crossAttentionDim] must be batch-aligned with the UNet's
    /// batch (under guidance [uncond…, cond…], see `guidanceTokens`). Installing
    /// again replaces the tokens and scale; `uninstall` restores what was there first.
    public func install(on unet: UNet2DConditionModel, tokens: Tensor, scale: Float) throws {
        let processors = try processors(for: unet, tokens: tokens, scale: scale, over: unet.attentionProcessors)
        for (path, layer) in unet.attentionLayers { if let processor = processors[path] { layer.processor = processor } }
    }

    /// The processors `install` would set, each wrapping the processor `current` has at its
    /// layer (or taking over an IP-Adapter processor there), for `withAttentionProcessors`.
    public func processors(for unet: UNet2DConditionModel, tokens: Tensor, scale: Float,
                           over current: [String: AttentionProcessor]) throws -> [String: AttentionProcessor] {
        guard tokens.rank == 3, tokens.shape[2] == crossAttentionDim else {
            throw IPAdapterError("IP-Adapter tokens must be [B, T, \(crossAttentionDim)], got \(tokens.shape)")
        }
        var out: [String: AttentionProcessor] = [:]
        for (path, _, w) in try bindings(for: unet) {
            let previous = current[path] ?? PlainAttentionProcessor()
            let processor = (previous as? IPAdapterProcessor) ?? IPAdapterProcessor(scale: scale, replacing: previous)
            processor.imageKeys = w.to_k_ip(tokens)
            processor.imageValues = w.to_v_ip(tokens)
            processor.scale = scale
            out[path] = processor
        }
        return out
    }

    /// Changes the scale of an installed adapter without recomputing keys and values.
    public func setScale(_ scale: Float, on unet: UNet2DConditionModel) {
        for (_, layer) in unet.attentionLayers { (layer.processor as? IPAdapterProcessor)?.scale = scale }
    }

    /// Restores the processors `install` replaced (plain ones for a fresh UNet).
    public func uninstall(from unet: UNet2DConditionModel) {
        for (_, layer) in unet.attentionLayers {
            if let ip = layer.processor as? IPAdapterProcessor { layer.processor = ip.replaced }
        }
    }
}
