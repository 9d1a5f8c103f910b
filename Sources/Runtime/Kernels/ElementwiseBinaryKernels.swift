import Foundation
import GraphIR

// CPU kernels of the ElementwiseBinary family: the schemas (what each op means) are in Ops/ElementwiseBinary.swift.
struct PReluGradFn: FloatFn3 {
    let slope: Bool
    @inline(__always) func f(_ g: Float, _ x: Float, _ w: Float) -> Float { slope ? (x > 0 ? 0 : x * g) : (x > 0 ? g : w * g) }
    @inline(__always) func d(_ g: Double, _ x: Double, _ w: Double) -> Double { slope ? (x > 0 ? 0 : x * g) : (x > 0 ? g : w * g) }
}
/// −(grad · (y / b))
struct DivGradFn: FloatFn3 {
    @inline(__always) func f(_ g: Float, _ y: Float, _ b: Float) -> Float { -(g * (y / b)) }
    @inline(__always) func d(_ g: Double, _ y: Double, _ b: Double) -> Double { -(g * (y / b)) }
}
/// exponent = 0 → 0, else grad · (b · a^(b−1)).
struct PowBaseGradFn: FloatFn3 {
    @inline(__always) func f(_ g: Float, _ a: Float, _ b: Float) -> Float {
        if b == 0 { return 0 }
        if b == 2 { return g * (2 * a) }
        return g * (b * powf(a, b - 1))
    }
    @inline(__always) func d(_ g: Double, _ a: Double, _ b: Double) -> Double { b == 0 ? 0 : g * (b * Foundation.pow(a, b - 1)) }
}
/// (a = 0 and b ≥ 0) → 0, else grad · (a^b · log a).
struct PowExponentGradFn: FloatFn3 {
    @inline(__always) func f(_ g: Float, _ a: Float, _ b: Float) -> Float { a == 0 && b >= 0 ? 0 : g * (powf(a, b) * logf(a)) }
    @inline(__always) func d(_ g: Double, _ a: Double, _ b: Double) -> Double {
        a == 0 && b >= 0 ? 0 : g * (Foundation.pow(a, b) * Foundation.log(a))
    }
}
/// where(a == b, grad/2, grad), zeroed where this side loses.
struct MaxMinGradFn: FloatFn3 {
    let cutWhenALess: Bool
    @inline(__always) func f(_ g: Float, _ a: Float, _ b: Float) -> Float {
        a == b ? g * 0.5 : ((cutWhenALess ? a < b : a > b) ? 0 : g)
    }
    @inline(__always) func d(_ g: Double, _ a: Double, _ b: Double) -> Double {
        a == b ? g * 0.5 : ((cutWhenALess ? a < b : a > b) ? 0 : g)
    }
}

// MARK: - Arithmetic

enum ArithOp { case add, sub, mul, div, max, min, mod, fmod }

func sameType(_ a: Tensor, _ b: Tensor, _ label: String) throws {
    guard a.dataType == b.dataType else {
        throw SegFormerError.invalid("\(label): input types differ: \(a.dataType)\(a.shape) and \(b.dataType)\(b.shape)")
    }
}

func arith(_ op: ArithOp, _ a: Tensor, _ b: Tensor, _ label: String, _ ctx: ExecutionContext) throws -> Tensor {
    try sameType(a, b, label)
    do {
        return try dispatchNumeric(a.dataType, label, ArithVisitor(op: op, a: a, b: b, ctx: ctx))
    } catch let e as SegFormerError where !e.description.contains(label) {
        throw e.prefixed(label)
    }
}

struct ArithVisitor: NumericVisitor {
    let op: ArithOp, a: Tensor, b: Tensor, ctx: ExecutionContext
    func visit<T: EWNumber>(_: T.Type) throws -> Tensor {
        let t = a.dataType
        switch op {
        case .add: return try zipBroadcast(AddF<T>(), a, b, output: t, ctx)
        case .sub: return try zipBroadcast(SubF<T>(), a, b, output: t, ctx)
        case .mul: return try zipBroadcast(MulF<T>(), a, b, output: t, ctx)
        case .div: return try zipBroadcast(DivF<T>(), a, b, output: t, ctx)
        case .max: return try zipBroadcast(MaxF<T>(), a, b, output: t, ctx)
        case .min: return try zipBroadcast(MinF<T>(), a, b, output: t, ctx)
        case .mod: return try zipBroadcast(ModF<T>(fmod: false), a, b, output: t, ctx)
        case .fmod: return try zipBroadcast(ModF<T>(fmod: true), a, b, output: t, ctx)
        }
    }
}

