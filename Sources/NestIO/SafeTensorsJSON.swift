// A small, strict JSON parser for safetensors headers and shard indexes.
//
// Why not JSONSerialization: it silently keeps the last of duplicate keys,
// turns `true` into a number that `as? Int` accepts, and hands back Double or
// NSDecimalNumber for large integers depending on platform. Headers come from
// untrusted files, so we want exact Int offsets, duplicate detection, a depth
// limit against stack exhaustion, and error positions — all cheap to do here.

/// A parsed JSON value. Objects keep their key order (and duplicates are
/// rejected during parsing), so we can report entries in file order.
enum JSONValue {
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    /// `int` is set when the literal is an integer that fits in Int; `text`
    /// keeps the literal so errors (and metadata) can show it verbatim.
    case number(text: String, int: Int?)
    case bool(Bool)
    case null

    /// Type name with article, for "X is <type>, expected Y" messages.
    var typeName: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number(_, let int): return int == nil ? "a non-integer number" : "an integer"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }
}

struct JSONParseError: Error {
    let message: String
}

struct JSONParser {
    /// Generous for real headers (depth 3) yet far below any stack limit.
    static let maxDepth = 64

    private let bytes: UnsafeRawBufferPointer
    private var pos = 0

    /// Parses exactly one value; only whitespace may follow it (safetensors
    /// pads headers with spaces).
    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        if parser.pos != bytes.count { throw parser.error("unexpected trailing data") }
        return value
    }

    private init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private func error(_ message: String) -> JSONParseError {
        JSONParseError(message: "\(message) at byte \(pos)")
    }

    private var peek: UInt8? { pos < bytes.count ? bytes[pos] : nil }

    private mutating func skipWhitespace() {
        while let c = peek, c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { pos += 1 }
    }

    private mutating func expect(_ c: UInt8, _ what: String) throws {
        guard peek == c else { throw error("expected \(what)") }
        pos += 1
    }

    private mutating func parseValue(depth: Int) throws -> JSONValue {
        guard depth < Self.maxDepth else { throw error("nesting deeper than \(Self.maxDepth)") }
        guard let c = peek else { throw error("unexpected end of JSON") }
        switch c {
        case UInt8(ascii: "{"): return try parseObject(depth: depth)
        case UInt8(ascii: "["): return try parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try parseLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try parseLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try parseLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character")
        }
    }

    private mutating func parseLiteral(_ word: String) throws {
        for expected in word.utf8 {
            guard peek == expected else { throw error("invalid literal") }
            pos += 1
        }
    }

    private mutating func parseObject(depth: Int) throws -> JSONValue {
        pos += 1  // '{'
        var members: [(key: String, value: JSONValue)] = []
        var seen = Set<String>()
        skipWhitespace()
        if peek == UInt8(ascii: "}") { pos += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard peek == UInt8(ascii: "\"") else { throw error("expected object key") }
            let key = try parseString()
            // Last-one-wins would let a file hide a tensor definition.
            guard seen.insert(key).inserted else { throw error("duplicate key \(quoted(key))") }
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "':'")
            skipWhitespace()
            members.append((key, try parseValue(depth: depth + 1)))
            skipWhitespace()
            if peek == UInt8(ascii: ",") { pos += 1; continue }
            try expect(UInt8(ascii: "}"), "',' or '}'")
            return .object(members)
        }
    }

    private mutating func parseArray(depth: Int) throws -> JSONValue {
        pos += 1  // '['
        var items: [JSONValue] = []
        skipWhitespace()
        if peek == UInt8(ascii: "]") { pos += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            if peek == UInt8(ascii: ",") { pos += 1; continue }
            try expect(UInt8(ascii: "]"), "',' or ']'")
            return .array(items)
        }
    }

    private mutating func parseNumber() throws -> JSONValue {
        let start = pos
        var isInteger = true
        if peek == UInt8(ascii: "-") { pos += 1 }
        // JSON forbids leading zeros ("01") and a bare "-".
        if peek == UInt8(ascii: "0") {
            pos += 1
        } else if digitsFollow() {
            while digitsFollow() { pos += 1 }
        } else {
            throw error("invalid number")
        }
        if peek == UInt8(ascii: ".") {
            isInteger = false
            pos += 1
            guard digitsFollow() else { throw error("invalid number") }
            while digitsFollow() { pos += 1 }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            isInteger = false
            pos += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { pos += 1 }
            guard digitsFollow() else { throw error("invalid number") }
            while digitsFollow() { pos += 1 }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
        // Int(text) returns nil on overflow, which callers report as "out of range".
        return .number(text: text, int: isInteger ? Int(text) : nil)
    }

    private func digitsFollow() -> Bool {
        guard let c = peek else { return false }
        return c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")
    }

    private mutating func parseString() throws -> String {
        pos += 1  // opening quote
        var utf8: [UInt8] = []
        while true {
            guard let c = peek else { throw error("unterminated string") }
            pos += 1
            switch c {
            case UInt8(ascii: "\""):
                // Input was UTF-8 validated up front and escapes emit valid
                // scalars, so decoding cannot introduce replacement characters.
                return String(decoding: utf8, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try parseEscape(into: &utf8)
            case 0..<0x20:
                throw error("control character in string")
            default:
                utf8.append(c)
            }
        }
    }

    private mutating func parseEscape(into utf8: inout [UInt8]) throws {
        guard let c = peek else { throw error("unterminated escape") }
        pos += 1
        let simple: UInt8?
        switch c {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): simple = c
        case UInt8(ascii: "b"): simple = 0x08
        case UInt8(ascii: "f"): simple = 0x0C
        case UInt8(ascii: "n"): simple = 0x0A
        case UInt8(ascii: "r"): simple = 0x0D
        case UInt8(ascii: "t"): simple = 0x09
        case UInt8(ascii: "u"): simple = nil
        default: throw error("invalid escape")
        }
        if let simple { utf8.append(simple); return }

        var code = try parseHex4()
        if (0xD800..<0xDC00).contains(code) {
            // A high surrogate must be followed by an escaped low surrogate.
            guard peek == UInt8(ascii: "\\") else { throw error("unpaired surrogate") }
            pos += 1
            try expect(UInt8(ascii: "u"), "low surrogate")
            let low = try parseHex4()
            guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate") }
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
        }
        guard let scalar = Unicode.Scalar(code) else { throw error("unpaired surrogate") }
        utf8.append(contentsOf: String(Character(scalar)).utf8)
    }

    private mutating func parseHex4() throws -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let c = peek, let digit = hexDigit(c) else { throw error("invalid \\u escape") }
            value = value << 4 | digit
            pos += 1
        }
        return value
    }

    private func hexDigit(_ c: UInt8) -> UInt32? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(c - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(c - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(c - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }
}

/// Escapes a string as a JSON string literal (used by the writer).
func jsonQuoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}
