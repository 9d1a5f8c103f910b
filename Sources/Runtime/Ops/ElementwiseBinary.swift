import Foundation
import GraphIR

// Binary and variadic elementwise ops with numpy broadcasting: arithmetic, Pow, Max/Min/Sum/Mean,
// comparisons, logic, Mod, BitShift and Where.

extension OpRegistry {
    static let binaryElementwiseOps: [OpSchema] = {
        var ops: [OpSchema] = []
        let arithmetic: [(String, ArithOp, DimArithmetic)] = [
            (OpType.add, .add, .add), ("Sub", .sub, .subtract), (OpType.mul, .mul, .multiply), (OpType.div, .div, .floorDivide),
        ]
        for (name, op, dimOp) in arithmetic {
            ops.append(OpSchema(name, opsets: 7...23, inputs: 2...2, inferTypes: inferBroadcast()) { node, _ in
                let label = node.opType
                return ClosureKernel { inputs, ctx in
                    [try arith(op, try inputs.required(0), try inputs.required(1), label, ctx)]
                }
            }.withSymbolicValue { ctx in
                // Shape arithmetic (e.g. height / 4): the same op on symbolic dims, broadcast.
                guard let x = ctx.symbols(0), let y = ctx.symbols(1) else { return nil }
                let n = max(x.count, y.count)
                guard x.count == n || x.count == 1, y.count == n || y.count == 1 else { return nil }
                return (0..<n).map { i in dimOp.apply(x[x.count == 1 ? 0 : i], y[y.count == 1 ? 0 : i]) }
            })
        }
        ops.append(OpSchema("Pow", opsets: 7...23, inputs: 2...2, inferTypes: inferBroadcast()) { node, _ in
            let label = node.opType
            return ClosureKernel { inputs, ctx in [try pow(try inputs.required(0), try inputs.required(1), label, ctx)] }
        })
        ops.append(OpSchema("Mod", opsets: 10...23, inputs: 2...2, inferTypes: inferBroadcast()) { node, _ in
            let label = node.opType
            let fmod = try node.int("fmod", default: 0)
            guard fmod == 0 || fmod == 1 else { throw SegFormerError.invalid("\(label): fmod must be 0 or 1, got \(fmod)") }
            return ClosureKernel { inputs, ctx in
                let a = try inputs.required(0), b = try inputs.required(1)
                if a.dataType.isFloatingPoint && fmod == 0 {
                    throw SegFormerError.invalid("\(label): Mod on \(a.dataType) needs fmod=1")
                }
                return [try arith(fmod == 1 ? .fmod : .mod, a, b, label, ctx)]
            }
        })
        for (name, op) in [("Max", ArithOp.max), ("Min", .min), (OpType.sum, .add), ("Mean", .add)] {
            ops.append(OpSchema(name, opsets: 8...23, inputs: 1...Int.max, inferTypes: inferBroadcast()) { node, _ in
                let label = node.opType
                let isMean = name == "Mean"
                return ClosureKernel { inputs, ctx in
                    let xs = try (0..<inputs.count).map { try inputs.required($0) }
                    guard var acc = xs.first else { throw SegFormerError.invalid("\(label): needs at least one input") }
                    for x in xs.dropFirst() { acc = try arith(op, acc, x, label, ctx) }
                    if xs.count == 1 { acc = acc.copy() }
                    if isMean && xs.count > 1 {
                        guard acc.dataType.isFloatingPoint else {
                            throw SegFormerError.unsupported("\(label): Mean of \(acc.dataType)")
                        }
                        let n = try castTensor(Tensor([Float(xs.count)], shape: []), to: acc.dataType, label, ctx)
                        acc = try arith(.div, acc, n, label, ctx)
                    }
                    return [acc]
                }
            })
        }
        let comparisons: [(String, CompareOp, ClosedRange<Int>)] = [
            ("Equal", .equal, 7...23), ("Greater", .greater, 7...23), ("Less", .less, 7...23),
            ("GreaterOrEqual", .greaterOrEqual, 12...23), ("LessOrEqual", .lessOrEqual, 12...23),
        ]
        for (name, op, range) in comparisons {
            ops.append(OpSchema(name, opsets: range, inputs: 2...2, inferTypes: inferBroadcast(resultType: .bool)) { node, _ in
                let label = node.opType
                return ClosureKernel { inputs, ctx in
                    [try compare(op, try inputs.required(0), try inputs.required(1), label, ctx)]
                }
            })
        }
        for (name, op) in [("And", LogicOp.and), ("Or", .or), ("Xor", .xor)] {
            ops.append(OpSchema(name, opsets: 7...23, inputs: 2...2, inferTypes: inferBroadcast(resultType: .bool)) { node, _ in
                let label = node.opType
                return ClosureKernel { inputs, ctx in
                    let a = try inputs.required(0), b = try inputs.required(1)
                    guard a.dataType == .bool, b.dataType == .bool else {
                        throw SegFormerError.invalid("\(label): inputs must be bool, got \(a.dataType) and \(b.dataType)")
                    }
                    switch op {
                    case .and: return [try zipBroadcast(AndF(), a, b, output: .bool, ctx)]
                    case .or: return [try zipBroadcast(OrF(), a, b, output: .bool, ctx)]
                    case .xor: return [try zipBroadcast(XorF(), a, b, output: .bool, ctx)]
                    }
                }
            })
        }
        ops.append(OpSchema("BitShift", opsets: 11...23, inputs: 2...2, inferTypes: inferBroadcast()) { node, _ in
            let label = node.opType
            let direction = try node.string("direction") ?? ""
            guard direction == "LEFT" || direction == "RIGHT" else {
                throw SegFormerError.invalid("\(label): direction must be LEFT or RIGHT, got '\(direction)'")
            }
            let left = direction == "LEFT"
            return ClosureKernel { inputs, ctx in
                let a = try inputs.required(0), b = try inputs.required(1)
                try sameType(a, b, label)
                switch a.dataType {
                case .uint8: return [try zipBroadcast(ShiftF<UInt8>(left: left), a, b, output: a.dataType, ctx)]
                case .uint16: return [try zipBroadcast(ShiftF<UInt16>(left: left), a, b, output: a.dataType, ctx)]
                case .uint32: return [try zipBroadcast(ShiftF<UInt32>(left: left), a, b, output: a.dataType, ctx)]
                case .uint64: return [try zipBroadcast(ShiftF<UInt64>(left: left), a, b, output: a.dataType, ctx)]
                default: throw SegFormerError.unsupported("\(label): BitShift of \(a.dataType)")
                }
            }
        })
        // PRelu: the slope broadcasts onto x (unidirectionally: the output has x's shape).
        ops.append(OpSchema("PRelu", opsets: 7...23, inputs: 2...2, inferTypes: inferSameShape()) { node, _ in
            let label = node.opType
            return ClosureKernel { inputs, ctx in
                let x = try inputs.required(0), slope = try inputs.required(1)
                try sameType(x, slope, label)
                let y = try dispatchNumeric(x.dataType, label, PReluVisitor(x: x, slope: slope, ctx: ctx))
                guard y.shape == x.shape else {
                    throw SegFormerError.invalid("\(label): slope of shape \(slope.shape) does not broadcast onto x of shape \(x.shape)")
                }
                return [y]
            }
        })
        ops.append(OpSchema("Where", opsets: 9...23, inputs: 3...3,
                            inferTypes: inferBroadcast(typeFrom: 1)) { node, _ in
            let label = node.opType
            return ClosureKernel { inputs, ctx in
                [try whereSelect(try inputs.required(0), try inputs.required(1), try inputs.required(2), label, ctx)]
            }
        })
        let rules = binaryGradientRules
        return ops.map { s in rules[s.opType].map { s.withGradient($0) } ?? s }
    }()
}

