import NestEngine
import NestModels

/// The IP-Adapter-style baseline on our own encoder: each bound
/// cross-attention layer adds a second attention over the subject's encoder
/// tokens, out = Attention(Q, K, V) + scale · Attention(Q, E·W_K, E·W_V),
/// for every query alike and wherever the subject is — where Nested
/// Attention instead changes only the subject token's value, per query.
/// The projections are the adapter's `layers.N.to_k` / `to_v`.
public struct DecoupledAttentionBinding {
    let installed: [(layer: Attention, processor: IPAdapterProcessor)]

    /// The branch's processors on the layers the adapter names, each wrapping the processor
    /// `current` has there, for `UNet2DConditionModel.withAttentionProcessors`. `tokens`:
    /// [B, M, D], batch-aligned with the UNet's batch (recorded for gradients when training).
    public static func processors(on unet: UNet2DConditionModel, adapter: PersonalizationAdapter, tokens: Tensor, scale: Float,
                                  over current: [String: AttentionProcessor]) throws -> [String: AttentionProcessor] {
        guard adapter.config.kind == .ipAdapter else {
            throw ModelConfigError("adapter \(adapter.config.placeholderToken) is '\(adapter.config.kind.rawValue)', not ip-adapter")
        }
        let crossAttention = Set(unet.crossAttentionLayers.map(\.path))
        var out: [String: AttentionProcessor] = [:]
        for (i, spec) in adapter.config.layers.enumerated() {
            guard crossAttention.contains(spec.path), let replaced = out[spec.path] ?? current[spec.path] else {
                throw ModelConfigError("adapter \(adapter.config.placeholderToken): the UNet has no cross-attention layer \(spec.path)")
            }
            let processor = IPAdapterProcessor(scale: scale, replacing: replaced)
            processor.imageKeys = adapter.layers[i].to_k(tokens)
            processor.imageValues = adapter.layers[i].to_v(tokens)
            out[spec.path] = processor
        }
        return out
    }

    /// `processors`, set until `uninstall` (for code that cannot wrap its work in a scope).
    public static func install(on unet: UNet2DConditionModel, adapter: PersonalizationAdapter, tokens: Tensor,
                               scale: Float) throws -> DecoupledAttentionBinding {
        let processors = try processors(on: unet, adapter: adapter, tokens: tokens, scale: scale, over: unet.attentionProcessors)
        var installed: [(Attention, IPAdapterProcessor)] = []
        for (path, layer) in unet.crossAttentionLayers {
            guard let processor = processors[path] as? IPAdapterProcessor else { continue }
            layer.processor = processor
            installed.append((layer, processor))
        }
        return DecoupledAttentionBinding(installed: installed)
    }

    /// Puts the replaced processors back.
    public func uninstall() {
        for (layer, processor) in installed.reversed() { layer.processor = processor.replaced }
    }
}

extension PersonalizationAdapter {
    /// Encoder tokens of "no image" (zero CLIP features), the unconditional
    /// input of the decoupled branch, as IP-Adapter uses zero image embeddings.
    public func emptyTokens(featureCount: Int) -> Tensor {
        encode(features: Tensor(zeros: [1, featureCount, config.imageEncoder.hiddenSize]))
    }
}
