import Foundation
import GraphIR

// CPU kernels of the Cast family: the schemas (what each op means) are in Ops/Cast.swift.
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
