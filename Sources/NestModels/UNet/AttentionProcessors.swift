/// The one way to change a UNet's attention processors (as diffusers' `set_attn_processor`),
/// scoped: whatever is set for a piece of work is undone when it ends, also when it throws.
/// Every layer's previous processor comes back, so a change made inside the scope
/// (a recorder wrapped around a processor, say) cannot outlive it either.
extension UNet2DConditionModel {
    /// Each attention layer's processor by its `attn_processors` key (`….attn2.processor`).
    public var attentionProcessors: [String: AttentionProcessor] {
        Dictionary(attentionLayers.map { ($0.path, $0.layer.processor) }, uniquingKeysWith: { first, _ in first })
    }

    /// Runs `body` with the layers named in `processors` (by `attn_processors` key) using
    /// those processors and every other layer its own; afterwards each layer has again the
    /// processor it had before. A key that names no attention layer is refused, by name,
    /// before anything changes.
    public func withAttentionProcessors<Result>(_ processors: [String: AttentionProcessor],
                                                _ body: () throws -> Result) throws -> Result {
        let layers = attentionLayers
        let known = Set(layers.map(\.path))
        if let unknown = processors.keys.sorted().first(where: { !known.contains($0) }) {
            throw ModelConfigError("no attention layer \(unknown) in this UNet")
        }
        return try withAttentionProcessors({ path, _ in processors[path] }, body)
    }

    /// The same with the processors chosen layer by layer: `choose` gets each layer's key and
    /// layer and returns its processor for the scope, or nil to leave the layer as it is.
    public func withAttentionProcessors<Result>(_ choose: (String, Attention) -> AttentionProcessor?,
                                                _ body: () throws -> Result) rethrows -> Result {
        let layers = attentionLayers
        let previous = layers.map { ($0.layer, $0.layer.processor) }
        defer { for (layer, processor) in previous { layer.processor = processor } }
        for (path, layer) in layers { if let processor = choose(path, layer) { layer.processor = processor } }
        return try body()
    }
}
