import Foundation

/// One object of a JSON fixture, read strictly: a missing key or a value of another type throws an
/// error naming the fixture file, the case and the key, so a malformed case fails its test instead
/// of being dropped or crashing the run.
public struct FixtureRecord {
    public let fields: [String: Any]
    /// Where this object comes from, e.g. `normops_cases.json case "softmax_axis_0"`; every error starts with it.
    public let origin: String

    public init(_ fields: [String: Any], origin: String) {
        self.fields = fields
        self.origin = origin
    }

    /// The objects of a JSON array file, each named in errors by its `nameKey` field (or its index).
    public static func list(_ data: Data, file: String, nameKey: String = "name") throws -> [FixtureRecord] {
        guard let array = try JSONSerialization.jsonObject(with: data) as? [Any] else {
            throw MalformedFixture("\(file): the top level is not a JSON array")
        }
        return try array.enumerated().map { index, element in
            guard let fields = element as? [String: Any] else { throw MalformedFixture("\(file) case \(index): not a JSON object") }
            let name = (fields[nameKey] as? String).map { "\"\($0)\"" } ?? "\(index)"
            return FixtureRecord(fields, origin: "\(file) case \(name)")
        }
    }

    /// The value of `key`; throws when it is absent or of another type.
    public func required<T>(_ key: String, as _: T.Type = T.self) throws -> T {
        guard let raw = fields[key], !(raw is NSNull) else { throw malformed("no \"\(key)\"") }
        guard let value = raw as? T else { throw malformed("\"\(key)\" is \(raw), not \(T.self)") }
        return value
    }

    /// The value of `key`, nil when it is absent or null; throws when it is of another type.
    public func optional<T>(_ key: String, as _: T.Type = T.self) throws -> T? {
        guard let raw = fields[key], !(raw is NSNull) else { return nil }
        guard let value = raw as? T else { throw malformed("\"\(key)\" is \(raw), not \(T.self)") }
        return value
    }

    /// The object under `key`, with this record's origin extended by the key.
    public func record(_ key: String) throws -> FixtureRecord {
        FixtureRecord(try required(key, as: [String: Any].self), origin: "\(origin) \(key)")
    }

    /// The array of objects under `key`, each decoded by `decode` as a record named `key index`.
    public func objects<T>(_ key: String, _ decode: (FixtureRecord) throws -> T) throws -> [T] {
        try objectsOrNulls(key, decode).enumerated().map { i, value in
            guard let value else { throw malformed("\(key) \(i) is null") }
            return value
        }
    }

    /// Like `objects`, with JSON nulls kept as nil (an absent optional input).
    public func objectsOrNulls<T>(_ key: String, _ decode: (FixtureRecord) throws -> T) throws -> [T?] {
        try required(key, as: [Any].self).enumerated().map { i, value in
            if value is NSNull { return nil }
            guard let fields = value as? [String: Any] else { throw malformed("\(key) \(i) is \(value), not an object") }
            return try decode(FixtureRecord(fields, origin: "\(origin) \(key) \(i)"))
        }
    }

    /// An error naming this record and what is wrong with it.
    public func malformed(_ why: String) -> MalformedFixture { MalformedFixture("\(origin): \(why)") }
}

/// A fixture whose content does not have the expected form.
public struct MalformedFixture: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