// MARK: - Gradients

/// Backward rules with PyTorch's formulas. Broadcasting is undone by summing each input's gradient
/// back to its shape (SumToShape is a free view when nothing was broadcast).
extension OpRegistry {
    static let binaryGradientRules: [String: GradientRule] = [
        OpType.add: { c in
            let g = try c.gradient()
            return [c.reduced(g, like: 0), c.reduced(g, like: 1)]
        },
        "Sub": { c in
            let g = try c.gradient()
            return [c.reduced(g, like: 0), c.needs(1) ? c.builder.add1(OpType.neg, [c.sumToShape(g, like: c.input(1))]) : nil]
        },
        OpType.mul: { c in
            let g = try c.gradient(), b = c.builder
            return [c.reduced(b.add1(OpType.mul, [g, c.input(1)]), like: 0), c.reduced(b.add1(OpType.mul, [g, c.input(0)]), like: 1)]
        },
        // d/da = grad / b; d/db = −grad · (a/b)/b, with a/b = y.
        OpType.div: { c in
            let g = try c.gradient(), b = c.builder
            return [c.reduced(b.add1(OpType.div, [g, c.input(1)]), like: 0),
                    c.reduced(b.add1("DivGrad", domain: trainingDomain, [g, c.output(0), c.input(1)]), like: 1)]
        },
        "Pow": { c in
            let g = try c.gradient(), b = c.builder
            func grad(_ i: Int) -> String {
                b.add1("PowGrad", domain: trainingDomain, [g, c.input(0), c.input(1)], attributes: ["input": .int(i)])
            }
            // An integer exponent has no gradient.
            let exponentIsFloat = c.knownType(of: c.input(1))?.isFloatingPoint ?? true
            return [c.reduced(grad(0), like: 0), exponentIsFloat ? c.reduced(grad(1), like: 1) : nil]
        },
        // PyTorch's prelu backward: x > 0 → grad, else slope · grad; the slope gets x · grad where
        // x ≤ 0, summed over what it was broadcast across.
        "PRelu": { c in
            let g = try c.gradient(), b = c.builder
            func grad(_ i: Int) -> String {
                b.add1("PReluGrad", domain: trainingDomain, [g, c.input(0), c.input(1)], attributes: ["input": .int(i)])
            }
            return [c.needs(0) ? grad(0) : nil, c.reduced(grad(1), like: 1)]
        },
        "Max": maxMinGradient("MaxGrad", forward: "Max"),
        "Min": maxMinGradient("MinGrad", forward: "Min"),
        OpType.sum: { c in
            let g = try c.gradient()
            return c.node.inputs.indices.map { c.reduced(g, like: $0) }
        },
        "Mean": { c in
            let n = c.node.inputs.count
            let g = n == 1 ? try c.gradient() : c.builder.add1(OpType.div, [try c.gradient(), c.builder.scalar(Float(n))])
            return c.node.inputs.indices.map { c.reduced(g, like: $0) }
        },
        // The condition is not differentiable; each branch gets the gradient where it was chosen.
        "Where": { c in
            let g = try c.gradient(), b = c.builder
            let zero = (c.needs(1) || c.needs(2)) ? b.scalar(0) : ""
            return [nil,
                    c.reduced(b.add1("Where", [c.input(0), g, zero]), like: 1),
                    c.reduced(b.add1("Where", [c.input(0), zero, g]), like: 2)]
        },
    ]

