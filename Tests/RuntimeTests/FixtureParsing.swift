import Foundation
import GraphIR
import Runtime
import TestSupport

/// This target's bundled fixtures (Tests/RuntimeTests/Fixtures).
let fixtures = BundledFixtures(Bundle.module)

/// The JSON encodings the fixture generators under scripts/fixtures share, decoded strictly: anything
/// unexpected is an error naming the case.
extension FixtureRecord {
    /// `{"name": {"int": 1} | {"float": 0.5} | {"string": "x"} | {"ints": [..]} | {"floats": [..]}}`.
    func keyedAttributes(_ key: String = "attributes") throws -> [String: Attribute] {
        var attributes: [String: Attribute] = [:]
        for (name, value) in try required(key, as: [String: Any].self) {
            guard let fields = value as? [String: Any], fields.count == 1, let kind = fields.keys.first else {
                throw malformed("attribute \(name): \(value) is not one {kind: value}")
            }
            let a = FixtureRecord(fields, origin: "\(origin) attribute \(name)")
            switch kind {
            case "int": attributes[name] = .int(try a.required(kind))
            case "float": attributes[name] = .float(Float(try a.number(fields[kind]!)))
            case "string": attributes[name] = .string(try a.required(kind))
            case "ints": attributes[name] = .ints(try a.required(kind))
            case "floats": attributes[name] = .floats(try a.required(kind, as: [Any].self).map { Float(try a.number($0)) })
            default: throw a.malformed("unknown kind \(kind)")
            }
        }
        return attributes
    }

    /// A JSON number, or one of the strings "nan", "inf", "-inf" (JSON has no literals for them).
    func number(_ value: Any) throws -> Double {
        switch value {
        case "nan" as String: return .nan
        case "inf" as String: return .infinity
        case "-inf" as String: return -.infinity
        case let n as NSNumber: return n.doubleValue   // JSON numbers (and true/false, as 1/0)
        default: throw malformed("\(value) is not a number")
        }
    }

    /// The tensor under `key` when it holds `{dtype: ONNX element type number, shape, data: base64 of the
    /// little-endian bytes}` or, for strings, `{dtype: 8, shape, strings}`.
    func packedTensor(_ key: String) throws -> Tensor {
        let t = try record(key)
        let raw: Int = try t.required("dtype")
        guard let type = DataType(rawValue: Int32(raw)) else { throw t.malformed("unknown dtype \(raw)") }
        return try t.packedTensor(type)
    }

    /// This record as a packed tensor of the given element type (see `packedTensor(_:)`).
    func packedTensor(_ type: DataType) throws -> Tensor {
        let shape: [Int] = try required("shape")
        if type == .string {
            let strings: [String] = try required("strings")
            guard strings.count == shape.reduce(1, *) else { throw malformed("\(strings.count) strings for shape \(shape)") }
            return Tensor(strings: strings, shape: shape)
        }
        guard let bytes = Data(base64Encoded: try required("data", as: String.self)) else { throw malformed("data is not base64") }
        let t = Tensor(uninitialized: type, shape: shape)
        guard bytes.count == t.byteCount else { throw malformed("\(bytes.count) bytes for \(type) \(shape) (\(t.byteCount) expected)") }
        bytes.withUnsafeBytes { raw in
            if let base = raw.baseAddress, t.byteCount > 0 { t.storage.pointer.copyMemory(from: base, byteCount: t.byteCount) }
        }
        return t
    }
}
