import Foundation
import GraphIR

// CPU kernels of the Elementwise family: the schemas (what each op means) are in Ops/Elementwise.swift.
// The shared machinery of the elementwise ops (schemas and kernels in ElementwiseBinary.swift,
// ElementwiseUnary.swift and Cast.swift): the element-type protocols (switch on the DataType once,
// then run a loop specialised for the Swift type), the broadcast plan that walks an output in
// contiguous runs, and the typed map/zip loops.

// MARK: - Element types

/// Every storable non-string element type, as seen by Cast and Where: conversion through a hub
/// (Int64 for integer→integer, Double otherwise).
protocol CastElement: TensorElement {
    static var isIntegral: Bool { get }
    var asDouble: Double { get }
    /// Integers: the value (UInt64 keeps its bit pattern). Floats: truncated toward zero, saturated.
    var asInt64: Int64 { get }
    /// Floats: rounded to nearest. Integers: truncated toward zero, saturated, NaN → 0 (ONNX leaves
    /// out-of-range float→int undefined; saturating never traps). Bool: x != 0.
    init(fromDouble d: Double)
    /// Integers: two's-complement wrap (numpy astype). Floats: rounded.
    init(fromInt64 v: Int64)
}

/// Numeric element types with arithmetic: the elementwise ops' compute types. Integer arithmetic
/// wraps (as numpy and onnxruntime do); integer division by zero gives 0 instead of trapping.
protocol EWNumber: CastElement, Comparable {
    static var isFloat: Bool { get }
    static func ewAdd(_ a: Self, _ b: Self) -> Self
    static func ewSub(_ a: Self, _ b: Self) -> Self
    static func ewMul(_ a: Self, _ b: Self) -> Self
    static func ewDiv(_ a: Self, _ b: Self) -> Self
    static func ewNeg(_ a: Self) -> Self
    /// ONNX Mod: `fmod` true → C fmod (sign of the dividend); false → sign of the divisor (integers only).
    static func ewMod(_ a: Self, _ b: Self, fmod: Bool) -> Self
    static var ewZero: Self { get }
    /// IEEE equality (BFloat16's Equatable compares bits).
    static func ewEqual(_ a: Self, _ b: Self) -> Bool
    var ewIsNaN: Bool { get }
}

extension EWNumber {
    @inline(__always) static func ewEqual(_ a: Self, _ b: Self) -> Bool { a == b }
    @inline(__always) var ewIsNaN: Bool { false }
}

@inline(__always) func saturatingInt64(_ d: Double) -> Int64 {
    if d.isNaN { return 0 }
    if d >= 9223372036854775807.0 { return .max }
    if d <= -9223372036854775808.0 { return .min }
    return Int64(d)
}

extension Bool: CastElement {
    static var isIntegral: Bool { true }
    var asDouble: Double { self ? 1 : 0 }
    var asInt64: Int64 { self ? 1 : 0 }
    init(fromDouble d: Double) { self = d != 0 }
    init(fromInt64 v: Int64) { self = v != 0 }
}

extension Float: EWNumber {
    static var isIntegral: Bool { false }
    static var isFloat: Bool { true }
    var asDouble: Double { Double(self) }
    var asInt64: Int64 { saturatingInt64(Double(self)) }
    init(fromDouble d: Double) { self = Float(d) }
    init(fromInt64 v: Int64) { self = Float(v) }
    @inline(__always) static func ewAdd(_ a: Float, _ b: Float) -> Float { a + b }
    @inline(__always) static func ewSub(_ a: Float, _ b: Float) -> Float { a - b }
    @inline(__always) static func ewMul(_ a: Float, _ b: Float) -> Float { a * b }
    @inline(__always) static func ewDiv(_ a: Float, _ b: Float) -> Float { a / b }
    @inline(__always) static func ewNeg(_ a: Float) -> Float { -a }
    static var ewZero: Float { 0 }
    @inline(__always) var ewIsNaN: Bool { isNaN }
    @inline(__always) static func ewMod(_ a: Float, _ b: Float, fmod: Bool) -> Float { Float(Foundation.fmod(Double(a), Double(b))) }
}

