import NestEngine

/// CLIP's multi-head self-attention (q_proj, k_proj, v_proj, out_proj, all with bias).
public final class CLIPAttention: Module {
    public let heads: Int
    public let q_proj: Linear, k_proj: Linear, v_proj: Linear, out_proj: Linear

    public init(hiddenSize: Int, heads: Int) {
        self.heads = heads
        q_proj = Linear(hiddenSize, hiddenSize)
        k_proj = Linear(hiddenSize, hiddenSize)
        v_proj = Linear(hiddenSize, hiddenSize)
        out_proj = Linear(hiddenSize, hiddenSize)
        super.init()
        child("k_proj", k_proj); child("v_proj", v_proj); child("q_proj", q_proj); child("out_proj", out_proj)
    }

    /// x: [B, N, D]. `causal`: each token sees only itself and earlier tokens (the text tower).
    public func callAsFunction(_ x: Tensor, causal: Bool) -> Tensor {
        let out = F.attention(query: q_proj(x), key: k_proj(x), value: v_proj(x), heads: heads, causal: causal)
        return out_proj(out)
    }
}

/// fc1 → activation → fc2.
public final class CLIPMLP: Module {
    public let fc1: Linear, fc2: Linear
    public let activation: CLIPActivation

    public init(hiddenSize: Int, intermediateSize: Int, activation: CLIPActivation) {
        fc1 = Linear(hiddenSize, intermediateSize)
        fc2 = Linear(intermediateSize, hiddenSize)
        self.activation = activation
        super.init()
        child("fc1", fc1); child("fc2", fc2)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { fc2(activation(fc1(x))) }
}

/// A pre-norm transformer layer: x + attn(ln1(x)), then + mlp(ln2(·)).
public final class CLIPEncoderLayer: Module {
    public let self_attn: CLIPAttention
    public let layer_norm1: LayerNorm
    public let mlp: CLIPMLP
    public let layer_norm2: LayerNorm

    public init(_ shape: CLIPEncoderShape) {
        self_attn = CLIPAttention(hiddenSize: shape.hiddenSize, heads: shape.heads)
        layer_norm1 = LayerNorm(shape.hiddenSize, eps: shape.layerNormEps)
        mlp = CLIPMLP(hiddenSize: shape.hiddenSize, intermediateSize: shape.intermediateSize,
                      activation: shape.activation)
        layer_norm2 = LayerNorm(shape.hiddenSize, eps: shape.layerNormEps)
        super.init()
        child("self_attn", self_attn); child("layer_norm1", layer_norm1)
        child("mlp", mlp); child("layer_norm2", layer_norm2)
    }

    public func callAsFunction(_ x: Tensor, causal: Bool) -> Tensor {
        let h = x + self_attn(layer_norm1(x), causal: causal)
        return h + mlp(layer_norm2(h))
    }
}

/// The stack of encoder layers (`encoder.layers.N`).
public final class CLIPEncoder: Module {
    public let layers: ModuleList<CLIPEncoderLayer>

    public init(_ shape: CLIPEncoderShape) {
        layers = ModuleList((0..<shape.layers).map { _ in CLIPEncoderLayer(shape) })
        super.init()
        child("layers", layers)
    }

    /// Runs the first `count` layers (all by default) and returns every state as
    /// transformers' `output_hidden_states` does: the input first, then each
    /// layer's output, so `count + 1` tensors.
    public func callAsFunction(_ x: Tensor, causal: Bool, count: Int? = nil) -> [Tensor] {
        let n = count ?? layers.count
        precondition(n >= 0 && n <= layers.count, "asked for \(n) of \(layers.count) encoder layers")
        var states = [x]
        for i in 0..<n { states.append(layers[i](states[i], causal: causal)) }
        return states
    }
}
