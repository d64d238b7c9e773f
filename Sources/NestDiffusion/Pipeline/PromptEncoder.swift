import Foundation
import NestEngine
import NestModels

/// Text conditioning for a batch of prompts, as the UNet consumes it.
public struct EncodedPrompts {
    /// [B, 77, D]: the context for cross-attention.
    public var hidden: Tensor
    /// [B, P]: SDXL's pooled embedding of the second encoder (nil for SD 1/2).
    public var pooled: Tensor?
    /// Token ids per encoder and prompt (for locating placeholder tokens).
    public var ids: [[[Int]]]
}

/// Tokenizes and encodes prompts the way diffusers' pipelines do.
///
/// SD 1/2: the last hidden state of the single CLIP text encoder.
/// SDXL: the penultimate hidden states of both encoders side by side, and
/// the projected pooled output of the second.
public final class PromptEncoder {
    public private(set) var tokenizers: [CLIPTokenizer]
    public let encoders: [CLIPTextModel]
    public let isXL: Bool

    public init(tokenizers: [CLIPTokenizer], encoders: [CLIPTextModel]) throws {
        guard tokenizers.count == encoders.count, (1...2).contains(encoders.count) else {
            throw ModelConfigError("a pipeline needs one or two (tokenizer, text encoder) pairs, got \(tokenizers.count) and \(encoders.count)")
        }
        self.tokenizers = tokenizers
        self.encoders = encoders
        isXL = encoders.count == 2
    }

    /// Loads `tokenizer/` + `text_encoder/` and, when present, `tokenizer_2/` + `text_encoder_2/`.
    public static func load(folder: ModelFolder, variant: String? = nil) throws -> PromptEncoder {
        var tokenizers: [CLIPTokenizer] = [], encoders: [CLIPTextModel] = []
        for (tok, enc) in [("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")] where folder.has(enc) {
            tokenizers.append(try CLIPTokenizer.load(folder: try folder.component(tok)))
            encoders.append(try CLIPTextModel.load(folder: try folder.component(enc), variant: variant))
        }
        if encoders.isEmpty { throw ModelConfigError("\(folder.url.path): model_index.json lists no text_encoder") }
        return try PromptEncoder(tokenizers: tokenizers, encoders: encoders)
    }

    /// Adds a placeholder token (e.g. `<person>`) to every tokenizer, giving it
    /// the embedding of `classWord`'s first token in each text encoder.
    public func addPlaceholder(_ token: String, classWord: String) throws {
        for i in tokenizers.indices {
            let classIds = tokenizers[i].encodeWithoutSpecialTokens(classWord)
            guard let source = classIds.first else {
                throw ModelConfigError("class word '\(classWord)' has no tokens")
            }
            let id = tokenizers[i].addToken(token)
            try encoders[i].text_model.embeddings.setTokenEmbedding(id: id, copyingFrom: source)
        }
    }

    /// Tokens of `prompt` before BOS/EOS and truncation (CLIP keeps 75).
    public func tokenCount(_ prompt: String) -> Int {
        tokenizers[0].encodeWithoutSpecialTokens(expanded(prompt, tokenizer: 0)).count
    }

    /// Whether `token` occurs in the tokenized prompt (after truncation).
    public func position(of token: String, in prompt: String) -> Int? {
        guard let id = tokenizers[0].addedTokens[token] else { return nil }
        return tokenizers[0].encode(expanded(prompt, tokenizer: 0)).firstIndex(of: id)
    }

    /// Textual-inversion tokens by tokenizer: token → its vectors' tokens (token, token_1, …).
    private var embeddingTokens: [[String: [String]]] = [[:], [:]]

    /// Adds a textual-inversion token to tokenizer `index` with one vector per id: a token
    /// with n vectors becomes `token token_1 … token_{n-1}` in prompts, as diffusers writes it.
    public func addEmbedding(token: String, vectors: [[Float]], encoder index: Int) throws {
        guard !vectors.isEmpty else { throw ModelConfigError("embedding \(token) has no vectors") }
        if tokenizers[index].vocabulary[token] != nil || tokenizers[index].addedTokens[token] != nil {
            throw ModelConfigError("embedding token \(token) is already a token of the tokenizer; name another (FILE:TOKEN)")
        }
        let names = [token] + (1..<vectors.count).map { "\(token)_\($0)" }
        for (name, vector) in zip(names, vectors) {
            let id = tokenizers[index].addToken(name)
            try encoders[index].text_model.embeddings.setTokenEmbedding(id: id, vector: vector)
        }
        embeddingTokens[index][token] = names
    }

    /// Removes every textual-inversion token `addEmbedding` added.
    public func removeEmbeddings() {
        for index in tokenizers.indices {
            for name in embeddingTokens[index].values.flatMap({ $0 }) {
                if let id = tokenizers[index].addedTokens[name] { encoders[index].text_model.embeddings.removeTokenEmbedding(id: id) }
                tokenizers[index].removeAddedToken(name)
            }
            embeddingTokens[index] = [:]
        }
    }

    /// The prompt with each multi-vector embedding token spelled out, for tokenizer `index`.
    func expanded(_ prompt: String, tokenizer index: Int) -> String {
        var text = prompt
        let ids = Set(tokenizers[index].encodeWithoutSpecialTokens(prompt))
        for (token, names) in embeddingTokens[index].sorted(by: { $0.key < $1.key }) where names.count > 1 {
            guard let id = tokenizers[index].addedTokens[token], ids.contains(id) else { continue }
            text = text.replacingOccurrences(of: token, with: names.joined(separator: " "))
        }
        return text
    }

    /// Encodes prompts; with `zeros`, returns all-zero conditioning of the same
    /// shapes instead (SDXL's `force_zeros_for_empty_prompt` negative).
    public func encode(_ prompts: [String], zeros: Bool = false) -> EncodedPrompts {
        var hiddenParts: [Tensor] = []
        var pooled: Tensor? = nil
        var allIds: [[[Int]]] = []
        for i in encoders.indices {
            let ids = prompts.map { tokenizers[i].encode(expanded($0, tokenizer: i)) }
            allIds.append(ids)
            let out = Autograd.noGrad { encoders[i].forward(ids: ids) }
            // SDXL takes the penultimate layer's states (not final-normed); SD 1/2 the normed last state.
            hiddenParts.append(isXL ? out.hiddenStates[out.hiddenStates.count - 2] : out.lastHiddenState)
            // The pooled embedding is the second encoder's projected output (the full model's).
            if isXL && i == encoders.count - 1 { pooled = out.textEmbeds ?? out.pooled }
        }
        var hidden = hiddenParts.count == 1 ? hiddenParts[0] : F.concat(hiddenParts, axis: 2)
        if zeros {
            hidden = Tensor(zeros: hidden.shape)
            pooled = pooled.map { Tensor(zeros: $0.shape) }
        }
        return EncodedPrompts(hidden: hidden, pooled: pooled, ids: allIds)
    }
}