extension Double: EWNumber {
    static var isIntegral: Bool { false }
    static var isFloat: Bool { true }
    var asDouble: Double { self }
    var asInt64: Int64 { saturatingInt64(self) }
    init(fromDouble d: Double) { self = d }
    init(fromInt64 v: Int64) { self = Double(v) }
    @inline(__always) static func ewAdd(_ a: Double, _ b: Double) -> Double { a + b }
    @inline(__always) static func ewSub(_ a: Double, _ b: Double) -> Double { a - b }
    @inline(__always) static func ewMul(_ a: Double, _ b: Double) -> Double { a * b }
    @inline(__always) static func ewDiv(_ a: Double, _ b: Double) -> Double { a / b }
    @inline(__always) static func ewNeg(_ a: Double) -> Double { -a }
    static var ewZero: Double { 0 }
    @inline(__always) var ewIsNaN: Bool { isNaN }
    @inline(__always) static func ewMod(_ a: Double, _ b: Double, fmod: Bool) -> Double { Double(Foundation.fmod(Double(a), Double(b))) }
}

// float16 arithmetic rounds the float32 result once, which is what computing via Float means.
extension Float16: EWNumber {
    static var isIntegral: Bool { false }
    static var isFloat: Bool { true }
    var asDouble: Double { Double(Float(self)) }
    var asInt64: Int64 { saturatingInt64(Double(Float(self))) }
    init(fromDouble d: Double) { self = Float16(d) }
    init(fromInt64 v: Int64) { self = Float16(Float(v)) }
    @inline(__always) static func ewAdd(_ a: Float16, _ b: Float16) -> Float16 { Float16(Float(a) + Float(b)) }
    @inline(__always) static func ewSub(_ a: Float16, _ b: Float16) -> Float16 { Float16(Float(a) - Float(b)) }
    @inline(__always) static func ewMul(_ a: Float16, _ b: Float16) -> Float16 { Float16(Float(a) * Float(b)) }
    @inline(__always) static func ewDiv(_ a: Float16, _ b: Float16) -> Float16 { Float16(Float(a) / Float(b)) }
    @inline(__always) static func ewNeg(_ a: Float16) -> Float16 { -a }
    static var ewZero: Float16 { 0 }
    @inline(__always) var ewIsNaN: Bool { isNaN }
    @inline(__always) static func ewMod(_ a: Float16, _ b: Float16, fmod: Bool) -> Float16 { Float16(Float(Foundation.fmod(Double(a), Double(b)))) }
}

extension BFloat16: EWNumber {
    static var isIntegral: Bool { false }
    static var isFloat: Bool { true }
    var asDouble: Double { Double(float) }
    var asInt64: Int64 { saturatingInt64(Double(float)) }
    init(fromDouble d: Double) { self.init(Float(d)) }
    init(fromInt64 v: Int64) { self.init(Float(v)) }
    public static func < (a: BFloat16, b: BFloat16) -> Bool { a.float < b.float }
    @inline(__always) static func ewAdd(_ a: BFloat16, _ b: BFloat16) -> BFloat16 { BFloat16(a.float + b.float) }
    @inline(__always) static func ewSub(_ a: BFloat16, _ b: BFloat16) -> BFloat16 { BFloat16(a.float - b.float) }
    @inline(__always) static func ewMul(_ a: BFloat16, _ b: BFloat16) -> BFloat16 { BFloat16(a.float * b.float) }
    @inline(__always) static func ewDiv(_ a: BFloat16, _ b: BFloat16) -> BFloat16 { BFloat16(a.float / b.float) }
    @inline(__always) static func ewNeg(_ a: BFloat16) -> BFloat16 { BFloat16(bits: a.bits ^ 0x8000) }
    static var ewZero: BFloat16 { BFloat16(bits: 0) }
    @inline(__always) var ewIsNaN: Bool { float.isNaN }
    @inline(__always) static func ewEqual(_ a: BFloat16, _ b: BFloat16) -> Bool { a.float == b.float }
    @inline(__always) static func ewMod(_ a: BFloat16, _ b: BFloat16, fmod: Bool) -> BFloat16 { BFloat16(Float(Foundation.fmod(Double(a.float), Double(b.float)))) }
}

