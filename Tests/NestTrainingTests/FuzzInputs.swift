import Foundation
import NestTestSupport

/// Hostile JSON values and text for config and manifest fuzzing. Numbers JSON
/// cannot carry (inf, NaN) are written as raw tokens through `rawMarker`.
enum FuzzInputs {
    static let rawMarker = "@@raw:"
    static let rawNumbers = ["1e999", "-1e999", "NaN", "Infinity", "-0", "1e-400", "18446744073709551616",
                             "-9223372036854775809", "0.0000001", "1E3", "00", "1.", "+1", "0x10"]
    static let numbers: [Any] = [0, -1, 1, 2, 3, 7, 64, 100_000, Int.max, Int.min, Int32.max, -0.5, 0.5, 1.0, 1.5, 0.999,
                                 1e-45, 3.4e38, 1e300, -1e300, 2.5, 1000, 999, 1001]
    static let strings = ["", " ", "a", "<critter>", "cat", "constant", "cosine", "skip", "fail", "nested", "ip-adapter",
                          "single-token", "\u{0}", "a\nb", "\u{1B}[31mred", "..", ".", "é", "💥", "\\", "\"",
                          String(repeating: "x", count: 5000), "m", "d.jsonl", "🙂\u{202E}rtl"]

    /// A random JSON value, nested up to `depth`.
    static func value(_ r: inout FuzzRandom, depth: Int = 3) -> Any {
        switch r.below(depth > 0 ? 9 : 6) {
        case 0, 1: return r.pick(numbers)
        case 2: return rawMarker + r.pick(rawNumbers)
        case 3: return r.chance(0.5) ? r.pick(strings) : text(&r, length: r.below(40))
        case 4: return r.chance(0.5)
        case 5: return NSNull()
        case 6: return (0..<r.below(4)).map { _ in value(&r, depth: depth - 1) }
        case 7: return Dictionary(uniqueKeysWithValues: (0..<r.below(4)).map { i in ("k\(i)" + text(&r, length: 2), value(&r, depth: depth - 1)) })
        default: return deep(&r)
        }
    }

    /// Arrays or objects nested far deeper than any config (expanded by
    /// `serialize`: Foundation's JSON writer is slow on deep Swift values).
    static func deep(_ r: inout FuzzRandom) -> Any { rawMarker + "deep\(1 + r.below(3000))" }

    static func nested(_ depth: Int) -> String {
        var open = "", close = ""
        for i in 0..<depth {
            if i % 3 == 2 { open += "{\"d\":"; close += "}" } else { open += "["; close += "]" }
        }
        return open + "1" + String(close.reversed())
    }

    /// A hostile value of the kind `old` is (a string for a string, a number
    /// for a number), so the checks behind the type check are reached too.
    static func like(_ old: Any?, _ r: inout FuzzRandom) -> Any {
        switch old {
        case is String: return r.chance(0.3) ? r.pick(strings) : text(&r, length: 1 + r.below(20))
        case is [Any]: return (0..<r.below(4)).map { _ in r.chance(0.8) ? r.pick(numbers) : value(&r, depth: 0) }
        case is Bool, is NSNull, nil: return value(&r)
        case is [String: Any]: return value(&r)
        default: return r.chance(0.7) ? r.pick(numbers) : rawMarker + r.pick(rawNumbers)
        }
    }

