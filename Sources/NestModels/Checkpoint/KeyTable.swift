/// How a tensor stored in an original (LDM) checkpoint becomes a diffusers parameter.
public enum KeyTransform: Equatable, Sendable {
    /// Same values, same shape.
    case same
    /// A 1×1 convolution kernel [O, I, 1, 1] used as a linear weight [O, I] (same values).
    case squeezeConvolution
    /// A matrix stored the other way round: [A, B] → [B, A].
    case transpose
    /// Part `part` of `parts` equal slices along the first axis (a fused q/k/v projection).
    case slice(part: Int, parts: Int)

    /// The parameter's shape, given the stored tensor's; nil when the transform cannot apply.
    public func shape(from stored: [Int]) -> [Int]? {
        switch self {
        case .same:
            return stored
        case .squeezeConvolution:
            guard stored.count >= 2, stored.dropFirst(2).allSatisfy({ $0 == 1 }) else { return nil }
            return Array(stored.prefix(2))
        case .transpose:
            guard stored.count == 2 else { return nil }
            return [stored[1], stored[0]]
        case let .slice(_, parts):
            guard let rows = stored.first, rows % parts == 0 else { return nil }
            return [rows / parts] + stored.dropFirst()
        }
    }
}

/// One row of a key table: a diffusers parameter-name pattern and the original name it comes from.
///
/// Patterns are dotted names in which `#` stands for one numeric component and a
/// final `*` for the rest of the name (one or more components); `original` turns
/// the numbers (in order) and the rest into the original name.
public struct KeyRule: Sendable {
    public struct Match: Sendable {
        public let numbers: [Int]
        public let rest: String
    }

    let components: [Substring]
    let original: @Sendable (Match) -> String
    let transform: @Sendable (Match) -> KeyTransform

    public init(_ pattern: String, transform: KeyTransform = .same, _ original: @escaping @Sendable (Match) -> String) {
        components = pattern.split(separator: ".", omittingEmptySubsequences: false)
        self.original = original
        self.transform = { _ in transform }
    }

    public init(_ pattern: String, transform: @escaping @Sendable (Match) -> KeyTransform,
                _ original: @escaping @Sendable (Match) -> String) {
        components = pattern.split(separator: ".", omittingEmptySubsequences: false)
        self.original = original
        self.transform = transform
    }

    /// The numbers and rest of `name` when it fits the pattern.
    func match(_ name: String) -> Match? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        var numbers: [Int] = []
        for (i, want) in components.enumerated() {
            if want == "*" {
                guard i < parts.count, i == components.count - 1 else { return nil }
                return Match(numbers: numbers, rest: parts[i...].joined(separator: "."))
            }
            guard i < parts.count else { return nil }
            if want == "#" {
                guard let n = Int(parts[i]), n >= 0, String(n) == parts[i] else { return nil }
                numbers.append(n)
            } else if want != parts[i] {
                return nil
            }
        }
        return parts.count == components.count ? Match(numbers: numbers, rest: "") : nil
    }
}

/// Where one diffusers parameter lives in an original checkpoint.
public struct MappedKey: Equatable, Sendable {
    public let original: String
    public let transform: KeyTransform

    public init(original: String, transform: KeyTransform) {
        self.original = original
        self.transform = transform
    }
}

/// An ordered list of rules under one original prefix (`model.diffusion_model.`, …):
/// the first rule whose pattern fits a parameter name decides its original name.
public struct KeyTable: Sendable {
    public let originalPrefix: String
    public let rules: [KeyRule]

    public init(originalPrefix: String, rules: [KeyRule]) {
        self.originalPrefix = originalPrefix
        self.rules = rules
    }

    /// The original tensor for a diffusers parameter name, or nil when no rule covers it.
    public func map(_ name: String) -> MappedKey? {
        for rule in rules {
            if let m = rule.match(name) {
                return MappedKey(original: originalPrefix + rule.original(m), transform: rule.transform(m))
            }
        }
        return nil
    }
}

/// Renames the first component of a dotted tail (`norm1.weight` → `in_layers.0.weight`).
func renamingHead(_ tail: String, _ renames: KeyValuePairs<String, String>) -> String {
    let head = tail.prefix { $0 != "." }
    for (new, old) in renames where head == new {
        return old + tail.dropFirst(head.count)
    }
    return tail
}

extension KeyTable {
    /// The original name of a module (not a parameter), found through its weight and without
    /// the table's prefix: `down_blocks.0.resnets.0.conv1` → `input_blocks.1.0.in_layers.2`.
    public func moduleName(_ path: String) -> String? {
        guard let key = map(path + ".weight"), key.original.hasSuffix(".weight") else { return nil }
        return String(key.original.dropFirst(originalPrefix.count).dropLast(".weight".count))
    }
}