/// Integer arithmetic shared by all fixed-width integer types.
protocol EWInteger: EWNumber, FixedWidthInteger {}
extension EWInteger {
    static var isIntegral: Bool { true }
    static var isFloat: Bool { false }
    var asDouble: Double { Double(self) }
    var asInt64: Int64 { Int64(truncatingIfNeeded: self) }
    init(fromInt64 v: Int64) { self.init(truncatingIfNeeded: v) }
    init(fromDouble d: Double) {
        // Truncate toward zero, saturate at the type's range; NaN → 0.
        if d.isNaN { self = 0 } else if d >= Double(Self.max) { self = Self.max } else if d <= Double(Self.min) { self = Self.min } else { self = Self(d) }
    }
    @inline(__always) static func ewAdd(_ a: Self, _ b: Self) -> Self { a &+ b }
    @inline(__always) static func ewSub(_ a: Self, _ b: Self) -> Self { a &- b }
    @inline(__always) static func ewMul(_ a: Self, _ b: Self) -> Self { a &* b }
    /// C semantics: truncation toward zero. x/0 → 0 and MIN/-1 → MIN instead of trapping.
    @inline(__always) static func ewDiv(_ a: Self, _ b: Self) -> Self {
        if b == 0 { return 0 }
        return a.dividedReportingOverflow(by: b).partialValue
    }
    @inline(__always) static func ewNeg(_ a: Self) -> Self { 0 &- a }
    @inline(__always) static func ewMod(_ a: Self, _ b: Self, fmod: Bool) -> Self {
        if b == 0 { return 0 }
        let r = a.remainderReportingOverflow(dividingBy: b).partialValue
        if !fmod && r != 0 && ((r < 0) != (b < 0)) { return r &+ b }
        return r
    }
    static var ewZero: Self { 0 }
}
extension Int8: EWInteger {}
extension Int16: EWInteger {}
extension Int32: EWInteger {}
extension Int64: EWInteger {}
extension UInt8: EWInteger {}
extension UInt16: EWInteger {}
extension UInt32: EWInteger {}
extension UInt64: EWInteger {}

// MARK: - Dispatch on the element type

/// A computation generic over the numeric element type; `dispatchNumeric` picks the Swift type once.
protocol NumericVisitor {
    associatedtype Output
    func visit<T: EWNumber>(_: T.Type) throws -> Output
}

/// Like NumericVisitor but over every storable non-string type, bool included.
protocol CastVisitor {
    associatedtype Output
    func visit<T: CastElement>(_: T.Type) throws -> Output
}

// The same switch as dispatchCast below (which adds Bool): the visitors constrain T to different
// protocols, and Swift cannot abstract over a protocol constraint, so each is spelled out.
func dispatchNumeric<V: NumericVisitor>(_ type: DataType, _ what: @autoclosure () -> String, _ v: V) throws -> V.Output {
    switch type {
    case .float: return try v.visit(Float.self)
    case .double: return try v.visit(Double.self)
    case .float16: return try v.visit(Float16.self)
    case .bfloat16: return try v.visit(BFloat16.self)
    case .int8: return try v.visit(Int8.self)
    case .int16: return try v.visit(Int16.self)
    case .int32: return try v.visit(Int32.self)
    case .int64: return try v.visit(Int64.self)
    case .uint8: return try v.visit(UInt8.self)
    case .uint16: return try v.visit(UInt16.self)
    case .uint32: return try v.visit(UInt32.self)
    case .uint64: return try v.visit(UInt64.self)
    default: throw SegFormerError.unsupported("\(what()): element type \(type)")
    }
}