    /// Random text including control characters, quotes and non-ASCII scalars.
    static func text(_ r: inout FuzzRandom, length: Int) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz_-.0123456789 \"\\\n\t\r\u{0}\u{7}\u{1B}\u{7F}\u{85}é日🦀\u{FEFF}")
        return String((0..<length).map { _ in r.pick(alphabet) })
    }

    /// A key like `known`, one edit away, or an unrelated one.
    static func misspelled(_ known: String, _ r: inout FuzzRandom) -> String {
        var chars = Array(known)
        guard !chars.isEmpty else { return "x" }
        switch r.below(4) {
        case 0: chars.remove(at: r.below(chars.count))
        case 1: chars.insert(r.pick(Array("aeiou_")), at: r.below(chars.count + 1))
        case 2: chars.swapAt(r.below(chars.count), r.below(chars.count))
        default: return text(&r, length: 1 + r.below(12))
        }
        return String(chars)
    }

    /// JSON text for `object`, with raw-marked strings replaced by their bare tokens.
    static func serialize(_ object: Any) -> String {
        guard JSONSerialization.isValidJSONObject(object),
              let data = try? JSONSerialization.data(withJSONObject: object) else { return "{}" }
        let pieces = String(decoding: data, as: UTF8.self).components(separatedBy: "\"" + rawMarker)
        var text = pieces[0]
        for piece in pieces.dropFirst() {
            guard let quote = piece.firstIndex(of: "\"") else { text += piece; continue }
            let token = String(piece[..<quote])
            text += token.hasPrefix("deep") ? nested(Int(token.dropFirst(4)) ?? 1) : token
            text += piece[piece.index(after: quote)...]
        }
        return text
    }

    /// Every key path ("training.learning_rate") of an object, sections included.
    static func paths(_ object: [String: Any], prefix: [String] = []) -> [[String]] {
        object.keys.sorted().flatMap { key -> [[String]] in
            let path = prefix + [key]
            if let inner = object[key] as? [String: Any] { return [path] + paths(inner, prefix: path) }
            return [path]
        }
    }

    /// `object` with `change` applied to the dictionary holding `path`'s last key.
    static func editing(_ object: [String: Any], _ path: ArraySlice<String>, _ change: (inout [String: Any], String) -> Void) -> [String: Any] {
        var copy = object
        if path.count == 1 { change(&copy, path.first!); return copy }
        if let inner = copy[path.first!] as? [String: Any] { copy[path.first!] = editing(inner, path.dropFirst(), change) }
        return copy
    }

    /// A valid config with 1–4 hostile edits: values of any type or range,
    /// unknown and misspelled keys, deleted keys, whole sections replaced;
    /// sometimes the text itself is cut or spliced with random bytes.
    static func config(_ valid: [String: Any], _ r: inout FuzzRandom) -> Data {
        var object = valid
        // Often a single edit: with several, the first problem found hides the others.
        for _ in 0..<(r.chance(0.5) ? 1 : 2 + r.below(3)) {
            let path = r.pick(paths(object))
            switch r.below(6) {
            case 0, 1: object = editing(object, path[...]) { dict, key in dict[key] = r.chance(0.5) ? like(dict[key], &r) : value(&r) }
            case 2: object = editing(object, path[...]) { dict, key in dict[key] = nil }
            case 3: object = editing(object, path[...]) { dict, key in dict[misspelled(key, &r)] = value(&r, depth: 1) }
            case 4: object = editing(object, path[...]) { dict, _ in dict[text(&r, length: r.below(10))] = value(&r) }
            default: object = editing(object, path[...]) { dict, key in dict[key] = deep(&r) }
            }
        }
        var bytes = Array(serialize(object).utf8)
        if r.chance(0.1) { bytes = Array(bytes.prefix(r.below(bytes.count + 1))) }
        if r.chance(0.05) { bytes.insert(UInt8(truncatingIfNeeded: r.next()), at: r.below(bytes.count + 1)) }
        if r.chance(0.03) { bytes = (0..<r.below(200)).map { _ in UInt8(truncatingIfNeeded: r.next()) } }
        return Data(bytes)
    }

    /// A manifest of good and hostile records: wrong types, control characters,
    /// missing, special and folder paths, huge and invalid-UTF-8 lines, random bytes.
    static func manifest(_ r: inout FuzzRandom) -> Data {
        var out = Data()
        for _ in 0..<(1 + r.below(6)) {
            var record: [String: Any] = ["image": "a.png", "caption": "a <critter> here", "references": ["b.png"], "mask": "m.png"]
            for _ in 0..<r.below(3) {
                let key = r.pick(["image", "caption", "references", "mask", "extra"])
                switch r.below(5) {
                case 0: record[key] = value(&r)
                case 1: record[key] = nil
                case 2: record[key] = r.pick(["missing.png", "", "/dev/zero", "fifo", "folder", "a.png", "../a.png", "a.png\u{0}x"])
                case 3: record[key] = [r.pick(["a.png", "b.png", "fifo", "/dev/null"]), value(&r, depth: 0)]
                default: record[key] = text(&r, length: r.below(30))
                }
            }
            var line = Data(serialize(record).utf8)
            switch r.below(12) {
            case 0: line = Data((0..<r.below(300)).map { _ in UInt8(truncatingIfNeeded: r.next()) })
            case 1: line = Data(repeating: UInt8(ascii: "["), count: 1 + r.below(100_000))
            case 2: line = Data("{\"image\": \"a.png\", \"caption\": \"".utf8) + Data(repeating: 0x61, count: 70_000) + Data("\"}".utf8)
            case 3: line = Data([0xFF, 0xFE]) + line
            case 4: line.append(Data("\r".utf8))
            case 5: line = Data("# comment \u{1B}[2J".utf8)
            default: break
            }
            out.append(line)
            out.append(10)
        }
        return out
    }
}
