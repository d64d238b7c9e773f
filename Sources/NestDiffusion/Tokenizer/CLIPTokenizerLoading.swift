import Foundation
import NestModels

extension CLIPTokenizer {
    /// Loads a tokenizer folder in either layout: `tokenizer.json` (preferred
    /// when present), or `vocab.json` + `merges.txt`. Special tokens and the
    /// maximum length come from `tokenizer_config.json` / `special_tokens_map.json`.
    public static func load(folder: URL) throws -> CLIPTokenizer {
        let fm = FileManager.default
        func json(_ name: String) throws -> [String: Any]? {
            let url = folder.appendingPathComponent(name)
            guard fm.fileExists(atPath: url.path) else { return nil }
            let data = try readConfigFile(url)
            guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw ModelConfigError("\(url.path): not a JSON object")
            }
            return object
        }
        guard fm.fileExists(atPath: folder.path) else { throw ModelConfigError("\(folder.path): tokenizer folder not found") }
        let config = try json("tokenizer_config.json") ?? [:]
        let specialMap = try json("special_tokens_map.json") ?? [:]

        /// A special token: a string, or an object with "content" (both files use both forms).
        func special(_ key: String, default value: String) -> String {
            for source in [config, specialMap] {
                if let s = source[key] as? String { return s }
                if let o = source[key] as? [String: Any], let s = o["content"] as? String { return s }
            }
            return value
        }

        let files: BPEFiles
        if let tokenizer = try json("tokenizer.json") {
            files = try BPEFiles(tokenizerJSON: tokenizer, folder: folder)
        } else {
            files = try BPEFiles(vocabJSON: try json("vocab.json"), config: config, folder: folder)
        }
        let maxLength = (config["model_max_length"] as? Int).flatMap { $0 > 0 && $0 < 100_000 ? $0 : nil } ?? 77
        return try CLIPTokenizer(
            vocabulary: files.vocabulary, merges: files.merges, addedTokens: files.added,
            bosToken: special("bos_token", default: "<|startoftext|>"),
            eosToken: special("eos_token", default: "<|endoftext|>"),
            padToken: config["pad_token"] != nil || specialMap["pad_token"] != nil
                ? special("pad_token", default: "<|endoftext|>") : (files.padFromTokenizerJSON ?? "<|endoftext|>"),
            unknownToken: special("unk_token", default: "<|endoftext|>"),
            maxLength: maxLength)
    }
}

/// What a tokenizer folder's BPE files hold, from either layout.
private struct BPEFiles {
    var vocabulary: [String: Int] = [:]
    var merges: [(String, String)] = []
    var added: [String: Int] = [:]
    var padFromTokenizerJSON: String? = nil

    /// From `tokenizer.json`'s BPE model, added tokens and padding.
    init(tokenizerJSON tokenizer: [String: Any], folder: URL) throws {
        guard let model = tokenizer["model"] as? [String: Any], let vocab = model["vocab"] as? [String: Int] else {
            throw ModelConfigError("\(folder.path)/tokenizer.json: no BPE model vocabulary")
        }
        if let type = model["type"] as? String, type != "BPE" {
            throw ModelConfigError("\(folder.path)/tokenizer.json: model type '\(type)' is not BPE")
        }
        vocabulary = vocab
        for entry in model["merges"] as? [Any] ?? [] {
            if let s = entry as? String {
                let parts = s.split(separator: " ", maxSplits: 1)
                if parts.count == 2 { merges.append((String(parts[0]), String(parts[1]))) }
            } else if let pair = entry as? [String], pair.count == 2 {
                merges.append((pair[0], pair[1]))
            }
        }
        for token in tokenizer["added_tokens"] as? [[String: Any]] ?? [] {
            if let content = token["content"] as? String, let id = token["id"] as? Int { added[content] = id }
        }
        if let padding = tokenizer["padding"] as? [String: Any], let pad = padding["pad_token"] as? String {
            padFromTokenizerJSON = pad
        }
    }

    /// From `vocab.json` + `merges.txt`, added tokens from `tokenizer_config.json`.
    init(vocabJSON: [String: Any]?, config: [String: Any], folder: URL) throws {
        let vocabURL = folder.appendingPathComponent("vocab.json"), mergesURL = folder.appendingPathComponent("merges.txt")
        guard let vocab = vocabJSON as? [String: Int] else {
            throw ModelConfigError("\(folder.path): no tokenizer.json or vocab.json (\(vocabURL.lastPathComponent))")
        }
        guard FileManager.default.fileExists(atPath: mergesURL.path) else {
            throw ModelConfigError("\(folder.path): vocab.json without merges.txt")
        }
        guard let text = String(data: try readConfigFile(mergesURL), encoding: .utf8) else {
            throw ModelConfigError("\(mergesURL.path): not UTF-8 text")
        }
        vocabulary = vocab
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) where !line.hasPrefix("#version") {
            let parts = line.split(separator: " ")
            if parts.count == 2 { merges.append((String(parts[0]), String(parts[1]))) }
        }
        // Tokens added after the vocabulary was built (e.g. placeholders) live in the config.
        if let decoder = config["added_tokens_decoder"] as? [String: [String: Any]] {
            for (idString, info) in decoder {
                if let id = Int(idString), let content = info["content"] as? String { added[content] = id }
            }
        }
    }
}
