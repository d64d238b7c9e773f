import NestEngine

/// The Perceiver-style resampler of IP-Adapter Plus, which Nested Attention
/// also uses as its subject encoder: M learned queries attend, layer after
/// layer, to the image features (CLIP's penultimate hidden states) and to
/// themselves, then are projected to the output width.
///
/// Parameter names follow the original IP-Adapter files (`latents`,
/// `proj_in`, `layers.N.0.{norm1,norm2,to_q,to_kv,to_out}`,
/// `layers.N.1.{0,1,3}`, `proj_out`, `norm_out`), so real IP-Adapter-Plus
/// weights load by name (under the `image_proj.` prefix).
public final class Resampler: Module {
    public struct Config: Codable, Sendable, Equatable {
        /// Width of the image features fed in (CLIP vision hidden size).
        public var embeddingDim: Int
        /// Internal width of the queries.
        public var width: Int
        /// Width of the output tokens (the UNet's cross-attention width for IP-Adapter).
        public var outputDim: Int
        public var depth: Int
        public var heads: Int
        public var headDim: Int
        /// M: how many tokens come out.
        public var queries: Int
        public var ffMult: Int

        public init(embeddingDim: Int, width: Int, outputDim: Int, depth: Int, heads: Int, headDim: Int = 64,
                    queries: Int, ffMult: Int = 4) {
            self.embeddingDim = embeddingDim; self.width = width; self.outputDim = outputDim; self.depth = depth
            self.heads = heads; self.headDim = headDim; self.queries = queries; self.ffMult = ffMult
        }

        enum CodingKeys: String, CodingKey {
            case embeddingDim = "embedding_dim", width, outputDim = "output_dim", depth, heads
            case headDim = "head_dim", queries, ffMult = "ff_mult"
        }
    }

    /// Queries attend to [features, queries] (keys and values from one projection).
    public final class PerceiverAttention: Module {
        let norm1: LayerNorm, norm2: LayerNorm
        let to_q: Linear, to_kv: Linear, to_out: Linear
        let heads: Int

        init(width: Int, heads: Int, headDim: Int) {
            self.heads = heads
            norm1 = LayerNorm(width); norm2 = LayerNorm(width)
            to_q = Linear(width, heads * headDim, bias: false)
            to_kv = Linear(width, 2 * heads * headDim, bias: false)
            to_out = Linear(heads * headDim, width, bias: false)
            super.init()
            child("norm1", norm1); child("norm2", norm2)
            child("to_q", to_q); child("to_kv", to_kv); child("to_out", to_out)
        }

        func callAsFunction(features: Tensor, latents: Tensor) -> Tensor {
            let x = norm1(features), l = norm2(latents)
            let kv = to_kv(F.concat([x, l], axis: 1)).chunked(2, axis: -1)
            return to_out(F.attention(query: to_q(l), key: kv[0], value: kv[1], heads: heads))
        }
    }

    /// LayerNorm → Linear → GELU → Linear, indices 0, 1, 3 as in the original Sequential.
    public final class FeedForward: Module {
        let norm: LayerNorm, up: Linear, down: Linear

        init(width: Int, mult: Int) {
            norm = LayerNorm(width)
            up = Linear(width, width * mult, bias: false)
            down = Linear(width * mult, width, bias: false)
            super.init()
            child("0", norm); child("1", up); child("3", down)
        }

        func callAsFunction(_ x: Tensor) -> Tensor { down(F.gelu(up(norm(x)))) }
    }

    /// One depth step: children "0" (attention) and "1" (feed-forward).
    public final class Layer: Module {
        let attention: PerceiverAttention, feedForward: FeedForward
        init(_ c: Config) {
            attention = PerceiverAttention(width: c.width, heads: c.heads, headDim: c.headDim)
            feedForward = FeedForward(width: c.width, mult: c.ffMult)
            super.init()
            child("0", attention); child("1", feedForward)
        }
    }

    public let config: Config
    public let latents: Tensor
    let proj_in: Linear, proj_out: Linear, norm_out: LayerNorm
    let layers: ModuleList<Layer>

    public init(config: Config, seed: UInt64 = 0) {
        self.config = config
        let shape = [1, config.queries, config.width]
        latents = ParameterShapes.make(shape) { Tensor.randn(shape, seed: seed, std: 1 / Float(config.width).squareRoot()) }
        proj_in = Linear(config.embeddingDim, config.width, seed: seed &+ 1)
        proj_out = Linear(config.width, config.outputDim, seed: seed &+ 2)
        norm_out = LayerNorm(config.outputDim)
        layers = ModuleList((0..<config.depth).map { _ in Layer(config) })
        super.init()
        parameter("latents", latents)
        child("proj_in", proj_in); child("proj_out", proj_out); child("norm_out", norm_out); child("layers", layers)
    }

    /// features: [B, S, embeddingDim] → [B, queries, outputDim].
    public func callAsFunction(_ features: Tensor) -> Tensor {
        let b = features.shape[0]
        let x = proj_in(features)
        var l = Tensor(zeros: [b, config.queries, config.width]) + latents
        for layer in layers.items {
            l = layer.attention(features: x, latents: l) + l
            l = layer.feedForward(l) + l
        }
        return norm_out(proj_out(l))
    }
}

extension Resampler {
    /// For each output query, how much the last layer attends to each input
    /// feature token (head-averaged, renormalized over the features): [queries][S].
    /// Used to trace nested attention back to the reference image's patches.
    public func featureAttention(_ features: Tensor) -> [[Float]] {
        Autograd.noGrad {
            let x = proj_in(features.slice(axis: 0, 0..<1))
            var l = latents
            for (index, layer) in layers.items.enumerated() {
                if index == layers.count - 1 {
                    let a = layer.attention
                    let xs = a.norm1(x), ls = a.norm2(l)
                    let q = a.to_q(ls), kv = a.to_kv(F.concat([xs, ls], axis: 1)).chunked(2, axis: -1)
                    let heads = a.heads, width = q.shape[2], d = width / heads
                    let s = x.shape[1], total = kv[0].shape[1]
                    var result = [[Float]](repeating: [Float](repeating: 0, count: s), count: config.queries)
                    for m in 0..<config.queries {
                        for h in 0..<heads {
                            var logits = [Float](repeating: 0, count: total)
                            for t in 0..<total {
                                var dot: Float = 0
                                for c in 0..<d { dot += q.data[m * width + h * d + c] * kv[0].data[t * width + h * d + c] }
                                logits[t] = dot / Float(d).squareRoot()
                            }
                            let top = logits.max()!
                            let e = logits.map { exp($0 - top) }
                            let featureMass = e.prefix(s).reduce(0, +)
                            for t in 0..<s { result[m][t] += e[t] / featureMass / Float(heads) }
                        }
                    }
                    return result
                }
                l = layer.attention(features: x, latents: l) + l
                l = layer.feedForward(l) + l
            }
            return []
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
