import NestEngine
import Synchronization

/// How an `Attention` layer turns its projections into an output. The plain
/// processor is standard multi-head attention; personalization methods
/// (Nested Attention, IP-Adapter) supply their own, keeping the layer's
/// weights and module path unchanged.
public protocol AttentionProcessor: AnyObject {
    /// hidden: [B, N, query_dim]; context: [B, M, cross_dim] for cross-attention,
    /// nil for self-attention. Returns [B, N, query_dim] after `to_out`.
    func attend(_ layer: Attention, hidden: Tensor, context: Tensor?) -> Tensor
}

/// softmax(QKᵀ/√d)·V per head, then the output projection.
public final class PlainAttentionProcessor: AttentionProcessor {
    public init() {}
    public func attend(_ layer: Attention, hidden: Tensor, context: Tensor?) -> Tensor {
        let q = layer.to_q(hidden)
        let (k, v) = context.map { layer.contextProjections($0) } ?? (layer.to_k(hidden), layer.to_v(hidden))
        // Layers stored as bfloat16 (storeWeightsAsBFloat16) attend in bfloat16 too.
        let out = F.attention(query: q, key: k, value: v, heads: layer.heads,
                              bfloat16: layer.to_q.bfloat16Weight != nil)
        return layer.to_out[0](out)
    }
}

/// diffusers' `Attention` module (to_q, to_k, to_v, to_out.0, optional
/// group_norm), for the UNet's self- and cross-attention and the VAE's
/// mid-block attention. Upcasting options are no-ops: the engine computes
/// attention in float32 already.
public final class Attention: Module {
    public let heads: Int
    public let dimHead: Int
    public let to_q: Linear, to_k: Linear, to_v: Linear
    public let to_out: ModuleList<Linear>
    public let group_norm: GroupNorm?
    public let residualConnection: Bool
    public let rescaleOutputFactor: Float
    /// True when keys and values come from a context (text) rather than the input.
    public let isCrossAttention: Bool
    /// The swappable computation (plain by default).
    public var processor: AttentionProcessor = PlainAttentionProcessor()

    public init(queryDim: Int, crossAttentionDim: Int? = nil, heads: Int, dimHead: Int, bias: Bool = false,
                outBias: Bool = true, normGroups: Int? = nil, eps: Float = 1e-5,
                residualConnection: Bool = false, rescaleOutputFactor: Float = 1) {
        self.heads = heads
        self.dimHead = dimHead
        let inner = heads * dimHead
        let kvDim = crossAttentionDim ?? queryDim
        to_q = Linear(queryDim, inner, bias: bias)
        to_k = Linear(kvDim, inner, bias: bias)
        to_v = Linear(kvDim, inner, bias: bias)
        to_out = ModuleList([Linear(inner, queryDim, bias: outBias)])
        group_norm = normGroups.map { GroupNorm(groups: $0, channels: queryDim, eps: eps) }
        self.residualConnection = residualConnection
        self.rescaleOutputFactor = rescaleOutputFactor
        isCrossAttention = crossAttentionDim != nil
        super.init()
        if let group_norm { child("group_norm", group_norm) }
        child("to_q", to_q); child("to_k", to_k); child("to_v", to_v); child("to_out", to_out)
    }

    /// The last context's keys and values, reused while a generation passes
    /// the same context tensor at every step.
    private var projected: (scope: Int, context: Tensor, k: Tensor, v: Tensor)?

    /// to_k(context), to_v(context). Inside `ContextProjections.reusing`
    /// (the pipelines' step loops) they are computed once per context
    /// tensor rather than once per step; never while gradients are recorded.
    public func contextProjections(_ context: Tensor) -> (k: Tensor, v: Tensor) {
        let scope = ContextProjections.activeScope
        if scope != 0, let p = projected, p.scope == scope, p.context === context { return (p.k, p.v) }
        let k = to_k(context), v = to_v(context)
        projected = scope != 0 && !k.needsGrad && !v.needsGrad ? (scope, context, k, v) : nil
        return (k, v)
    }

    /// x: [B, N, C] tokens, or [B, H, W, C] (spatial, as in the VAE). context: [B, M, D] or nil.
    public func callAsFunction(_ x: Tensor, context: Tensor? = nil) -> Tensor {
        let spatialShape = x.rank == 4 ? x.shape : nil
        var h = x
        if let group_norm { h = group_norm(h) }
        if let s = spatialShape { h = h.reshaped([s[0], s[1] * s[2], s[3]]) }
        var out = processor.attend(self, hidden: h, context: context)
        if let s = spatialShape { out = out.reshaped(s) }
        if residualConnection { out = out + x }
        return rescaleOutputFactor == 1 ? out : out.scaled(1 / rescaleOutputFactor)
    }
}

/// Marks a stretch of work (a generation's step loop) during which the
/// attention layers' weights do not change, so cross-attention keys and
/// values of a context can be computed once and reused.
/// The scope is task-local, so concurrent generations (and tests) do not see
/// each other's.
public enum ContextProjections {
    @TaskLocal static var activeScope = 0
    static let scopes = Atomic<Int>(0)

    public static func reusing<T>(_ body: () throws -> T) rethrows -> T {
        let scope = scopes.wrappingAdd(1, ordering: .relaxed).newValue
        return try $activeScope.withValue(scope) { try body() }
    }
}
