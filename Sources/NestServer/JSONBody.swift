import Foundation

/// A request field the server refuses: answered with status 422 and a JSON body that
/// names the field, as the web UI's own validation errors do.
public struct RequestFieldError: Error, CustomStringConvertible, Equatable, Sendable {
    public let field: String
    public let problem: String
    public init(_ field: String, _ problem: String) { self.field = field; self.problem = problem }
    public var description: String { "\(field) \(problem)" }
}

/// A JSON object read field by field: each getter returns nil for a missing or null
/// field and throws `RequestFieldError` naming the field for a value of the wrong type.
struct JSONBody {
    let object: [String: Any]
    /// Prefix of the field names in errors (for objects nested in the body).
    let path: String

    init(object: [String: Any], path: String = "") { self.object = object; self.path = path }

    init(_ data: Data) throws {
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: data) } catch {
            throw RequestFieldError("body", "is not valid JSON")
        }
        guard let object = parsed as? [String: Any] else { throw RequestFieldError("body", "must be a JSON object") }
        self.init(object: object)
    }

    func raw(_ key: String) -> Any? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        return value
    }

    /// JSON numbers arrive as NSNumber; booleans too, with the type code "c".
    private func number(_ key: String) throws -> NSNumber? {
        guard let value = raw(key) else { return nil }
        guard let number = value as? NSNumber, String(cString: number.objCType) != "c" else {
            throw RequestFieldError(path + key, "must be a number")
        }
        return number
    }

    func int(_ key: String) throws -> Int? {
        guard let number = try number(key) else { return nil }
        let value = number.doubleValue
        guard value.isFinite, value == value.rounded(), abs(value) < 9e15 else {
            throw RequestFieldError(path + key, "must be a whole number, got \(number)")
        }
        return Int(value)
    }

    func float(_ key: String) throws -> Float? {
        guard let number = try number(key) else { return nil }
        return number.floatValue
    }

    /// For values that must keep Python's double arithmetic (int(steps × strength)).
    func double(_ key: String) throws -> Double? {
        try number(key)?.doubleValue
    }

    func string(_ key: String) throws -> String? {
        guard let value = raw(key) else { return nil }
        guard let text = value as? String else { throw RequestFieldError(path + key, "must be a string") }
        return text
    }

    func bool(_ key: String) throws -> Bool? {
        guard let value = raw(key) else { return nil }
        guard let number = value as? NSNumber, String(cString: number.objCType) == "c" else {
            throw RequestFieldError(path + key, "must be true or false")
        }
        return number.boolValue
    }
}