// dispatchNumeric's switch plus Bool; see there for why the two are not one function.
func dispatchCast<V: CastVisitor>(_ type: DataType, _ what: @autoclosure () -> String, _ v: V) throws -> V.Output {
    switch type {
    case .float: return try v.visit(Float.self)
    case .double: return try v.visit(Double.self)
    case .float16: return try v.visit(Float16.self)
    case .bfloat16: return try v.visit(BFloat16.self)
    case .int8: return try v.visit(Int8.self)
    case .int16: return try v.visit(Int16.self)
    case .int32: return try v.visit(Int32.self)
    case .int64: return try v.visit(Int64.self)
    case .uint8: return try v.visit(UInt8.self)
    case .uint16: return try v.visit(UInt16.self)
    case .uint32: return try v.visit(UInt32.self)
    case .uint64: return try v.visit(UInt64.self)
    case .bool: return try v.visit(Bool.self)
    default: throw SegFormerError.unsupported("\(what()): element type \(type)")
    }
}

// MARK: - Broadcasting

/// Elements per parallel chunk: below ~2× this a kernel stays on the calling thread.
let elementwiseGrain = 1 << 15

/// How N inputs broadcast onto an output, reduced to the fewest dimensions: size-1 output dimensions
/// are dropped and neighbouring dimensions merged wherever every input's strides allow, so that e.g.
/// [B,N,C] + [C] becomes [B·N, C] and [B,C,H,W] · [1,C,1,1] becomes [B, C, H·W]. The walker then
/// visits the output in contiguous runs along the innermost dimension, with per-run (not per-element)
/// index arithmetic.
struct BroadcastPlan {
    let outputShape: [Int]
    let count: Int
    /// Merged output dimensions, outer → inner (at least one).
    let dims: [Int]
    /// strides[k][d]: element stride of input k along merged dimension d (0 where it broadcasts).
    let strides: [[Int]]

    init(output: [Int], inputs: [[Int]]) {
        outputShape = output
        count = Tensor.elementCount(output)
        let rank = output.count
        var keptDims: [Int] = []
        var keptStrides = [[Int]](repeating: [], count: inputs.count)
        var full = [[Int]]()
        for s in inputs {
            full.append(Strides.broadcast(s, to: output))
        }
        for d in 0..<rank where output[d] != 1 {
            if let last = keptDims.last,
               (0..<inputs.count).allSatisfy({ keptStrides[$0].last! == full[$0][d] * output[d] }) {
                keptDims[keptDims.count - 1] = last * output[d]
                for k in 0..<inputs.count { keptStrides[k][keptStrides[k].count - 1] = full[k][d] }
            } else {
                keptDims.append(output[d])
                for k in 0..<inputs.count { keptStrides[k].append(full[k][d]) }
            }
        }
        if keptDims.isEmpty {
            keptDims = [1]
            keptStrides = keptStrides.map { _ in [0] }
        }
        dims = keptDims
        strides = keptStrides
    }

    var innerLength: Int { dims[dims.count - 1] }

    /// Calls `body(outputOffset, inputOffsets, runLength)` for the contiguous runs covering output
    /// elements [start, end). Along a run, input k advances by `strides[k].last` per element.
    @inline(__always)
    func forEachRun(_ start: Int, _ end: Int, _ body: (Int, UnsafeMutablePointer<Int>, Int) -> Void) {
        let r = dims.count, k = strides.count
        let index = UnsafeMutablePointer<Int>.allocate(capacity: r)
        let offsets = UnsafeMutablePointer<Int>.allocate(capacity: max(k, 1))
        defer { index.deallocate(); offsets.deallocate() }
        var rest = start
        for d in stride(from: r - 1, through: 0, by: -1) { index[d] = rest % dims[d]; rest /= dims[d] }
        for j in 0..<k {
            var o = 0
            for d in 0..<r { o += index[d] * strides[j][d] }
            offsets[j] = o
        }
        let inner = dims[r - 1]
        var pos = start
        while pos < end {
            let n = min(inner - index[r - 1], end - pos)
            body(pos, offsets, n)
            pos += n
            if pos >= end { break }
            for j in 0..<k { offsets[j] += n * strides[j][r - 1] }
            index[r - 1] += n
            var d = r - 1
            while d > 0 && index[d] == dims[d] {
                for j in 0..<k { offsets[j] -= dims[d] * strides[j][d] }
                index[d] = 0
                d -= 1
                index[d] += 1
                for j in 0..<k { offsets[j] += strides[j][d] }
            }
        }
    }
}

