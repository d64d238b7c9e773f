import Foundation
import NestModels

/// A problem importing a foreign encoder checkpoint, in one line naming the tensor(s) at fault.
public struct AdapterImportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// How the tensors of a foreign checkpoint become this project's nested adapter:
/// an ordered list of rules, each an original key pattern, the adapter parameter it
/// fills, and optionally the shape it must have. The first rule whose pattern matches
/// a key wins; a key no rule matches is reported by name and the import refused.
///
/// Patterns are dotted keys in which one segment may be `{n}` (an integer naming a
/// UNet cross-attention, read as `layer_numbering` says) and the last may be `*` (the
/// rest of the key, one or more segments). Targets may use `{layer}` (the adapter's own
/// index of that cross-attention) and `*` (the same rest). Shapes list, per dimension,
/// a number, `*` (any), or a symbol: `layer_width` (the cross-attention's inner width),
/// `token_width` (the width of the encoder tokens the resampler gives) or
/// `feature_width` (the image encoder's hidden size).
///
/// The table is data, so a layout that differs from the built-in one can be read by a
/// JSON table of this form (see `load(from:)` and `extended(with:)`) without new code.
public struct ImportMapping: Codable, Sendable, Equatable {
    public enum LayerNumbering: String, Codable, Sendable {
        /// IP-Adapter's numbering: the position among all of `unet.attn_processors`, so the
        /// k-th cross-attention is 2k+1 in a UNet where every block has self- and cross-attention.
        case processorPosition = "processor_position"
        /// The k-th cross-attention in `attn_processors` order is k.
        case crossAttentionIndex = "cross_attention_index"
    }

    /// One dimension of a shape rule.
    public enum Dimension: Codable, Sendable, Equatable, CustomStringConvertible {
        case fixed(Int)
        case any
        case layerWidth, tokenWidth, featureWidth

        public init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let n = try? c.decode(Int.self) { self = .fixed(n); return }
            switch try c.decode(String.self) {
            case "*": self = .any
            case "layer_width": self = .layerWidth
            case "token_width": self = .tokenWidth
            case "feature_width": self = .featureWidth
            case let other:
                throw DecodingError.dataCorruptedError(
                    in: c, debugDescription: "'\(other)' is none of a number, *, layer_width, token_width, feature_width")
            }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            if case let .fixed(n) = self { try c.encode(n) } else { try c.encode(description) }
        }

