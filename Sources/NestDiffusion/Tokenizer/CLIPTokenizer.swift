import Foundation
import NestModels

/// CLIP's tokenizer, giving the same ids as transformers' CLIPTokenizer.
///
/// Reads either layout a model folder may hold: the classic one
/// (`vocab.json` + `merges.txt`, special tokens from `special_tokens_map.json`
/// / `tokenizer_config.json`) or the one transformers 5 writes
/// (`tokenizer.json` only). Text is NFC-normalized, whitespace runs collapse
/// to one space, lower-cased, split by CLIP's pattern, byte-encoded and merged.
/// Added tokens (special ones and placeholders such as `<person>`) are matched
/// in the raw text first and map to their own ids.
public struct CLIPTokenizer {
    public private(set) var vocabulary: [String: Int]
    private let bpe: BytePairEncoding
    /// Tokens matched verbatim before normal processing, longest first.
    public private(set) var addedTokens: [String: Int]
    private var addedByLength: [String] = []

    public let bosToken: String
    public let eosToken: String
    public let padToken: String
    public let unknownToken: String
    public let maxLength: Int

    public var bosId: Int { vocabulary[bosToken] ?? addedTokens[bosToken]! }
    public var eosId: Int { vocabulary[eosToken] ?? addedTokens[eosToken]! }
    public var padId: Int { vocabulary[padToken] ?? addedTokens[padToken] ?? eosId }

    public init(vocabulary: [String: Int], merges: [(String, String)], addedTokens: [String: Int] = [:],
                bosToken: String = "<|startoftext|>", eosToken: String = "<|endoftext|>",
                padToken: String = "<|endoftext|>", unknownToken: String = "<|endoftext|>", maxLength: Int = 77) throws {
        self.vocabulary = vocabulary
        bpe = BytePairEncoding(merges: merges)
        self.addedTokens = addedTokens
        self.bosToken = bosToken
        self.eosToken = eosToken
        self.padToken = padToken
        self.unknownToken = unknownToken
        self.maxLength = maxLength
        for special in [bosToken, eosToken, padToken, unknownToken] where vocabulary[special] == nil && addedTokens[special] == nil {
            throw ModelConfigError("tokenizer: special token '\(special)' is not in the vocabulary")
        }
        // The special tokens are always matched verbatim.
        for special in [bosToken, eosToken, padToken, unknownToken] where self.addedTokens[special] == nil {
            self.addedTokens[special] = vocabulary[special]
        }
        sortAdded()
    }

    private mutating func sortAdded() {
        addedByLength = addedTokens.keys.sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }
    }

    /// Adds a token matched verbatim (e.g. a personalization placeholder) and returns its id.
    @discardableResult
    public mutating func addToken(_ token: String) -> Int {
        if let id = addedTokens[token] ?? vocabulary[token] { addedTokens[token] = id; sortAdded(); return id }
        let id = max(vocabulary.values.max() ?? -1, addedTokens.values.max() ?? -1) + 1
        addedTokens[token] = id
        sortAdded()
        return id
    }

    /// Forgets a token `addToken` added (vocabulary words stay).
    public mutating func removeAddedToken(_ token: String) {
        guard vocabulary[token] == nil, addedTokens.removeValue(forKey: token) != nil else { return }
        sortAdded()
    }

    /// Total number of ids (vocabulary plus added tokens beyond it).
    public var count: Int { max(vocabulary.values.max() ?? -1, addedTokens.values.max() ?? -1) + 1 }

    /// Ids of `text` without BOS/EOS, padding or truncation.
    public func encodeWithoutSpecialTokens(_ text: String) -> [Int] {
        var ids: [Int] = []
        for segment in splitOnAddedTokens(text) {
            switch segment {
            case .added(let id): ids.append(id)
            case .text(let s):
                for word in Self.preTokenize(Self.normalize(s)) {
                    for symbol in bpe.encode(word: word) {
                        ids.append(vocabulary[symbol] ?? vocabulary[unknownToken]!)
                    }
                }
            }
        }
        return ids
    }

    /// `[BOS] tokens [EOS]`, truncated to `maxLength` (keeping EOS) and, when
    /// `pad`, padded with the pad token to `maxLength` — what diffusers asks for.
    public func encode(_ text: String, pad: Bool = true, truncate: Bool = true) -> [Int] {
        var body = encodeWithoutSpecialTokens(text)
        if truncate && body.count > maxLength - 2 { body = Array(body.prefix(maxLength - 2)) }
        var ids = [bosId] + body + [eosId]
        if pad && ids.count < maxLength { ids += Array(repeating: padId, count: maxLength - ids.count) }
        return ids
    }

    enum Segment { case text(String), added(Int) }

    private func splitOnAddedTokens(_ text: String) -> [Segment] {
        var segments: [Segment] = []
        var rest = Substring(text)
        var pending = ""
        outer: while !rest.isEmpty {
            for token in addedByLength where rest.hasPrefix(token) {
                if !pending.isEmpty { segments.append(.text(pending)); pending = "" }
                segments.append(.added(addedTokens[token]!))
                rest = rest.dropFirst(token.count)
                continue outer
            }
            pending.append(rest.removeFirst())
        }
        if !pending.isEmpty { segments.append(.text(pending)) }
        return segments
    }

    static func normalize(_ text: String) -> String {
        let nfc = text.precomposedStringWithCanonicalMapping
        var out = ""
        var inSpace = false
        for scalar in nfc.unicodeScalars {
            if scalar.properties.isWhitespace {
                if !inSpace { out.append(" ") }
                inSpace = true
            } else {
                out.unicodeScalars.append(scalar)
                inSpace = false
            }
        }
        return out.lowercased()
    }

    /// CLIP's pattern: contractions, letter runs, single digits, runs of other non-space characters.
    static let pattern = try! NSRegularExpression(
        pattern: #"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"#)

    static func preTokenize(_ text: String) -> [String] {
        let ns = text as NSString
        return pattern.matches(in: text, range: NSRange(location: 0, length: ns.length)).map { ns.substring(with: $0.range) }
    }
}