struct AddF<T: EWNumber>: BinaryFunction { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { T.ewAdd(a, b) } }
struct SubF<T: EWNumber>: BinaryFunction { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { T.ewSub(a, b) } }
struct MulF<T: EWNumber>: BinaryFunction { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { T.ewMul(a, b) } }
struct DivF<T: EWNumber>: BinaryFunction { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { T.ewDiv(a, b) } }
/// NaN-propagating, like numpy's maximum/minimum and PyTorch.
struct MaxF<T: EWNumber>: BinaryFunction { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { (a.ewIsNaN || a > b) ? a : b } }
struct MinF<T: EWNumber>: BinaryFunction { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { (a.ewIsNaN || a < b) ? a : b } }
struct ModF<T: EWNumber>: BinaryFunction {
    let fmod: Bool
    @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { T.ewMod(a, b, fmod: fmod) }
}
struct ShiftF<T: FixedWidthInteger>: BinaryFunction {
    let left: Bool
    // Swift's smart shifts give 0 for shift counts ≥ the bit width (no undefined behaviour).
    @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { left ? a << b : a >> b }
}

// MARK: - Pow

struct PowF: BinaryFunction {
    @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { powf(a, b) }
}
struct SquareF: UnaryFunction {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x * x }
}
struct PowD: BinaryFunction {
    @inline(__always) func callAsFunction(_ a: Double, _ b: Double) -> Double { Foundation.pow(a, b) }
}

/// Pow: the result has the base's type. float32^float32 runs in float (x^2 as x·x, which is what
/// powf returns too); every other type pair is computed in double, then cast to the base type
/// (numpy's promotion), integer results truncated toward zero.
func pow(_ a: Tensor, _ b: Tensor, _ label: String, _ ctx: ExecutionContext) throws -> Tensor {
    if a.dataType == .float && b.dataType == .float {
        // A scalar exponent that does not change the shape: x^2 (decomposed LayerNorm) and x^1.
        if b.count == 1 && b.rank <= a.rank {
            let e = b.pointer(Float.self)[0]
            if e == 2 { return mapElements(SquareF(), a, output: .float, ctx) }
            if e == 1 { return a.copy() }
        }
        return try zipBroadcast(PowF(), a, b, output: .float, ctx)
    }
    for t in [a, b] where !(t.dataType.isFloatingPoint || t.dataType.isInteger) {
        throw SegFormerError.unsupported("\(label): Pow of \(a.dataType) and \(b.dataType)")
    }
    let da = try castTensor(a, to: .double, label, ctx), db = try castTensor(b, to: .double, label, ctx)
    let r = try zipBroadcast(PowD(), da, db, output: .double, ctx)
    return try castTensor(r, to: a.dataType, label, ctx)
}

struct PReluF<T: EWNumber>: BinaryFunction {
    @inline(__always) func callAsFunction(_ x: T, _ slope: T) -> T { x < T.ewZero ? T.ewMul(slope, x) : x }
}
struct PReluVisitor: NumericVisitor {
    let x: Tensor, slope: Tensor, ctx: ExecutionContext
    func visit<T: EWNumber>(_: T.Type) throws -> Tensor { try zipBroadcast(PReluF<T>(), x, slope, output: x.dataType, ctx) }
}

// MARK: - Comparisons and logic

enum CompareOp { case equal, greater, less, greaterOrEqual, lessOrEqual }
enum LogicOp { case and, or, xor }

struct EqF<T: EWNumber>: BinaryFunction { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { T.ewEqual(a, b) } }
struct GtF<T: EWNumber>: BinaryFunction { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { a > b } }
struct LtF<T: EWNumber>: BinaryFunction { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { a < b } }
struct GeF<T: EWNumber>: BinaryFunction { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { a > b || T.ewEqual(a, b) } }
struct LeF<T: EWNumber>: BinaryFunction { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { a < b || T.ewEqual(a, b) } }
struct AndF: BinaryFunction { @inline(__always) func callAsFunction(_ a: Bool, _ b: Bool) -> Bool { a && b } }
struct OrF: BinaryFunction { @inline(__always) func callAsFunction(_ a: Bool, _ b: Bool) -> Bool { a || b } }
struct XorF: BinaryFunction { @inline(__always) func callAsFunction(_ a: Bool, _ b: Bool) -> Bool { a != b } }
struct BoolEqF: BinaryFunction { @inline(__always) func callAsFunction(_ a: Bool, _ b: Bool) -> Bool { a == b } }