        public var description: String {
            switch self {
            case let .fixed(n): "\(n)"
            case .any: "*"
            case .layerWidth: "layer_width"
            case .tokenWidth: "token_width"
            case .featureWidth: "feature_width"
            }
        }
    }

    public struct Rule: Codable, Sendable, Equatable {
        public var from: String
        public var to: String
        public var shape: [Dimension]?
        public init(from: String, to: String, shape: [Dimension]? = nil) { self.from = from; self.to = to; self.shape = shape }
    }

    /// What a key matched: the rule, the `{n}` number and the `*` rest it captured.
    public struct Match: Equatable {
        public var rule: Int
        public var number: Int?
        public var rest: String?
    }

    public var name: String
    public var layerNumbering: LayerNumbering
    public var rules: [Rule]

    enum CodingKeys: String, CodingKey { case name, layerNumbering = "layer_numbering", rules }

    public init(name: String, layerNumbering: LayerNumbering, rules: [Rule]) {
        self.name = name; self.layerNumbering = layerNumbering; self.rules = rules
    }

    /// The IP-Adapter Plus lineage, as the published Nested Attention encoder's loader reads
    /// it: the Plus resampler under `image_proj.` and one `to_k_ip`/`to_v_ip` pair per
    /// cross-attention under `ip_adapter.N.`, numbered by processor position. The nested
    /// keys and values are taken to be these pairs (an inference: see docs/adapter-import.md).
    public static let ipAdapterLineage = ImportMapping(name: "ip-adapter-lineage", layerNumbering: .processorPosition, rules: [
        Rule(from: "image_proj.proj_in.weight", to: "resampler.proj_in.weight", shape: [.any, .featureWidth]),
        Rule(from: "image_proj.*", to: "resampler.*"),
        Rule(from: "ip_adapter.{n}.to_k_ip.weight", to: "layers.{layer}.to_k.weight", shape: [.layerWidth, .tokenWidth]),
        Rule(from: "ip_adapter.{n}.to_v_ip.weight", to: "layers.{layer}.to_v.weight", shape: [.layerWidth, .tokenWidth]),
    ])

    /// Reads a JSON table and checks every rule's patterns.
    public static func load(from url: URL) throws -> ImportMapping {
        let table: ImportMapping
        do { table = try decodeConfig(ImportMapping.self, from: url) } catch let error as ModelConfigError {
            throw AdapterImportError(error.description)
        }
        do { try table.validate() } catch let error as AdapterImportError { throw AdapterImportError("\(url.path): \(error.description)") }
        return table
    }

    /// This table's rules first, then `base`'s: a user's table refines or adds to the built-in one.
    public func extended(with base: ImportMapping) -> ImportMapping {
        ImportMapping(name: "\(name) + \(base.name)", layerNumbering: layerNumbering, rules: rules + base.rules)
    }

    /// Each rule: at most one `{n}`, `*` only last, targets using only what the pattern captures.
    public func validate() throws {
        guard !rules.isEmpty else { throw AdapterImportError("the table has no rules") }
        for (i, rule) in rules.enumerated() {
            let from = rule.from.split(separator: ".", omittingEmptySubsequences: false)
            let to = rule.to.split(separator: ".", omittingEmptySubsequences: false)
            let what = "rule \(i) (\(rule.from) → \(rule.to))"
            guard !from.contains(where: \.isEmpty), !to.contains(where: \.isEmpty) else { throw AdapterImportError("\(what): empty key segment") }
            guard from.filter({ $0 == "{n}" }).count <= 1 else { throw AdapterImportError("\(what): more than one {n}") }
            guard !from.dropLast().contains("*"), !to.dropLast().contains("*") else { throw AdapterImportError("\(what): * may only end a key") }
            guard (to.last == "*") == (from.last == "*") else { throw AdapterImportError("\(what): * must end both keys or neither") }
            if to.contains("{layer}") && !from.contains("{n}") { throw AdapterImportError("\(what): {layer} needs an {n} in the pattern") }
            if rule.shape?.contains(.layerWidth) == true && !from.contains("{n}") {
                throw AdapterImportError("\(what): layer_width needs an {n} in the pattern")
            }
            guard to.first == "resampler" || to.first == "layers" else {
                throw AdapterImportError("\(what): targets are resampler.* or layers.{layer}.to_k/to_v.weight")
            }
        }
    }

    /// The first rule matching `key`, with what it captured; nil when none does.
    public func match(_ key: String) -> Match? {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false)
        for (index, rule) in rules.enumerated() {
            let pattern = rule.from.split(separator: ".", omittingEmptySubsequences: false)
            var number: Int?, rest: String?, matched = true
            for (i, segment) in pattern.enumerated() {
                if segment == "*" {
                    if i < parts.count { rest = parts[i...].joined(separator: ".") } else { matched = false }
                    break
                }
                guard i < parts.count else { matched = false; break }
                if segment == "{n}" {
                    guard parts[i].allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(parts[i]) else { matched = false; break }
                    number = n
                } else if segment != parts[i] {
                    matched = false; break
                }
                if i == pattern.count - 1 && parts.count != pattern.count { matched = false }
            }
            if matched { return Match(rule: index, number: number, rest: rest) }
        }
        return nil
    }

    /// A rule's key with its captures filled in (`pattern` is a rule's `from` or `to`).
    static func fill(_ pattern: String, number: Int?, layer: Int?, rest: String?) -> String {
        pattern.split(separator: ".", omittingEmptySubsequences: false).map { segment -> String in
            switch segment {
            case "{n}": number.map(String.init) ?? "{n}"
            case "{layer}": layer.map(String.init) ?? "{layer}"
            case "*": rest ?? "*"
            default: String(segment)
            }
        }.joined(separator: ".")
    }
}
