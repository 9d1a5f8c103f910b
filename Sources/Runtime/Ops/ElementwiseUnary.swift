import Foundation
import GraphIR
import CKernels

// Unary elementwise ops: float math (float32 / float64 / float16 / bfloat16; the two 16-bit types
// compute in float32), sign-like ops also on integers, Clip, Gelu, IsNaN / IsInf, Not.

extension OpRegistry {
    static let unaryElementwiseOps: [OpSchema] = {
        var ops: [OpSchema] = []
        /// A float op without attributes.
        func float<F: FloatFn>(_ name: String, _ opsets: ClosedRange<Int>, _ fn: F) {
            ops.append(OpSchema(name, opsets: opsets, inputs: 1...1, inferTypes: inferSameShape()) { node, _ in
                let label = node.opType
                return ClosureKernel { inputs, ctx in [try floatUnary(fn, try inputs.required(0), label, ctx)] }
            })
        }
        /// A float op whose function is built from the node's attributes.
        func floatAttr<F: FloatFn>(_ name: String, _ opsets: ClosedRange<Int>, _ make: @escaping (Node) throws -> F) {
            ops.append(OpSchema(name, opsets: opsets, inputs: 1...1, inferTypes: inferSameShape()) { node, _ in
                let label = node.opType
                let fn = try make(node)
                return ClosureKernel { inputs, ctx in [try floatUnary(fn, try inputs.required(0), label, ctx)] }
            })
        }
        /// Ops defined on floats and on integers (signed integers for Neg/Abs/Sign).
        func numeric<F: FloatFn, I: IntegerFn>(_ name: String, _ opsets: ClosedRange<Int>, _ fn: F, _ ifn: I) {
            ops.append(OpSchema(name, opsets: opsets, inputs: 1...1, inferTypes: inferSameShape()) { node, _ in
                let label = node.opType
                return ClosureKernel { inputs, ctx in
                    let x = try inputs.required(0)
                    if x.dataType.isFloatingPoint { return [try floatUnary(fn, x, label, ctx)] }
                    return [try dispatchNumeric(x.dataType, label, IntegerUnaryVisitor(fn: ifn, x: x, ctx: ctx))]
                }
            })
        }
        numeric("Neg", 6...23, NegFn(), NegIntFn())
        numeric("Abs", 6...23, AbsFn(), AbsIntFn())
        numeric("Sign", 9...23, SignFn(), SignIntFn())
        numeric("Relu", 6...23, ReluFn(), ReluIntFn())
        float("Sqrt", 6...23, SqrtFn())
        float("Reciprocal", 6...23, ReciprocalFn())
        float("Exp", 6...23, ExpFn())
        float("Log", 6...23, LogFn())
        float("Erf", 9...23, ErfFn())
        float("Sigmoid", 6...23, SigmoidFn())
        float("Tanh", 6...23, TanhFn())
        float("Floor", 6...23, FloorFn())
        float("Ceil", 6...23, CeilFn())
        float("Round", 11...23, RoundFn())
        float("Softplus", 1...23, SoftplusFn())
        float("Softsign", 1...23, SoftsignFn())
        float("HardSwish", 14...23, HardSwishFn())
        float("Mish", 18...23, MishFn())
        for (name, fn) in [("Sin", sin), ("Cos", cos), ("Tan", tan), ("Asin", asin), ("Acos", acos), ("Atan", atan),
                           ("Sinh", sinh), ("Cosh", cosh), ("Asinh", asinh), ("Acosh", acosh), ("Atanh", atanh)] as [(String, (Double) -> Double)] {
            float(name, 7...23, LibmFn(fn: fn))
        }
        floatAttr("ThresholdedRelu", 10...23) { ThresholdedReluFn(alpha: try $0.float("alpha", default: 1)) }
        floatAttr("LeakyRelu", 6...23) { LeakyReluFn(alpha: try $0.float("alpha", default: 0.01)) }
        floatAttr("Elu", 6...23) { EluFn(alpha: try $0.float("alpha", default: 1)) }
        floatAttr("Selu", 6...23) {
            SeluFn(alpha: try $0.float("alpha", default: 1.67326319217681884765625),
                   gamma: try $0.float("gamma", default: 1.05070102214813232421875))
        }
        floatAttr("HardSigmoid", 6...23) {
            HardSigmoidFn(alpha: try $0.float("alpha", default: 0.2), beta: try $0.float("beta", default: 0.5))
        }
        ops.append(OpSchema("Gelu", opsets: 20...23, inputs: 1...1, inferTypes: inferSameShape()) { node, _ in
            let label = node.opType
            let mode = try node.string("approximate", default: "none")
            guard mode == "none" || mode == "tanh" else {
                throw SegFormerError.invalid("\(label): approximate must be 'none' or 'tanh', got '\(mode)'")
            }
            return ClosureKernel { inputs, ctx in
                let x = try inputs.required(0)
                return [mode == "tanh" ? try floatUnary(GeluTanhFn(), x, label, ctx) : try floatUnary(GeluFn(), x, label, ctx)]
            }
        })
        ops.append(OpSchema("IsNaN", opsets: 9...23, inputs: 1...1, inferTypes: inferSameShape(resultType: .bool)) { node, _ in
            let label = node.opType
            return ClosureKernel { inputs, ctx in [try floatPredicate(IsNaNFn(), try inputs.required(0), label, ctx)] }
        })
        ops.append(OpSchema("IsInf", opsets: 10...23, inputs: 1...1, inferTypes: inferSameShape(resultType: .bool)) { node, _ in
            let label = node.opType
            let fn = IsInfFn(negative: try node.int("detect_negative", default: 1) != 0,
                             positive: try node.int("detect_positive", default: 1) != 0)
            return ClosureKernel { inputs, ctx in [try floatPredicate(fn, try inputs.required(0), label, ctx)] }
        })
        ops.append(OpSchema("Not", opsets: 1...23, inputs: 1...1, inferTypes: inferSameShape()) { node, _ in
            let label = node.opType
            return ClosureKernel { inputs, ctx in
                let x = try inputs.required(0)
                guard x.dataType == .bool else { throw SegFormerError.invalid("\(label): input must be bool, got \(x.dataType)") }
                return [mapElements(NotF(), x, output: .bool, ctx)]
            }
        })
        ops.append(OpSchema("Clip", opsets: 6...23, inputs: 1...3, inferTypes: inferSameShape()) { node, opset in
            let label = node.opType
            // Opsets 6–10 carry the bounds as attributes, 11+ as optional scalar inputs.
            let attrMin = opset < 11 ? Double(try node.float("min", default: -Float.greatestFiniteMagnitude)) : nil
            let attrMax = opset < 11 ? Double(try node.float("max", default: Float.greatestFiniteMagnitude)) : nil
            return ClosureKernel { inputs, ctx in
                let x = try inputs.required(0)
                func bound(_ i: Int) throws -> Tensor? {
                    guard let t = inputs.optional(i) else { return nil }
                    guard t.count == 1 else { throw SegFormerError.invalid("\(label): bound #\(i) must be a scalar, has shape \(t.shape)") }
                    try sameType(x, t, label)
                    return t
                }
                let v = ClipVisitor(x: x, lo: try bound(1), hi: try bound(2), attrMin: attrMin, attrMax: attrMax, ctx: ctx)
                return [try dispatchNumeric(x.dataType, label, v)]
            }
        })
        return ops
    }()
}

