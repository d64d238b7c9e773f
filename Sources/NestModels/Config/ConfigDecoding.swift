import Foundation
import NestIO

/// A model configuration problem, described in one line naming the file and key.
public struct ModelConfigError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    /// Values quoted from a file may hold newlines or escape sequences: they are made visible, keeping one line.
    public init(_ description: String) { self.description = Escaped.text(description, limit: 4000) }
    public var errorDescription: String? { description }
}

/// A diffusers field that may be one value or one value per block
/// (`attention_head_dim: 8` or `[5, 10, 20]`).
public enum OneOrMany<Value: Codable & Equatable & Sendable>: Codable, Equatable, Sendable {
    case one(Value)
    case many([Value])

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let list = try? container.decode([Value].self) { self = .many(list); return }
        self = .one(try container.decode(Value.self))
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .one(let v): try container.encode(v)
        case .many(let vs): try container.encode(vs)
        }
    }

    /// One value per block; a list must have exactly `count` entries.
    public func expanded(_ count: Int, key: String) throws -> [Value] {
        switch self {
        case .one(let v): return Array(repeating: v, count: count)
        case .many(let vs):
            guard vs.count == count else {
                throw ModelConfigError("\(key) has \(vs.count) entries but the model has \(count) blocks")
            }
            return vs
        }
    }
}

/// Decodes a `config.json`, turning Codable's errors into one line that names
/// the file and the missing or malformed key.
public func decodeConfig<T: Decodable>(_ type: T.Type, from url: URL) throws -> T {
    try decodeConfig(type, data: readConfigFile(url), name: url.path)
}

/// The bytes of a JSON or text file a model folder or adapter holds. Only
/// regular files are read (a FIFO or device is refused without blocking), and
/// nothing past `limit`: the largest real one, a tokenizer.json, is a few MB.
public func readConfigFile(_ url: URL, limit: Int = 64 << 20) throws -> Data {
    do { return try RegularFile.read(url, limit: limit) } catch let error as FileReadError {
        throw ModelConfigError(error.description)
    }
}

public func decodeConfig<T: Decodable>(_ type: T.Type, data: Data, name: String) throws -> T {
    // No configuration nests deeper than a handful of levels; hostile files
    // nested thousands deep are refused here, before Foundation's parser
    // recurses into them (its error path for them has trapped).
    if jsonNestsDeeper(than: maximumConfigNesting, data) {
        throw ModelConfigError("\(name): JSON nested more than \(maximumConfigNesting) levels deep")
    }
    do {
        return try JSONDecoder().decode(type, from: data)
    } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
        throw ModelConfigError("\(name): \(jsonProblem(data))")
    } catch let error as DecodingError {
        throw ModelConfigError("\(name): \(describe(error))")
    } catch let error as ModelConfigError {
        throw ModelConfigError("\(name): \(error.description)")
    }
}

/// The deepest nesting of arrays and objects `decodeConfig` reads (tokenizer
/// files, the deepest real ones, nest about six levels).
public let maximumConfigNesting = 64

/// Whether JSON text opens more than `limit` arrays or objects inside one
/// another; brackets inside strings do not count. Stops at the first level
/// past the limit; malformed text is left to the parser.
public func jsonNestsDeeper(than limit: Int, _ data: Data) -> Bool {
    var depth = 0, inString = false, escaped = false
    for byte in data {
        if inString {
            if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
            continue
        }
        switch byte {
        case UInt8(ascii: "\""): inString = true
        case UInt8(ascii: "["), UInt8(ascii: "{"):
            depth += 1
            if depth > limit { return true }
        case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
        default: break
        }
    }
    return false
}

/// What is wrong with JSON the decoder rejected as a whole: Foundation's parser
/// says where the syntax breaks; text it accepts holds a number no Swift type can.
private func jsonProblem(_ data: Data) -> String {
    do {
        _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        return "a number is too large for its key"
    } catch {
        let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String
        return "not valid JSON" + (detail.map { " (\(Escaped.text($0)))" } ?? "")
    }
}

private func describe(_ error: DecodingError) -> String {
    func path(_ keys: [CodingKey]) -> String { keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") }
    switch error {
    case .keyNotFound(let key, let ctx):
        let p = path(ctx.codingPath + [key])
        return "missing key '\(p)'"
    case .typeMismatch(_, let ctx), .valueNotFound(_, let ctx):
        return "key '\(path(ctx.codingPath))' has the wrong type (\(ctx.debugDescription))"
    case .dataCorrupted(let ctx):
        return ctx.codingPath.isEmpty ? "not valid JSON" : "key '\(path(ctx.codingPath))': \(ctx.debugDescription)"
    @unknown default:
        return String(describing: error)
    }
}