// MARK: - Typed loops

/// A binary elementwise function on typed elements.
protocol BinaryFunction {
    associatedtype A
    associatedtype B
    associatedtype R
    func callAsFunction(_ a: A, _ b: B) -> R
}

/// out = f(a, b) with numpy broadcasting. Fast paths: equal shapes, a scalar on either side, and
/// contiguous runs (vector·vector, vector·scalar, scalar·vector) for general broadcasts.
func zipBroadcast<F: BinaryFunction>(_ f: F, _ a: Tensor, _ b: Tensor, output outType: DataType,
                                     _ context: ExecutionContext) throws -> Tensor {
    let shape = try broadcastShapes(a.shape, b.shape)
    let out = Tensor(uninitialized: outType, shape: shape)
    let pa = UnsafePointer(a.pointer(F.A.self)), pb = UnsafePointer(b.pointer(F.B.self))
    let po = out.pointer(F.R.self)
    let total = out.count
    if total == 0 { return out }
    if a.count == total && b.count == total {
        context.parallelFor(total, minimumPerChunk: elementwiseGrain) { s, e in
            zipVV(f, pa + s, pb + s, po + s, e - s)
        }
    } else if b.count == 1 && a.count == total {
        let sb = pb[0]
        context.parallelFor(total, minimumPerChunk: elementwiseGrain) { s, e in
            zipVS(f, pa + s, sb, po + s, e - s)
        }
    } else if a.count == 1 && b.count == total {
        let sa = pa[0]
        context.parallelFor(total, minimumPerChunk: elementwiseGrain) { s, e in
            zipSV(f, sa, pb + s, po + s, e - s)
        }
    } else {
        let plan = BroadcastPlan(output: shape, inputs: [a.shape, b.shape])
        let ia = plan.strides[0].last!, ib = plan.strides[1].last!
        context.parallelFor(total, minimumPerChunk: elementwiseGrain) { s, e in
            plan.forEachRun(s, e) { o, offs, n in
                let xa = pa + offs[0], xb = pb + offs[1], xo = po + o
                switch (ia, ib) {
                case (1, 1): zipVV(f, xa, xb, xo, n)
                case (1, 0): zipVS(f, xa, xb[0], xo, n)
                case (0, 1): zipSV(f, xa[0], xb, xo, n)
                default: for i in 0..<n { xo[i] = f(xa[i * ia], xb[i * ib]) }
                }
            }
        }
    }
    return out
}

@inline(__always)
func zipVV<F: BinaryFunction>(_ f: F, _ a: UnsafePointer<F.A>, _ b: UnsafePointer<F.B>, _ o: UnsafeMutablePointer<F.R>, _ n: Int) {
    for i in 0..<n { o[i] = f(a[i], b[i]) }
}
@inline(__always)
func zipVS<F: BinaryFunction>(_ f: F, _ a: UnsafePointer<F.A>, _ b: F.B, _ o: UnsafeMutablePointer<F.R>, _ n: Int) {
    for i in 0..<n { o[i] = f(a[i], b) }
}
@inline(__always)
func zipSV<F: BinaryFunction>(_ f: F, _ a: F.A, _ b: UnsafePointer<F.B>, _ o: UnsafeMutablePointer<F.R>, _ n: Int) {
    for i in 0..<n { o[i] = f(a, b[i]) }
}

/// A unary elementwise function on typed elements.
protocol UnaryFunction {
    associatedtype S
    associatedtype D
    func callAsFunction(_ x: S) -> D
}

/// out = f(x), same shape, split across threads for large tensors.
func mapElements<F: UnaryFunction>(_ f: F, _ x: Tensor, output outType: DataType, _ context: ExecutionContext) -> Tensor {
    let out = Tensor(uninitialized: outType, shape: x.shape)
    let px = UnsafePointer(x.pointer(F.S.self)), po = out.pointer(F.D.self)
    context.parallelFor(out.count, minimumPerChunk: elementwiseGrain) { s, e in
        mapRange(f, px + s, po + s, e - s)
    }
    return out
}

