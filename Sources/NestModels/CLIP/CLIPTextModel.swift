import Foundation
import NestEngine
import NestIO

/// What a CLIP text encoder returns, named as transformers names it.
public struct CLIPTextOutput {
    /// [B, T, D]: the last computed state after `final_layer_norm`.
    public let lastHiddenState: Tensor
    /// The embeddings, then each layer's output ([B, T, D] each, no final
    /// norm): `hiddenStates[hiddenStates.count - 2]` is the penultimate state SDXL uses.
    public let hiddenStates: [Tensor]
    /// [B, D]: `lastHiddenState` at each row's end-of-text position.
    public let pooled: Tensor
    /// [B, projection_dim]: `pooled` through `text_projection` (WithProjection checkpoints only).
    public let textEmbeds: Tensor?
    /// The position pooled in each row.
    public let eosPositions: [Int]
}

/// Token plus learned absolute position embeddings.
public final class CLIPTextEmbeddings: Module {
    public let token_embedding: Embedding
    public let position_embedding: Embedding

    public init(vocabSize: Int, positions: Int, hiddenSize: Int) {
        token_embedding = Embedding(vocabSize, hiddenSize)
        position_embedding = Embedding(positions, hiddenSize)
        super.init()
        child("token_embedding", token_embedding); child("position_embedding", position_embedding)
    }

    /// Embeddings of tokens added after the vocabulary (personalization
    /// placeholders), by id; each starts as a copy of an existing token's row.
    public private(set) var addedTokens: [Int: [Float]] = [:]

    /// Gives token `id` (which may lie beyond the vocabulary) the embedding of `source`.
    public func setTokenEmbedding(id: Int, copyingFrom source: Int) throws {
        let (vocab, dim) = (token_embedding.weight.shape[0], token_embedding.weight.shape[1])
        guard source >= 0 && source < vocab else {
            throw ModelConfigError("token \(source) is outside the text encoder's vocabulary of \(vocab)")
        }
        guard id >= 0 else { throw ModelConfigError("negative token id \(id)") }
        addedTokens[id] = Array(UnsafeBufferPointer(start: token_embedding.weight.data + source * dim, count: dim))
    }

    /// Gives token `id` a learned vector (a textual-inversion embedding).
    public func setTokenEmbedding(id: Int, vector: [Float]) throws {
        let dim = token_embedding.weight.shape[1]
        guard vector.count == dim else { throw ModelConfigError("an embedding of \(vector.count) values for a text encoder of width \(dim)") }
        guard id >= 0 else { throw ModelConfigError("negative token id \(id)") }
        addedTokens[id] = vector
    }

    /// Forgets an added token's embedding.
    public func removeTokenEmbedding(id: Int) { addedTokens[id] = nil }

    /// ids: B rows of T tokens → [B, T, D].
    public func callAsFunction(_ ids: [Int], batch: Int, length: Int) -> Tensor {
        let positions = position_embedding.weight.slice(axis: 0, 0..<length)
        let vocab = token_embedding.weight.shape[0], dim = token_embedding.weight.shape[1]
        let known = ids.map { addedTokens[$0] != nil && $0 >= vocab ? 0 : $0 }
        var tokens = token_embedding(known, shape: [batch, length])
        if ids.contains(where: { addedTokens[$0] != nil }) {
            // Replace the rows of added tokens (constants: they are not trained here).
            let delta = Tensor(zeros: [batch, length, dim])
            for (i, id) in ids.enumerated() {
                guard let row = addedTokens[id] else { continue }
                let current = token_embedding.weight.data + known[i] * dim
                for j in 0..<dim { delta.data[i * dim + j] = row[j] - current[j] }
            }
            tokens = tokens + delta
        }
        return tokens + positions
    }
}

/// transformers' `CLIPTextTransformer` (the `text_model` of a checkpoint).
public final class CLIPTextTransformer: Module {
    public let config: CLIPTextConfig
    public let embeddings: CLIPTextEmbeddings
    public let encoder: CLIPEncoder
    public let final_layer_norm: LayerNorm

    public init(config: CLIPTextConfig) {
        self.config = config
        let shape = config.encoder
        embeddings = CLIPTextEmbeddings(vocabSize: config.vocabSize, positions: config.maxPositionEmbeddings,
                                        hiddenSize: shape.hiddenSize)
        encoder = CLIPEncoder(shape)
        final_layer_norm = LayerNorm(shape.hiddenSize, eps: shape.layerNormEps)
        super.init()
        child("embeddings", embeddings); child("encoder", encoder); child("final_layer_norm", final_layer_norm)
    }

