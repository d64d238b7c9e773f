import NestEngine
import NestModels

/// Cross-attention with Nested Attention: the layer's own queries, keys and
/// values, with each subject token's value replaced per query (see
/// `nestedCrossAttention`). Subjects are set once per generation.
public final class NestedAttentionProcessor: AttentionProcessor {
    public var subjects: [NestedSubject] = []
    /// The subjects' placeholder tokens, in the same order (for recording their attention).
    public var placeholderTokens: [String] = []
    public var options: NestedAttentionOptions

    public init(options: NestedAttentionOptions = .init()) { self.options = options }

    public func attend(_ layer: Attention, hidden: Tensor, context: Tensor?) -> Tensor {
        guard let context else {
            return PlainAttentionProcessor().attend(layer, hidden: hidden, context: nil)
        }
        let q = layer.to_q(hidden), (k, v) = layer.contextProjections(context)
        let out = nestedCrossAttention(query: q, key: k, value: v, heads: layer.heads, subjects: subjects, options: options)
        return layer.to_out[0](out)
    }
}