@inline(__always)
func mapRange<F: UnaryFunction>(_ f: F, _ x: UnsafePointer<F.S>, _ o: UnsafeMutablePointer<F.D>, _ n: Int) {
    for i in 0..<n { o[i] = f(x[i]) }
}

// MARK: - Gradient kernels (training domain)

/// out = f(a, b, c) with numpy broadcasting of all three: the loop of the fused gradient kernels
/// (e.g. MaxGrad(dY, A, B), PowGrad(dY, A, B)). Equal shapes take one flat pass; otherwise the
/// output is walked in contiguous runs.
protocol TernaryFunction {
    associatedtype A
    associatedtype B
    associatedtype C
    associatedtype R
    func callAsFunction(_ a: A, _ b: B, _ c: C) -> R
}

func zip3Broadcast<F: TernaryFunction>(_ f: F, _ a: Tensor, _ b: Tensor, _ c: Tensor, output outType: DataType,
                                       _ context: ExecutionContext) throws -> Tensor {
    let shape = try broadcastShapes([a.shape, b.shape, c.shape])
    let out = Tensor(uninitialized: outType, shape: shape)
    let total = out.count
    if total == 0 { return out }
    let pa = UnsafePointer(a.pointer(F.A.self)), pb = UnsafePointer(b.pointer(F.B.self))
    let pc = UnsafePointer(c.pointer(F.C.self)), po = out.pointer(F.R.self)
    if a.count == total && b.count == total && c.count == total {
        context.parallelFor(total, minimumPerChunk: elementwiseGrain) { s, e in
            for i in s..<e { po[i] = f(pa[i], pb[i], pc[i]) }
        }
        return out
    }
    if a.count == total && b.count == total && c.count == 1 {
        // e.g. PowGrad(dY, X, 2): a flat pass with the scalar hoisted.
        let vc = pc[0]
        context.parallelFor(total, minimumPerChunk: elementwiseGrain) { s, e in
            for i in s..<e { po[i] = f(pa[i], pb[i], vc) }
        }
        return out
    }
    let plan = BroadcastPlan(output: shape, inputs: [a.shape, b.shape, c.shape])
    let sa = plan.strides[0].last!, sb = plan.strides[1].last!, sc = plan.strides[2].last!
    context.parallelFor(total, minimumPerChunk: elementwiseGrain) { s, e in
        plan.forEachRun(s, e) { o, offs, n in
            let xa = pa + offs[0], xb = pb + offs[1], xc = pc + offs[2], xo = po + o
            if sa == 1 && sb == 1 && sc == 1 {
                for i in 0..<n { xo[i] = f(xa[i], xb[i], xc[i]) }
            } else if sa == 1 && sb == 1 && sc == 0 {
                let vc = xc[0]
                for i in 0..<n { xo[i] = f(xa[i], xb[i], vc) }
            } else if sa == 1 && sb == 0 && sc == 0 {
                let vb = xb[0], vc = xc[0]
                for i in 0..<n { xo[i] = f(xa[i], vb, vc) }
            } else {
                for i in 0..<n { xo[i] = f(xa[i * sa], xb[i * sb], xc[i * sc]) }
            }
        }
    }
    return out
}