struct CompareVisitor: NumericVisitor {
    let op: CompareOp, a: Tensor, b: Tensor, ctx: ExecutionContext
    func visit<T: EWNumber>(_: T.Type) throws -> Tensor {
        switch op {
        case .equal: return try zipBroadcast(EqF<T>(), a, b, output: .bool, ctx)
        case .greater: return try zipBroadcast(GtF<T>(), a, b, output: .bool, ctx)
        case .less: return try zipBroadcast(LtF<T>(), a, b, output: .bool, ctx)
        case .greaterOrEqual: return try zipBroadcast(GeF<T>(), a, b, output: .bool, ctx)
        case .lessOrEqual: return try zipBroadcast(LeF<T>(), a, b, output: .bool, ctx)
        }
    }
}

func compare(_ op: CompareOp, _ a: Tensor, _ b: Tensor, _ label: String, _ ctx: ExecutionContext) throws -> Tensor {
    try sameType(a, b, label)
    if a.dataType == .bool && op == .equal { return try zipBroadcast(BoolEqF(), a, b, output: .bool, ctx) }
    if a.dataType == .string && op == .equal {
        return try broadcastStrings(a, b, label) { $0 == $1 }
    }
    return try dispatchNumeric(a.dataType, label, CompareVisitor(op: op, a: a, b: b, ctx: ctx))
}

/// Equal on string tensors (small; index walk through the broadcast plan).
func broadcastStrings(_ a: Tensor, _ b: Tensor, _ label: String, _ f: (String, String) -> Bool) throws -> Tensor {
    let shape = try broadcastShapes(a.shape, b.shape)
    let out = Tensor(uninitialized: .bool, shape: shape)
    let po = out.pointer(Bool.self)
    let plan = BroadcastPlan(output: shape, inputs: [a.shape, b.shape])
    let ia = plan.strides[0].last!, ib = plan.strides[1].last!
    plan.forEachRun(0, out.count) { o, offs, n in
        for i in 0..<n { po[o + i] = f(a.strings[offs[0] + i * ia], b.strings[offs[1] + i * ib]) }
    }
    return out
}

// MARK: - Where

struct WhereVisitor: CastVisitor {
    let c: Tensor, x: Tensor, y: Tensor, ctx: ExecutionContext
    func visit<T: CastElement>(_: T.Type) throws -> Tensor {
        let shape = try broadcastShapes([c.shape, x.shape, y.shape])
        let out = Tensor(uninitialized: x.dataType, shape: shape)
        let pc = UnsafePointer(c.pointer(Bool.self)), px = UnsafePointer(x.pointer(T.self)), py = UnsafePointer(y.pointer(T.self))
        let po = out.pointer(T.self)
        if c.shape == shape && x.shape == shape && y.shape == shape {
            ctx.parallelFor(out.count, minimumPerChunk: elementwiseGrain) { s, e in
                for i in s..<e { po[i] = pc[i] ? px[i] : py[i] }
            }
            return out
        }
        let plan = BroadcastPlan(output: shape, inputs: [c.shape, x.shape, y.shape])
        let sc = plan.strides[0].last!, sx = plan.strides[1].last!, sy = plan.strides[2].last!
        ctx.parallelFor(out.count, minimumPerChunk: elementwiseGrain) { s, e in
            plan.forEachRun(s, e) { o, offs, n in
                let qc = pc + offs[0], qx = px + offs[1], qy = py + offs[2], qo = po + o
                for i in 0..<n { qo[i] = qc[i * sc] ? qx[i * sx] : qy[i * sy] }
            }
        }
        return out
    }
}

func whereSelect(_ c: Tensor, _ x: Tensor, _ y: Tensor, _ label: String, _ ctx: ExecutionContext) throws -> Tensor {
    guard c.dataType == .bool else { throw SegFormerError.invalid("\(label): condition must be bool, got \(c.dataType)") }
    try sameType(x, y, label)
    if x.dataType == .string {
        let shape = try broadcastShapes([c.shape, x.shape, y.shape])
        var out = Tensor(uninitialized: .string, shape: shape)
        let pc = c.pointer(Bool.self)
        let plan = BroadcastPlan(output: shape, inputs: [c.shape, x.shape, y.shape])
        let sc = plan.strides[0].last!, sx = plan.strides[1].last!, sy = plan.strides[2].last!
        var strings = [String](repeating: "", count: out.count)
        plan.forEachRun(0, out.count) { o, offs, n in
            for i in 0..<n { strings[o + i] = pc[offs[0] + i * sc] ? x.strings[offs[1] + i * sx] : y.strings[offs[2] + i * sy] }
        }
        out.strings = strings
        return out
    }
    do {
        return try dispatchCast(x.dataType, label, WhereVisitor(c: c, x: x, y: y, ctx: ctx))
    } catch let e as SegFormerError where !e.description.contains(label) {
        throw e.prefixed(label)
    }
}
