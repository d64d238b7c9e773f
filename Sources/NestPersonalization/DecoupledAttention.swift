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

    /// Installs the branch on the layers the adapter names. `tokens`:
    /// [B, M, D], batch-aligned with the UNet's batch (recorded for gradients
    /// when training).
    public static func install(on unet: UNet2DConditionModel, adapter: PersonalizationAdapter, tokens: Tensor,
                               scale: Float) throws -> DecoupledAttentionBinding {
        guard adapter.config.kind == .ipAdapter else {
            throw ModelConfigError("adapter \(adapter.config.placeholderToken) is '\(adapter.config.kind.rawValue)', not ip-adapter")
        }
        let byPath = Dictionary(unet.crossAttentionLayers.map { ($0.path, $0.layer) }, uniquingKeysWith: { a, _ in a })
        var installed: [(Attention, IPAdapterProcessor)] = []
        for (i, spec) in adapter.config.layers.enumerated() {
            guard let layer = byPath[spec.path] else {
                for (l, p) in installed { l.processor = p.replaced }
                throw ModelConfigError("adapter \(adapter.config.placeholderToken): the UNet has no cross-attention layer \(spec.path)")
            }
            let processor = IPAdapterProcessor(scale: scale, replacing: layer.processor)
            processor.imageKeys = adapter.layers[i].to_k(tokens)
            processor.imageValues = adapter.layers[i].to_v(tokens)
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