// MARK: - Float functions

/// A float function given for float32 (also used by float16/bfloat16) and float64.
protocol FloatFn {
    func f(_ x: Float) -> Float
    func d(_ x: Double) -> Double
    /// A whole-array float32 routine from CKernels (vectorised per instruction set), if there is one.
    var bulkFloat: ((UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void)? { get }
}

extension FloatFn {
    var bulkFloat: ((UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void)? { nil }
}

struct OnFloat<F: FloatFn>: UnaryFunction { let fn: F; @inline(__always) func callAsFunction(_ x: Float) -> Float { fn.f(x) } }
struct OnDouble<F: FloatFn>: UnaryFunction { let fn: F; @inline(__always) func callAsFunction(_ x: Double) -> Double { fn.d(x) } }
struct OnHalf<F: FloatFn>: UnaryFunction { let fn: F; @inline(__always) func callAsFunction(_ x: Float16) -> Float16 { Float16(fn.f(Float(x))) } }
struct OnBFloat<F: FloatFn>: UnaryFunction { let fn: F; @inline(__always) func callAsFunction(_ x: BFloat16) -> BFloat16 { BFloat16(fn.f(x.float)) } }

func floatUnary<F: FloatFn>(_ fn: F, _ x: Tensor, _ label: String, _ ctx: ExecutionContext) throws -> Tensor {
    switch x.dataType {
    case .float:
        if let bulk = fn.bulkFloat {
            let y = Tensor(uninitialized: .float, shape: x.shape)
            let src = x.pointer(Float.self), dst = y.pointer(Float.self)
            ctx.parallelFor(x.count, minimumPerChunk: 1 << 15) { start, end in bulk(src + start, dst + start, end - start) }
            return y
        }
        return mapElements(OnFloat(fn: fn), x, output: .float, ctx)
    case .double: return mapElements(OnDouble(fn: fn), x, output: .double, ctx)
    case .float16: return mapElements(OnHalf(fn: fn), x, output: .float16, ctx)
    case .bfloat16: return mapElements(OnBFloat(fn: fn), x, output: .bfloat16, ctx)
    default: throw SegFormerError.unsupported("\(label): element type \(x.dataType)")
    }
}

struct NegFn: FloatFn { func f(_ x: Float) -> Float { -x }; func d(_ x: Double) -> Double { -x } }
struct AbsFn: FloatFn { func f(_ x: Float) -> Float { Swift.abs(x) }; func d(_ x: Double) -> Double { Swift.abs(x) } }
struct SignFn: FloatFn {
    func f(_ x: Float) -> Float { x > 0 ? 1 : (x < 0 ? -1 : (x.isNaN ? x : 0)) }
    func d(_ x: Double) -> Double { x > 0 ? 1 : (x < 0 ? -1 : (x.isNaN ? x : 0)) }
}
/// x < 0 ? 0 : x keeps NaN (as PyTorch does).
struct ReluFn: FloatFn { func f(_ x: Float) -> Float { x < 0 ? 0 : x }; func d(_ x: Double) -> Double { x < 0 ? 0 : x } }
/// Swift's squareRoot branches to libm's sqrtf for negative inputs (errno), which stops LLVM from
/// vectorising; the square root of |x| never takes that branch, and the selects restore
/// sqrt(x<0) = NaN and sqrt(-0) = -0.
struct SqrtFn: FloatFn {
    @inline(__always) func f(_ x: Float) -> Float { let r = Swift.abs(x).squareRoot(); return x < 0 ? .nan : (x == 0 ? x : r) }
    @inline(__always) func d(_ x: Double) -> Double { let r = Swift.abs(x).squareRoot(); return x < 0 ? .nan : (x == 0 ? x : r) }
}
struct ReciprocalFn: FloatFn { func f(_ x: Float) -> Float { 1 / x }; func d(_ x: Double) -> Double { 1 / x } }
struct ExpFn: FloatFn { func f(_ x: Float) -> Float { expf(x) }; func d(_ x: Double) -> Double { Foundation.exp(x) } }
struct LogFn: FloatFn { func f(_ x: Float) -> Float { logf(x) }; func d(_ x: Double) -> Double { Foundation.log(x) } }
struct TanhFn: FloatFn { func f(_ x: Float) -> Float { tanhf(x) }; func d(_ x: Double) -> Double { Foundation.tanh(x) } }
struct FloorFn: FloatFn { func f(_ x: Float) -> Float { x.rounded(.down) }; func d(_ x: Double) -> Double { x.rounded(.down) } }
struct CeilFn: FloatFn { func f(_ x: Float) -> Float { x.rounded(.up) }; func d(_ x: Double) -> Double { x.rounded(.up) } }
/// Round half to even, as ONNX specifies.
struct RoundFn: FloatFn {
    func f(_ x: Float) -> Float { x.rounded(.toNearestOrEven) }
    func d(_ x: Double) -> Double { x.rounded(.toNearestOrEven) }
}
/// 1 / (1 + e^-x), with e^x / (1 + e^x) for x < 0 so that large negative x does not overflow.
struct SigmoidFn: FloatFn {
    func f(_ x: Float) -> Float {
        if x >= 0 { return 1 / (1 + expf(-x)) }
        let e = expf(x); return e / (1 + e)
    }
    func d(_ x: Double) -> Double {
        if x >= 0 { return 1 / (1 + Foundation.exp(-x)) }
        let e = Foundation.exp(x); return e / (1 + e)
    }
}
/// log(1 + e^x) written to neither overflow for large x nor lose small values.
struct SoftplusFn: FloatFn {
    func f(_ x: Float) -> Float { Float(d(Double(x))) }
    func d(_ x: Double) -> Double { x > 0 ? x + Foundation.log1p(Foundation.exp(-x)) : Foundation.log1p(Foundation.exp(x)) }
}
struct SoftsignFn: FloatFn { func f(_ x: Float) -> Float { x / (1 + Swift.abs(x)) }; func d(_ x: Double) -> Double { x / (1 + Swift.abs(x)) } }
struct LeakyReluFn: FloatFn {
    let alpha: Float
    func f(_ x: Float) -> Float { x < 0 ? alpha * x : x }
    func d(_ x: Double) -> Double { x < 0 ? Double(alpha) * x : x }
}
struct EluFn: FloatFn {
    let alpha: Float
    func f(_ x: Float) -> Float { x < 0 ? alpha * (expf(x) - 1) : x }
    func d(_ x: Double) -> Double { x < 0 ? Double(alpha) * Foundation.expm1(x) : x }
}
struct SeluFn: FloatFn {
    let alpha: Float, gamma: Float
    func f(_ x: Float) -> Float { x <= 0 ? gamma * (alpha * expf(x) - alpha) : gamma * x }
    func d(_ x: Double) -> Double { x <= 0 ? Double(gamma) * (Double(alpha) * Foundation.exp(x) - Double(alpha)) : Double(gamma) * x }
}
struct HardSigmoidFn: FloatFn {
    let alpha: Float, beta: Float
    func f(_ x: Float) -> Float { Swift.max(0, Swift.min(1, alpha * x + beta)) }
    func d(_ x: Double) -> Double { Swift.max(0, Swift.min(1, Double(alpha) * x + Double(beta))) }
}

/// x · relu6(x + 3) / 6.
struct HardSwishFn: FloatFn {
    func f(_ x: Float) -> Float { x * Swift.max(0, Swift.min(1, x / 6 + 0.5)) }
    func d(_ x: Double) -> Double { x * Swift.max(0, Swift.min(1, x / 6 + 0.5)) }
}
/// x · tanh(softplus(x)).
struct MishFn: FloatFn {
    func f(_ x: Float) -> Float { Float(d(Double(x))) }
    func d(_ x: Double) -> Double { x * Foundation.tanh(SoftplusFn().d(x)) }
}
struct ThresholdedReluFn: FloatFn {
    let alpha: Float
    func f(_ x: Float) -> Float { x > alpha ? x : 0 }
    func d(_ x: Double) -> Double { x > Double(alpha) ? x : 0 }
}
/// Rarely used math (trigonometry): double libm, rounded once for float types.
struct LibmFn: FloatFn {
    let fn: (Double) -> Double
    func f(_ x: Float) -> Float { Float(fn(Double(x))) }
    func d(_ x: Double) -> Double { fn(x) }
}

// MARK: - Erf and Gelu

/// erf(x) for |x| ≤ 4 as x·P(x²/16)/Q(x²/16), evaluated in double. The rational function was fitted
/// (scripts/fixtures/fit_erf.py) to erf on [0, 4] with max abs error 7.6e-10, far below float32's
/// half-ulp at 1 (3e-8), so the float result is the correctly rounded erf except within 1e-9 of a
/// rounding boundary. Beyond |x| = 4, erf rounds to ±1 in float32. No calls, so loops vectorise.
@inline(__always)
func erfCore(_ x: Double) -> Double {
    let c = x > 4 ? 4 : (x < -4 ? -4 : x)    // NaN passes through
    let u = c * c * 0.0625
    // Estrin's scheme: short dependency chains, so the vectorised loop is not latency-bound.
    let u2 = u * u, u4 = u2 * u2
    let p01 = 1.1283791746018668 + 2.711200170487032 * u, p23 = 13.174812947481223 + 12.647012819996881 * u
    let p45 = 20.88415258050987 + 0.5461397791504657 * u, p6 = -0.6753669903597003
    let p = (p01 + p23 * u2) + (p45 + p6 * u2) * u4
    let q01 = 1.0 + 7.7360736921709 * u, q23 = 27.33479761388442 + 56.47886643741213 * u
    let q45 = 70.90442372629359 + 47.02641424286526 * u, q6 = -8.81525052418256
    let q = (q01 + q23 * u2) + (q45 + q6 * u2) * u4
    return c * p / q
}

struct ErfFn: FloatFn {
    @inline(__always) func f(_ x: Float) -> Float { Float(erfCore(Double(x))) }
    var bulkFloat: ((UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void)? { { ck_erf($0, $1, $2) } }
    func d(_ x: Double) -> Double { Foundation.erf(x) }
}

/// Gelu (approximate = none): x/2 · (1 + erf(x/√2)), computed in double, rounded once.
struct GeluFn: FloatFn {
    var bulkFloat: ((UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void)? { { ck_gelu($0, $1, $2) } }
    @inline(__always) func f(_ x: Float) -> Float {
        let v = Double(x)
        return Float(0.5 * v * (1 + erfCore(v * 0.7071067811865476)))
    }
    func d(_ x: Double) -> Double { 0.5 * x * (1 + Foundation.erf(x * 0.7071067811865476)) }
}

/// Gelu (approximate = tanh): x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³))).
struct GeluTanhFn: FloatFn {
    func f(_ x: Float) -> Float { Float(d(Double(x))) }
    func d(_ x: Double) -> Double { 0.5 * x * (1 + Foundation.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) }
}

// MARK: - Predicates

protocol FloatPredicate {
    func f(_ x: Float) -> Bool
    func d(_ x: Double) -> Bool
}
struct IsNaNFn: FloatPredicate { func f(_ x: Float) -> Bool { x.isNaN }; func d(_ x: Double) -> Bool { x.isNaN } }
struct IsInfFn: FloatPredicate {
    let negative: Bool, positive: Bool
    func f(_ x: Float) -> Bool { (positive && x == .infinity) || (negative && x == -.infinity) }
    func d(_ x: Double) -> Bool { (positive && x == .infinity) || (negative && x == -.infinity) }
}
struct PredFloat<F: FloatPredicate>: UnaryFunction { let fn: F; func callAsFunction(_ x: Float) -> Bool { fn.f(x) } }
struct PredDouble<F: FloatPredicate>: UnaryFunction { let fn: F; func callAsFunction(_ x: Double) -> Bool { fn.d(x) } }
struct PredHalf<F: FloatPredicate>: UnaryFunction { let fn: F; func callAsFunction(_ x: Float16) -> Bool { fn.f(Float(x)) } }
struct PredBFloat<F: FloatPredicate>: UnaryFunction { let fn: F; func callAsFunction(_ x: BFloat16) -> Bool { fn.f(x.float) } }

func floatPredicate<F: FloatPredicate>(_ fn: F, _ x: Tensor, _ label: String, _ ctx: ExecutionContext) throws -> Tensor {
    switch x.dataType {
    case .float: return mapElements(PredFloat(fn: fn), x, output: .bool, ctx)
    case .double: return mapElements(PredDouble(fn: fn), x, output: .bool, ctx)
    case .float16: return mapElements(PredHalf(fn: fn), x, output: .bool, ctx)
    case .bfloat16: return mapElements(PredBFloat(fn: fn), x, output: .bool, ctx)
    default: throw SegFormerError.unsupported("\(label): element type \(x.dataType)")
    }
}

struct NotF: UnaryFunction { func callAsFunction(_ x: Bool) -> Bool { !x } }

// MARK: - Integer versions of the sign-like ops

protocol IntegerFn { func apply<T: EWNumber>(_ x: T) -> T }
struct NegIntFn: IntegerFn { @inline(__always) func apply<T: EWNumber>(_ x: T) -> T { T.ewNeg(x) } }
struct AbsIntFn: IntegerFn { @inline(__always) func apply<T: EWNumber>(_ x: T) -> T { x < T.ewZero ? T.ewNeg(x) : x } }
struct SignIntFn: IntegerFn {
    @inline(__always) func apply<T: EWNumber>(_ x: T) -> T { x > T.ewZero ? T(fromInt64: 1) : (x < T.ewZero ? T(fromInt64: -1) : T.ewZero) }
}
struct ReluIntFn: IntegerFn { @inline(__always) func apply<T: EWNumber>(_ x: T) -> T { x < T.ewZero ? T.ewZero : x } }

struct OnNumber<F: IntegerFn, T: EWNumber>: UnaryFunction {
    let fn: F
    @inline(__always) func callAsFunction(_ x: T) -> T { fn.apply(x) }
}
struct IntegerUnaryVisitor<F: IntegerFn>: NumericVisitor {
    let fn: F, x: Tensor, ctx: ExecutionContext
    func visit<T: EWNumber>(_: T.Type) throws -> Tensor { mapElements(OnNumber<F, T>(fn: fn), x, output: x.dataType, ctx) }
}

// MARK: - Clip

/// max(lo) then min(hi), so lo > hi gives hi (numpy.clip); NaN stays NaN.
struct ClipF<T: EWNumber>: UnaryFunction {
    let lo: T, hi: T
    @inline(__always) func callAsFunction(_ x: T) -> T {
        var y = x
        if y < lo { y = lo }
        if y > hi { y = hi }
        return y
    }
}
struct ClipVisitor: NumericVisitor {
    let x: Tensor, lo: Tensor?, hi: Tensor?, attrMin: Double?, attrMax: Double?, ctx: ExecutionContext
    func visit<T: EWNumber>(_: T.Type) throws -> Tensor {
        let l = lo.map { $0.pointer(T.self)[0] } ?? T(fromDouble: attrMin ?? -.infinity)
        let h = hi.map { $0.pointer(T.self)[0] } ?? T(fromDouble: attrMax ?? .infinity)
        return mapElements(ClipF<T>(lo: l, hi: h), x, output: x.dataType, ctx)
    }
}
