import Foundation
import NestIO
import NestModels

/// Any key of a JSON object, to list the keys a config section actually holds.
struct AnyConfigKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension Decoder {
    /// The section being decoded, as a key path ("adapter.resampler"), for messages.
    var section: String { codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") }

    /// Refuses keys this section's `keys` do not name. A misspelled key
    /// ("lerning_rate") would otherwise be ignored and its setting silently
    /// keep the default, which shows only as a bad run hours later.
    func refuseUnknownKeys<K: CodingKey & CaseIterable>(_ keys: K.Type) throws {
        let known = K.allCases.map(\.stringValue)
        let present = try container(keyedBy: AnyConfigKey.self).allKeys.map(\.stringValue)
        // Sorted, so the same file always gives the same message.
        guard let unknown = present.filter({ !known.contains($0) }).sorted().first else { return }
        let prefix = section.isEmpty ? "" : section + ": "
        throw ModelConfigError(prefix + NameSuggestion.unknown("key", unknown, among: known))
    }
}

extension KeyedDecodingContainer {
    /// A real-valued setting, read as a Double: a value past Float's range
    /// (1e300) then reaches the range check, as infinity, with its key named,
    /// instead of failing to decode with no key in the message.
    func real(_ key: Key) throws -> Float? { try decodeIfPresent(Double.self, forKey: key).map { Float($0) } }
}

/// Range checks of config values. Each failure is one line naming the key
/// (with its section, "training.learning_rate") and the value it got.
struct ConfigCheck {
    /// "training." for keys inside `"training": {…}`, "" at the top level.
    var prefix: String

    init(section: String = "") { prefix = section.isEmpty ? "" : section + "." }

    func fail(_ key: String, _ requirement: String, _ value: Any) -> ModelConfigError {
        ModelConfigError("\(prefix)\(key) must be \(requirement), got \(value)")
    }

    /// An integer in `range` (an interval of steps, a count, a size).
    func int(_ key: String, _ value: Int?, _ range: ClosedRange<Int>) throws {
        guard let value, !range.contains(value) else { return }
        if range.upperBound == Int.max { throw fail(key, "at least \(range.lowerBound)", value) }
        throw fail(key, "between \(range.lowerBound) and \(range.upperBound)", value)
    }

    /// The allowed values of a real-valued setting.
    enum Real {
        case positive, nonNegative, probability, belowOne, any

        var requirement: String {
            switch self {
            case .positive: return "a finite number > 0"
            case .nonNegative: return "a finite number ≥ 0"
            case .probability: return "between 0 and 1"
            case .belowOne: return "≥ 0 and < 1"
            case .any: return "a finite number"
            }
        }

        func allows(_ v: Float) -> Bool {
            guard v.isFinite else { return false }
            switch self {
            case .positive: return v > 0
            case .nonNegative: return v >= 0
            case .probability: return v >= 0 && v <= 1
            case .belowOne: return v >= 0 && v < 1
            case .any: return true
            }
        }
    }

    func real(_ key: String, _ value: Float?, _ kind: Real) throws {
        guard let value, !kind.allows(value) else { return }
        throw fail(key, kind.requirement, value)
    }

    /// A name or path: not empty, and no control characters (they would
    /// break the one-line messages and logs that print it).
    func text(_ key: String, _ value: String?) throws {
        guard let value else { return }
        if value.isEmpty { throw ModelConfigError("\(prefix)\(key) must not be empty") }
        if value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw fail(key, "free of control characters", "\"\(Escaped.text(value))\"")
        }
    }
}

/// A config whose values can be checked without the model.
protocol CheckedConfig: Decodable {
    func validate() throws
}

/// Training configs are small JSON files; anything larger is not one.
let trainingConfigByteLimit = 1 << 20

/// Reads a training config (a regular file only: a FIFO or a device given as
/// the config must not hang the command), decodes it strictly and checks
/// every value. Errors are one line naming the file.
func loadTrainingConfig<T: CheckedConfig>(_ type: T.Type, from url: URL) throws -> T {
    let data: Data
    do { data = try RegularFile.read(url, limit: trainingConfigByteLimit) } catch let error as FileReadError {
        throw ModelConfigError("cannot read the config: \(Escaped.text(error.description))")
    }
    do {
        let config = try decodeConfig(type, data: data, name: url.path)
        do { try config.validate() } catch let error as ModelConfigError {
            throw ModelConfigError("\(url.path): \(error.description)")
        }
        return config
    } catch let error as ModelConfigError {
        // Decoding messages quote the file's own text (an enum value, a key):
        // made visible here so the message stays on one line.
        throw ModelConfigError(Escaped.text(error.description, limit: 2000))
    }
}
