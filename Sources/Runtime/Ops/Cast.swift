import Foundation
import GraphIR

// Cast and CastLike between float32/64, float16, bfloat16, every int/uint width, bool and string.
// float8 / 4-bit / 2-bit types are refused as unsupported. `saturate` only matters for float8, so it is
// accepted and ignored. Opsets up to 28 are accepted: versions after 13 only added element types (float8, 4-, 2-, 6-bit),
// which this kernel refuses by name.

extension OpRegistry {
    static let castOps: [OpSchema] = [
        OpSchema(OpType.cast, opsets: 6...28, inputs: 1...1, inferTypes: { ctx in
            guard let raw = try ctx.node.int("to"), let to = DataType(rawValue: Int32(truncatingIfNeeded: raw)) else { return [nil] }
            return [TensorType(to, ctx.type(0)?.shape)]
        }) { node, _ in
            let label = node.opType
            guard let raw = try node.int("to") else { throw SegFormerError.invalid("\(label): missing attribute 'to'") }
            guard let to = DataType(rawValue: Int32(truncatingIfNeeded: raw)), to != .undefined else {
                throw SegFormerError.invalid("\(label): attribute 'to' = \(raw) is not an ONNX element type")
            }
            try checkCastable(to, label)
            return ClosureKernel { inputs, ctx in [try castTensor(try inputs.required(0), to: to, label, ctx)] }
        }.withGradient { c in
            guard c.needs(0), let raw = try c.node.int("to"),
                  DataType(rawValue: Int32(truncatingIfNeeded: raw))?.isFloatingPoint == true else { return [nil] }
            return [try castGradient(c)]
        }
        .withSymbolicValue { ctx in
            // Shape arithmetic often casts between integer types; the contents stay the same.
            guard let raw = try ctx.node.int("to"), DataType(rawValue: Int32(truncatingIfNeeded: raw))?.isInteger == true else { return nil }
            return ctx.symbols(0)
        },
        OpSchema("CastLike", opsets: 15...28, inputs: 2...2, inferTypes: { ctx in
            guard let like = ctx.type(1) else { return [nil] }
            return [TensorType(like.dataType, ctx.type(0)?.shape)]
        }) { node, _ in
            let label = node.opType
            return ClosureKernel { inputs, ctx in
                [try castTensor(try inputs.required(0), to: try inputs.required(1).dataType, label, ctx)]
            }
        }.withGradient { c in [c.needs(0) ? try castGradient(c) : nil, nil] },
        // CastGrad(dY, X): dY converted to X's element type when X is floating point (only X's type is
        // read). Used when the graph does not record X's type.
        OpSchema("CastGrad", domain: trainingDomain, inputs: 2...2, inferTypes: { ctx in
            guard let g = ctx.type(0) else { return [nil] }
            guard let x = ctx.type(1) else { return [nil] }
            return [TensorType(x.dataType.isFloatingPoint ? x.dataType : g.dataType, g.shape)]
        }) { node, _ in
            let label = node.label
            return ClosureKernel { inputs, ctx in
                let g = try inputs.required(0), x = try inputs.required(1)
                return [x.dataType.isFloatingPoint ? try castTensor(g, to: x.dataType, label, ctx) : g]
            }
        },
    ]
}

/// Gradient of a float→float cast: the incoming gradient cast back to the input's float type. An
/// integer or bool input gets none.
private func castGradient(_ c: GradientContext) throws -> String? {
    let g = try c.gradient()
    if let t = c.knownType(of: c.input(0)) {
        guard t.isFloatingPoint else { return nil }
        return c.builder.add1(OpType.cast, [g], attributes: ["to": .int(Int(t.rawValue))])
    }
    return c.builder.add1("CastGrad", domain: trainingDomain, [g, c.input(0)])
}

func checkCastable(_ t: DataType, _ label: String) throws {
    guard t == .string || t == .bool || t.isFloatingPoint || t.isInteger else {
        throw SegFormerError.unsupported("\(label): cannot convert to or from \(t)")
    }
}

/// `x` converted to element type `to` (a shared view when the type already matches).
func castTensor(_ x: Tensor, to: DataType, _ label: String, _ ctx: ExecutionContext) throws -> Tensor {
    try checkCastable(to, label)
    try checkCastable(x.dataType, label)
    if x.dataType == to { return x }
    if to == .string { return try castToString(x, label) }
    if x.dataType == .string { return try castFromString(x, to: to, label, ctx) }
    return try dispatchCast(x.dataType, label, CastFromVisitor(x: x, to: to, label: label, ctx: ctx))
}

