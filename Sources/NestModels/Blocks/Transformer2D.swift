import NestEngine

/// diffusers' GEGLU: one projection to twice the width, then value · gelu(gate).
public final class GEGLU: Module {
    public let proj: Linear

    public init(dimIn: Int, dimOut: Int) {
        proj = Linear(dimIn, 2 * dimOut)
        super.init()
        child("proj", proj)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { F.geglu(proj(x)) }
}

/// diffusers' FeedForward with a GEGLU: `net.0` (GEGLU), `net.1` (dropout, no
/// weights, hence no child), `net.2` (Linear back to `dim`).
public final class FeedForward: Module {
    public let geglu: GEGLU
    public let out: Linear

    public init(dim: Int, mult: Int = 4) {
        let inner = dim * mult
        geglu = GEGLU(dimIn: dim, dimOut: inner)
        out = Linear(inner, dim)
        super.init()
        let net = Module()
        net.child("0", geglu)
        net.child("2", out)
        child("net", net)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { out(geglu(x)) }
}

/// diffusers' BasicTransformerBlock with layer norms: self-attention (attn1),
/// cross-attention to the text (attn2), GEGLU feed-forward, each pre-normed
/// and residual. With `onlyCrossAttention`, attn1 also attends to the text.
public final class BasicTransformerBlock: Module {
    public let norm1: LayerNorm, attn1: Attention
    public let norm2: LayerNorm, attn2: Attention
    public let norm3: LayerNorm, ff: FeedForward
    public let onlyCrossAttention: Bool

    public init(dim: Int, heads: Int, headDim: Int, crossAttentionDim: Int, onlyCrossAttention: Bool = false) {
        norm1 = LayerNorm(dim, eps: 1e-5)
        attn1 = Attention(queryDim: dim, crossAttentionDim: onlyCrossAttention ? crossAttentionDim : nil,
                          heads: heads, dimHead: headDim, bias: false)
        norm2 = LayerNorm(dim, eps: 1e-5)
        attn2 = Attention(queryDim: dim, crossAttentionDim: crossAttentionDim, heads: heads, dimHead: headDim, bias: false)
        norm3 = LayerNorm(dim, eps: 1e-5)
        ff = FeedForward(dim: dim)
        self.onlyCrossAttention = onlyCrossAttention
        super.init()
        child("norm1", norm1); child("attn1", attn1)
        child("norm2", norm2); child("attn2", attn2)
        child("norm3", norm3); child("ff", ff)
    }

    /// x: [B, N, dim]; context: [B, M, crossAttentionDim].
    public func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        var h = attn1(norm1(x), context: onlyCrossAttention ? context : nil) + x
        h = attn2(norm2(h), context: context) + h
        return ff(norm3(h)) + h
    }
}

/// diffusers' Transformer2DModel over continuous (latent) input: GroupNorm,
/// a pointwise projection in (1×1 conv or Linear — the same map on
/// channels-last data, only the checkpoint layout differs), transformer
/// blocks over the H·W tokens, projection out, residual.
public final class Transformer2DModel: Module {
    public let norm: GroupNorm
    public let transformer_blocks: ModuleList<BasicTransformerBlock>
    private let projIn: PointwiseProjection
    private let projOut: PointwiseProjection

    public init(heads: Int, headDim: Int, inChannels: Int, layers: Int, crossAttentionDim: Int,
                normGroups: Int, useLinearProjection: Bool, onlyCrossAttention: Bool = false) {
        let inner = heads * headDim
        norm = GroupNorm(groups: normGroups, channels: inChannels, eps: 1e-6)
        projIn = PointwiseProjection(inChannels, inner, linear: useLinearProjection)
        transformer_blocks = ModuleList((0..<layers).map { _ in
            BasicTransformerBlock(dim: inner, heads: heads, headDim: headDim, crossAttentionDim: crossAttentionDim,
                                  onlyCrossAttention: onlyCrossAttention)
        })
        projOut = PointwiseProjection(inner, inChannels, linear: useLinearProjection)
        super.init()
        child("norm", norm)
        child("proj_in", projIn.module)
        child("transformer_blocks", transformer_blocks)
        child("proj_out", projOut.module)
    }

    /// x: [B, H, W, C]; context: [B, M, D]. Returns [B, H, W, C].
    public func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        let s = x.shape
        var h = projIn(norm(x).reshaped([s[0], s[1] * s[2], s[3]]))
        for block in transformer_blocks.items { h = block(h, context: context) }
        h = projOut(h)
        return h.reshaped([s[0], s[1], s[2], -1]) + x
    }
}

/// A channel-mixing projection stored either as nn.Linear ([out, in]) or as
/// a 1×1 nn.Conv2d ([out, in, 1, 1]); applied to [B, N, C] tokens either way.
private enum PointwiseProjection {
    case linear(Linear)
    case conv(Conv2d)

    init(_ inChannels: Int, _ outChannels: Int, linear: Bool) {
        self = linear ? .linear(Linear(inChannels, outChannels)) : .conv(Conv2d(inChannels, outChannels, kernelSize: 1))
    }

    var module: Module {
        switch self {
        case .linear(let l): return l
        case .conv(let c): return c
        }
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .linear(let l): return l(x)
        case .conv(let c):
            let y = Self.pointwise(c, x)
            if c.lowRankUpdates.isEmpty { return y }
            // The updates are convolutions over NHWC: view the tokens as a 1-pixel-high image.
            let s = x.shape
            return c.addingLowRank(y.reshaped([s[0], 1, s[1], -1]), input: x.reshaped([s[0], 1, s[1], s[2]])).reshaped(y.shape)
        }
    }

    private static func pointwise(_ c: Conv2d, _ x: Tensor) -> Tensor {
        if let b = c.bfloat16Weight, !x.needsGrad { return F.linear(x, bfloat16: b, bias: c.bias) }
        // The kernel [O, I, 1, 1] as [O, I] is a Linear weight.
        let w = c.computeWeight
        return F.linear(x, weight: w.reshaped([w.shape[0], w.shape[1]]), bias: c.bias)
    }
}