    /// Max/Min of N inputs is the left fold of pairwise torch.maximum/minimum: ties give each side
    /// half the gradient, NaN gives both sides all of it. For N > 2 the intermediate results are
    /// recomputed in the backward pass.
    static func maxMinGradient(_ kernel: String, forward: String) -> GradientRule {
        return { c in
            let n = c.node.inputs.count, b = c.builder
            var g = try c.gradient()
            if n == 1 { return [c.reduced(g, like: 0)] }
            var partial = [c.input(0)]   // partial[k] = fold of inputs 0…k
            for k in 1..<(n - 1) { partial.append(b.add1(forward, [partial[k - 1], c.input(k)])) }
            var result = [String?](repeating: nil, count: n)
            for k in stride(from: n - 1, through: 1, by: -1) {
                let a = partial[k - 1], x = c.input(k)
                if c.needs(k) {
                    result[k] = c.sumToShape(b.add1(kernel, domain: trainingDomain, [g, a, x], attributes: ["input": .int(1)]), like: x)
                }
                // Inputs 0…k−1 need the gradient of the partial fold.
                guard (0..<k).contains(where: { c.needs($0) }) else { break }
                g = c.sumToShape(b.add1(kernel, domain: trainingDomain, [g, a, x], attributes: ["input": .int(0)]), like: a)
                if k == 1 { result[0] = g }
            }
            return result
        }
    }

    static let binaryGradientOps: [OpSchema] = [
        gradientKernelSchema("DivGrad", inputs: 3...3) { _ in { xs, l, ctx in try floatTernary(DivGradFn(), xs[0], xs[1], xs[2], l, ctx) } },
        // PowGrad(dY, A, B): the gradient for the base (input = 0) or the exponent (input = 1), at the
        // broadcast shape. A non-float exponent is converted to the base's type first.
        gradientKernelSchema("PowGrad", inputs: 3...3) { node in
            let which = try node.int("input", default: 0)
            guard which == 0 || which == 1 else { throw SegFormerError.invalid("\(node.label): input must be 0 or 1, got \(which)") }
            return { xs, l, ctx in
                let e = try castTensor(xs[2], to: xs[1].dataType, l, ctx)
                return which == 0 ? try floatTernary(PowBaseGradFn(), xs[0], xs[1], e, l, ctx)
                                  : try floatTernary(PowExponentGradFn(), xs[0], xs[1], e, l, ctx)
            }
        },
        gradientKernelSchema("PReluGrad", inputs: 3...3) { node in
            let which = try node.int("input", default: 0)
            guard which == 0 || which == 1 else { throw SegFormerError.invalid("\(node.label): input must be 0 or 1, got \(which)") }
            return { xs, l, ctx in try floatTernary(PReluGradFn(slope: which == 1), xs[0], xs[1], xs[2], l, ctx) }
        },
        maxMinGradSchema("MaxGrad", max: true),
        maxMinGradSchema("MinGrad", max: false),
    ]

    /// MaxGrad/MinGrad(dY, A, B): torch.maximum/minimum's gradient for A (input = 0) or B (input = 1).
    static func maxMinGradSchema(_ name: String, max: Bool) -> OpSchema {
        gradientKernelSchema(name, inputs: 3...3) { node in
            let which = try node.int("input", default: 0)
            guard which == 0 || which == 1 else { throw SegFormerError.invalid("\(node.label): input must be 0 or 1, got \(which)") }
            // For A the gradient is cut where A loses (A < B for max), for B where B loses.
            let fn = MaxMinGradFn(cutWhenALess: max == (which == 0))
            return { xs, l, ctx in try floatTernary(fn, xs[0], xs[1], xs[2], l, ctx) }
        }
    }
}

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