/// A float function of two values (e.g. gradient and forward value), given for float32 (also used
/// by float16/bfloat16, which compute in float32) and float64.
protocol FloatFn2 {
    func f(_ a: Float, _ b: Float) -> Float
    func d(_ a: Double, _ b: Double) -> Double
    /// A whole-array float32 routine from CKernels for two operands of one shape (as FloatFn's).
    var bulkFloat: ((UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void)? { get }
}

extension FloatFn2 {
    var bulkFloat: ((UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void)? { nil }
}
struct On2Float<F: FloatFn2>: BinaryFunction { let fn: F; @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { fn.f(a, b) } }
struct On2Double<F: FloatFn2>: BinaryFunction { let fn: F; @inline(__always) func callAsFunction(_ a: Double, _ b: Double) -> Double { fn.d(a, b) } }
struct On2Half<F: FloatFn2>: BinaryFunction { let fn: F; @inline(__always) func callAsFunction(_ a: Float16, _ b: Float16) -> Float16 { Float16(fn.f(Float(a), Float(b))) } }
struct On2BFloat<F: FloatFn2>: BinaryFunction { let fn: F; @inline(__always) func callAsFunction(_ a: BFloat16, _ b: BFloat16) -> BFloat16 { BFloat16(fn.f(a.float, b.float)) } }

func floatBinary<F: FloatFn2>(_ fn: F, _ a: Tensor, _ b: Tensor, _ label: String, _ ctx: ExecutionContext) throws -> Tensor {
    try sameType(a, b, label)
    switch a.dataType {
    case .float:
        if let bulk = fn.bulkFloat, a.shape == b.shape {
            let y = Tensor(uninitialized: .float, shape: a.shape)
            let pa = UnsafePointer(a.pointer(Float.self)), pb = UnsafePointer(b.pointer(Float.self)), py = y.pointer(Float.self)
            ctx.parallelFor(y.count, minimumPerChunk: 1 << 15) { start, end in bulk(pa + start, pb + start, py + start, end - start) }
            return y
        }
        return try zipBroadcast(On2Float(fn: fn), a, b, output: .float, ctx)
    case .double: return try zipBroadcast(On2Double(fn: fn), a, b, output: .double, ctx)
    case .float16: return try zipBroadcast(On2Half(fn: fn), a, b, output: .float16, ctx)
    case .bfloat16: return try zipBroadcast(On2BFloat(fn: fn), a, b, output: .bfloat16, ctx)
    default: throw SegFormerError.unsupported("\(label): element type \(a.dataType)")
    }
}

/// A float function of three values, as FloatFn2.
protocol FloatFn3 {
    func f(_ a: Float, _ b: Float, _ c: Float) -> Float
    func d(_ a: Double, _ b: Double, _ c: Double) -> Double
}
struct On3Float<F: FloatFn3>: TernaryFunction { let fn: F; @inline(__always) func callAsFunction(_ a: Float, _ b: Float, _ c: Float) -> Float { fn.f(a, b, c) } }
struct On3Double<F: FloatFn3>: TernaryFunction { let fn: F; @inline(__always) func callAsFunction(_ a: Double, _ b: Double, _ c: Double) -> Double { fn.d(a, b, c) } }
struct On3Half<F: FloatFn3>: TernaryFunction {
    let fn: F
    @inline(__always) func callAsFunction(_ a: Float16, _ b: Float16, _ c: Float16) -> Float16 { Float16(fn.f(Float(a), Float(b), Float(c))) }
}
struct On3BFloat<F: FloatFn3>: TernaryFunction {
    let fn: F
    @inline(__always) func callAsFunction(_ a: BFloat16, _ b: BFloat16, _ c: BFloat16) -> BFloat16 { BFloat16(fn.f(a.float, b.float, c.float)) }
}

func floatTernary<F: FloatFn3>(_ fn: F, _ a: Tensor, _ b: Tensor, _ c: Tensor, _ label: String, _ ctx: ExecutionContext) throws -> Tensor {
    try sameType(a, b, label)
    try sameType(a, c, label)
    switch a.dataType {
    case .float: return try zip3Broadcast(On3Float(fn: fn), a, b, c, output: .float, ctx)
    case .double: return try zip3Broadcast(On3Double(fn: fn), a, b, c, output: .double, ctx)
    case .float16: return try zip3Broadcast(On3Half(fn: fn), a, b, c, output: .float16, ctx)
    case .bfloat16: return try zip3Broadcast(On3BFloat(fn: fn), a, b, c, output: .bfloat16, ctx)
    default: throw SegFormerError.unsupported("\(label): element type \(a.dataType)")
    }
}