struct ConvertF<S: CastElement, D: CastElement>: UnaryFunction {
    @inline(__always) func callAsFunction(_ x: S) -> D {
        if S.isIntegral && D.isIntegral { return D(fromInt64: x.asInt64) }
        return D(fromDouble: x.asDouble)
    }
}
/// The hot conversions written directly (no trip through Double).
struct FloatToHalfF: UnaryFunction { @inline(__always) func callAsFunction(_ x: Float) -> Float16 { Float16(x) } }
struct HalfToFloatF: UnaryFunction { @inline(__always) func callAsFunction(_ x: Float16) -> Float { Float(x) } }
struct FloatToBFloatF: UnaryFunction { @inline(__always) func callAsFunction(_ x: Float) -> BFloat16 { BFloat16(x) } }
struct BFloatToFloatF: UnaryFunction { @inline(__always) func callAsFunction(_ x: BFloat16) -> Float { x.float } }

struct CastFromVisitor: CastVisitor {
    let x: Tensor, to: DataType, label: String, ctx: ExecutionContext
    func visit<S: CastElement>(_: S.Type) throws -> Tensor {
        switch (x.dataType, to) {
        case (.float, .float16): return mapElements(FloatToHalfF(), x, output: to, ctx)
        case (.float16, .float): return mapElements(HalfToFloatF(), x, output: to, ctx)
        case (.float, .bfloat16): return mapElements(FloatToBFloatF(), x, output: to, ctx)
        case (.bfloat16, .float): return mapElements(BFloatToFloatF(), x, output: to, ctx)
        default: return try dispatchCast(to, label, CastToVisitor<S>(x: x, ctx: ctx))
        }
    }
}

struct CastToVisitor<S: CastElement>: CastVisitor {
    let x: Tensor, ctx: ExecutionContext
    func visit<D: CastElement>(_: D.Type) throws -> Tensor {
        mapElements(ConvertF<S, D>(), x, output: D.dataType, ctx)
    }
}

// MARK: - Strings

func castToString(_ x: Tensor, _ label: String) throws -> Tensor {
    var out = Tensor(uninitialized: .string, shape: x.shape)
    let n = x.count
    var s = [String](); s.reserveCapacity(n)
    switch x.dataType {
    case .bool: s = x.buffer(Bool.self).map { $0 ? "True" : "False" }
    case .float: s = x.buffer(Float.self).map(formatFloat)
    case .double: s = x.buffer(Double.self).map(formatFloat)
    case .float16: s = x.buffer(Float16.self).map { formatFloat(Float($0)) }
    case .bfloat16: s = x.buffer(BFloat16.self).map { formatFloat($0.float) }
    case .uint64: s = x.buffer(UInt64.self).map { String($0) }
    default: s = try x.integers().map { String($0) }
    }
    out.strings = s
    return out
}

private func formatFloat<T: BinaryFloatingPoint & LosslessStringConvertible>(_ v: T) -> String {
    if v.isNaN { return "NaN" }
    if v.isInfinite { return v < 0 ? "-INF" : "INF" }
    return v.description
}

func castFromString(_ x: Tensor, to: DataType, _ label: String, _ ctx: ExecutionContext) throws -> Tensor {
    // Parse to double (or int64 for integer targets, keeping 64-bit precision), then cast.
    if to.isInteger || to == .bool {
        var values = [Int64](); values.reserveCapacity(x.count)
        for s in x.strings {
            let t = s.trimmingCharacters(in: .whitespaces)
            if let v = Int64(t) { values.append(v) } else if let d = Double(t) { values.append(saturatingInt64(d)) } else {
                throw SegFormerError.invalid("\(label): cannot parse '\(s)' as \(to)")
            }
        }
        return try castTensor(Tensor(values, shape: x.shape), to: to, label, ctx)
    }
    var values = [Double](); values.reserveCapacity(x.count)
    for s in x.strings {
        let t = s.trimmingCharacters(in: .whitespaces)
        switch t.lowercased() {
        case "nan", "-nan": values.append(.nan)
        case "inf", "+inf", "infinity", "+infinity": values.append(.infinity)
        case "-inf", "-infinity": values.append(-.infinity)
        default:
            guard let d = Double(t) else { throw SegFormerError.invalid("\(label): cannot parse '\(s)' as \(to)") }
            values.append(d)
        }
    }
    return try castTensor(Tensor(values, shape: x.shape), to: to, label, ctx)
}
