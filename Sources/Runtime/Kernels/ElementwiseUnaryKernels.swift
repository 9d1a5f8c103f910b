import Foundation
import GraphIR
import CKernels

// CPU kernels of the ElementwiseUnary family: the schemas (what each op means) are in Ops/ElementwiseUnary.swift.
struct ReluGradFn: FloatFn2 {
    /// threshold_backward(grad, y, 0): y ≤ 0 → 0 (NaN passes the gradient).
    @inline(__always) func f(_ g: Float, _ y: Float) -> Float { y <= 0 ? 0 : g }
    @inline(__always) func d(_ g: Double, _ y: Double) -> Double { y <= 0 ? 0 : g }
}
struct SigmoidGradFn: FloatFn2 {
    @inline(__always) func f(_ g: Float, _ y: Float) -> Float { g * (1 - y) * y }
    @inline(__always) func d(_ g: Double, _ y: Double) -> Double { g * (1 - y) * y }
}
struct TanhGradFn: FloatFn2 {
    @inline(__always) func f(_ g: Float, _ y: Float) -> Float { g * (1 - y * y) }
    @inline(__always) func d(_ g: Double, _ y: Double) -> Double { g * (1 - y * y) }
}
/// grad · 2/√π · e^(−x²). Uses libm's correctly rounded expf rather than a polynomial: a 2-ulp
/// exp shifts near-zero gradient elements enough that AdamW (which divides each element by its own
/// size) drifts from PyTorch after a few steps.
struct ErfGradFn: FloatFn2 {
    @inline(__always) func f(_ g: Float, _ x: Float) -> Float { 1.1283791670955126 * expf(-(x * x)) * g }
    @inline(__always) func d(_ g: Double, _ x: Double) -> Double { 1.1283791670955126 * Foundation.exp(-(x * x)) * g }
}
/// grad · σ(x) as z/(z + 1), z = e^x, and grad itself above x = 20 (PyTorch's threshold, where σ
/// rounds to 1 anyway).
struct SoftplusGradFn: FloatFn2 {
    @inline(__always) func f(_ g: Float, _ x: Float) -> Float { if x > 20 { return g }; let z = expf(x); return g * z / (z + 1) }
    @inline(__always) func d(_ g: Double, _ x: Double) -> Double { if x > 20 { return g }; let z = Foundation.exp(x); return g * z / (z + 1) }
}
/// grad · (Φ(x) + x·φ(x)), computed in double, rounded once; float32 arrays go through ck_gelu_grad
/// (the same formula with a double exp polynomial, vectorised).
struct GeluGradFn: FloatFn2 {
    var bulkFloat: ((UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void)? {
        { ck_gelu_grad($0, $1, $2, $3) }
    }
    @inline(__always) func f(_ g: Float, _ x: Float) -> Float { Float(d(Double(g), Double(x))) }
    @inline(__always) func d(_ g: Double, _ x: Double) -> Double {
        let cdf = x < Double(GELU_TAIL) ? 0.5 * Foundation.erfc(-x * 0.7071067811865476) : 0.5 * (1 + erfCore(x * 0.7071067811865476))
        let pdf = 0.3989422804014327 * Foundation.exp(-0.5 * x * x)
        return g * (cdf + x * pdf)
    }
}
/// Derivative of x/2 · (1 + tanh(√(2/π)(x + 0.044715x³))), in double.
struct GeluTanhGradFn: FloatFn2 {
    @inline(__always) func f(_ g: Float, _ x: Float) -> Float { Float(d(Double(g), Double(x))) }
    @inline(__always) func d(_ g: Double, _ x: Double) -> Double {
        let beta = 0.7978845608028654, kappa = 0.044715
        let x2 = x * x
        let t = Foundation.tanh(beta * (x + kappa * x2 * x))
        let left = 0.5 * x, right = 1 + t
        return g * (0.5 * right + left * (1 - t * t) * beta * (1 + 3 * kappa * x2))
    }
}
/// PyTorch's hardswish_backward: 0 below −3, grad · (x/3 + 1/2) up to 3, grad above.
struct HardSwishGradFn: FloatFn2 {
    @inline(__always) func f(_ g: Float, _ x: Float) -> Float { x < -3 ? 0 : (x <= 3 ? g * (x / 3 + 0.5) : g) }
    @inline(__always) func d(_ g: Double, _ x: Double) -> Double { x < -3 ? 0 : (x <= 3 ? g * (x / 3 + 0.5) : g) }
}
/// grad / (1 + |x|)²
struct SoftsignGradFn: FloatFn2 {
    @inline(__always) func f(_ g: Float, _ x: Float) -> Float { let t = 1 + Swift.abs(x); return g / (t * t) }
    @inline(__always) func d(_ g: Double, _ x: Double) -> Double { let t = 1 + Swift.abs(x); return g / (t * t) }
}
/// grad · (tanh(sp) + x · σ(x) · (1 − tanh²(sp))), sp = softplus(x); in double.
struct MishGradFn: FloatFn2 {
    @inline(__always) func f(_ g: Float, _ x: Float) -> Float { Float(d(Double(g), Double(x))) }
    @inline(__always) func d(_ g: Double, _ x: Double) -> Double {
        let t = Foundation.tanh(SoftplusFn().d(x)), s = SigmoidFn().d(x)
        return g * (t + x * s * (1 - t * t))
    }
}
struct ThresholdedReluGradFn: FloatFn2 {
    let alpha: Float
    @inline(__always) func f(_ g: Float, _ x: Float) -> Float { x > alpha ? g : 0 }
    @inline(__always) func d(_ g: Double, _ x: Double) -> Double { x > Double(alpha) ? g : 0 }
}
struct LeakyReluGradFn: FloatFn2 {
    let alpha: Float
    @inline(__always) func f(_ g: Float, _ x: Float) -> Float { x > 0 ? g : g * alpha }
    @inline(__always) func d(_ g: Double, _ x: Double) -> Double { x > 0 ? g : g * Double(alpha) }
}
/// Elu and Selu: x ≤ 0 → grad · negative · e^x, else grad · positive.
struct EluGradFn: FloatFn2 {
    let negative: Float, positive: Float
    @inline(__always) func f(_ g: Float, _ x: Float) -> Float { x <= 0 ? g * negative * expf(x) : g * positive }
    @inline(__always) func d(_ g: Double, _ x: Double) -> Double { x <= 0 ? g * Double(negative) * Foundation.exp(x) : g * Double(positive) }
}
/// grad · α where 0 < αx + β < 1 (strictly, as PyTorch's hardsigmoid), else 0.
struct HardSigmoidGradFn: FloatFn2 {
    let alpha: Float, beta: Float
    @inline(__always) func f(_ g: Float, _ x: Float) -> Float { let v = alpha * x + beta; return v > 0 && v < 1 ? g * alpha : 0 }
    @inline(__always) func d(_ g: Double, _ x: Double) -> Double {
        let v = Double(alpha) * x + Double(beta); return v > 0 && v < 1 ? g * Double(alpha) : 0
    }
}
/// See `clipGradient`. Split mode is torch.maximum's then torch.minimum's rule: at a tie each side
/// gets half, a NaN passes the gradient to both sides.
struct ClipGradFn: FloatFn2 {
    let lo: Double, hi: Double, hasLo: Bool, hasHi: Bool, split: Bool, which: Int
    @inline(__always) func f(_ g: Float, _ x: Float) -> Float { Float(d(Double(g), Double(x))) }
    @inline(__always) func d(_ g: Double, _ x: Double) -> Double {
        if !split { return (!hasLo || x > lo) && (!hasHi || x < hi) ? g : 0 }
        // m = maximum(x, lo): weights of x and lo.
        var m = x, wx = 1.0, wlo = 0.0
        if hasLo {
            if x == lo { wx = 0.5; wlo = 0.5 } else if x < lo { wx = 0; wlo = 1; m = lo }
        }
        // y = minimum(m, hi): weights of m and hi.
        var wm = 1.0, whi = 0.0
        if hasHi {
            if m == hi { wm = 0.5; whi = 0.5 } else if m > hi { wm = 0; whi = 1 } else if m.isNaN { whi = 1 }
        }
        if hasLo && x.isNaN { wlo = 1 }
        switch which {
        case 0: return g * wm * wx
        case 1: return g * wm * wlo
        default: return g * whi
        }
    }
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
/// Shrink: x + bias below −lambda, x − bias above lambda, 0 between.
struct ShrinkFn: FloatFn {
    let lambda: Float, bias: Float
    func f(_ x: Float) -> Float { x < -lambda ? x + bias : (x > lambda ? x - bias : 0) }
    func d(_ x: Double) -> Double {
        x < -Double(lambda) ? x + Double(bias) : (x > Double(lambda) ? x - Double(bias) : 0)
    }
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
        if x < GELU_TAIL { return Float(d(v)) }   // the negative tail, where 1 + erf cancels (as ck_gelu)
        return Float(0.5 * v * (1 + erfCore(v * 0.7071067811865476)))
    }
    /// erfc(-x/√2) = 1 + erf(x/√2) without the cancellation for large negative x.
    func d(_ x: Double) -> Double { 0.5 * x * Foundation.erfc(-x * 0.7071067811865476) }
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
