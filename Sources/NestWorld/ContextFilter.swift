/// Which scene contexts a dataset may draw: for each named aspect, the values allowed
/// (aspects not named allow every value). Written as `aspect=value` pairs separated by
/// commas, an aspect named twice allowing both values:
/// `background=forest,style=flat,accessory=none,companion=no`. Used to write narrower
/// worlds than the whole one (one background, one style, nothing worn), e.g. to measure
/// what a model learns when the world's variety is taken away.
public struct ContextFilter: Equatable, Sendable {
    public var backgrounds: Set<Background>?
    public var positions: Set<Position>?
    public var sizes: Set<SubjectSize>?
    public var styles: Set<Style>?
    public var accessories: Set<Accessory>?
    public var companions: Set<Bool>?

    /// Allows every context.
    public static let any = ContextFilter()

    public init() {}

    /// The aspects a filter can name, for error messages.
    static let aspects = ["background", "position", "size", "style", "accessory", "companion"]

    /// Parses `aspect=value,...`; an unknown aspect or value is a one-line error naming it
    /// and listing what is allowed.
    public init(parsing text: String) throws {
        let pairs = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        for pair in pairs {
            let parts = pair.split(separator: "=", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw WorldError("context filter: '\(pair)' is not aspect=value (aspects: \(Self.aspects.joined(separator: ", ")))")
            }
            let (aspect, value) = (parts[0], parts[1])
            switch aspect {
            case "background": backgrounds = try Self.adding(value, to: backgrounds, aspect: aspect)
            case "position": positions = try Self.adding(value, to: positions, aspect: aspect)
            case "size": sizes = try Self.adding(value, to: sizes, aspect: aspect)
            case "style": styles = try Self.adding(value, to: styles, aspect: aspect)
            case "accessory": accessories = try Self.adding(value, to: accessories, aspect: aspect)
            case "companion":
                guard let flag = ["yes": true, "no": false][value] else {
                    throw WorldError("context filter: unknown companion '\(value)' (yes, no)")
                }
                companions = (companions ?? []).union([flag])
            default:
                throw WorldError("context filter: unknown aspect '\(aspect)' (\(Self.aspects.joined(separator: ", ")))")
            }
        }
    }

    static func adding<T: RawRepresentable & CaseIterable & Hashable>(_ value: String, to set: Set<T>?, aspect: String) throws -> Set<T>
    where T.RawValue == String {
        guard let parsed = T(rawValue: value) else {
            throw WorldError("context filter: unknown \(aspect) '\(value)' (\(T.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return (set ?? []).union([parsed])
    }

    /// Whether any scene passes: with `holdingOut`, some allowed background × style pair
    /// must be outside `Context.heldOutPairs` (else drawing scenes would never end).
    public func allowsSomeScene(holdingOut: Bool) -> Bool {
        guard holdingOut else { return true }
        return Background.allCases.contains { b in
            Style.allCases.contains { s in
                (backgrounds?.contains(b) ?? true) && (styles?.contains(s) ?? true)
                    && !Context(background: b, style: s).isHeldOut
            }
        }
    }

    /// Whether `context` has an allowed value in every named aspect and, with
    /// `holdingOut`, is not in a held-out background × style pair.
    public func allows(_ context: Context, holdingOut: Bool = false) -> Bool {
        !(holdingOut && context.isHeldOut)
            && (backgrounds?.contains(context.background) ?? true) && (positions?.contains(context.position) ?? true)
            && (sizes?.contains(context.size) ?? true) && (styles?.contains(context.style) ?? true)
            && (accessories?.contains(context.accessory) ?? true) && (companions?.contains(context.companion) ?? true)
    }
}