    /// Where transformers pools each row. Configs with `eos_token_id == 2` were
    /// written before transformers fixed that id, so it keeps their old rule:
    /// the first position of the largest id (the tokenizer's end token is its
    /// largest). Any other id: the first position holding it, 0 when absent.
    public func eosPositions(_ ids: [[Int]]) -> [Int] {
        ids.map { row in
            if config.eosTokenId == 2 {
                var best = 0
                for (i, id) in row.enumerated() where id > row[best] { best = i }
                return best
            }
            return row.firstIndex(of: config.eosTokenId) ?? 0
        }
    }

    /// ids: B rows of equal length T ≤ max_position_embeddings. `layers` runs only the
    /// first N encoder layers; the final norm and pooling then apply to layer N's output
    /// (what diffusers' `clip_skip` computes), and `hiddenStates` has N + 1 entries.
    public func forward(ids: [[Int]], layers: Int? = nil) -> (last: Tensor, states: [Tensor], pooled: Tensor, eos: [Int]) {
        let batch = ids.count, length = ids.first?.count ?? 0
        precondition(batch > 0 && length > 0, "CLIP text encoder: empty token ids")
        precondition(ids.allSatisfy { $0.count == length }, "CLIP text encoder: rows of token ids differ in length")
        precondition(length <= config.maxPositionEmbeddings,
                     "CLIP text encoder: \(length) tokens but max_position_embeddings is \(config.maxPositionEmbeddings)")
        let embedded = embeddings(ids.flatMap { $0 }, batch: batch, length: length)
        let states = encoder(embedded, causal: true, count: layers)
        let last = final_layer_norm(states[states.count - 1])
        let eos = eosPositions(ids)
        // A gather of rows b·T + eos[b], written as an embedding lookup so gradients flow.
        let rows = last.reshaped([batch * length, last.shape[2]])
        let pooled = F.embedding(eos.enumerated().map { $0.offset * length + $0.element }, shape: [batch], table: rows)
        return (last, states, pooled, eos)
    }
}

/// transformers' `CLIPTextModel`, or `CLIPTextModelWithProjection` when
/// `text_projection` is present. Parameter paths are the checkpoint's names
/// (`text_model.encoder.layers.0.self_attn.q_proj.weight`, `text_projection.weight`);
/// `load` also reads transformers 5's unprefixed CLIPTextModel files (see `CLIPCheckpoint`).
public final class CLIPTextModel: Module {
    public let config: CLIPTextConfig
    public let text_model: CLIPTextTransformer
    /// Bias-free [projection_dim, hidden_size] projection of the pooled state.
    public let text_projection: Linear?

    public init(config: CLIPTextConfig, withProjection: Bool = false) {
        self.config = config
        text_model = CLIPTextTransformer(config: config)
        text_projection = withProjection ? Linear(config.encoder.hiddenSize, config.projectionDim, bias: false) : nil
        super.init()
        child("text_model", text_model)
        if let text_projection { child("text_projection", text_projection) }
    }

    /// Builds the model from `folder/config.json` and loads its weights strictly.
    /// `withProjection` nil follows the checkpoint (a `text_projection.weight`
    /// tensor means CLIPTextModelWithProjection); true or false demands that class.
    public static func load(folder: URL, withProjection: Bool? = nil, variant: String? = nil) throws -> CLIPTextModel {
        let config = try decodeConfig(CLIPTextConfig.self, from: folder.appendingPathComponent("config.json"))
        let checkpoint = try CLIPCheckpoint(folder: folder, variant: variant)
        let projection = withProjection ?? checkpoint.has("text_projection.weight")
        return try checkpoint.build(prefix: "text_model", withProjection: projection, tower: { $0.text_model }) {
            CLIPTextModel(config: config, withProjection: projection)
        }
    }

    public func forward(ids: [[Int]], layers: Int? = nil) -> CLIPTextOutput {
        let out = text_model.forward(ids: ids, layers: layers)
        return CLIPTextOutput(lastHiddenState: out.last, hiddenStates: out.states, pooled: out.pooled,
                              textEmbeds: text_projection.map { $0(out.pooled) }, eosPositions: out.eos)
    }
}
