import Foundation
import GraphIR

// Binary and variadic elementwise ops with numpy broadcasting: arithmetic, Pow, Max/Min/Sum/Mean,
// comparisons, logic, Mod, BitShift and Where.

extension OpRegistry {
    static let binaryElementwiseOps: [OpSchema] = {
        var ops: [OpSchema] = []
        let arithmetic: [(String, ArithOp, DimArithmetic)] = [
            (OpType.add, .add, .add), (OpType.sub, .sub, .subtract), (OpType.mul, .mul, .multiply), (OpType.div, .div, .floorDivide),
        ]
        for (name, op, dimOp) in arithmetic {
            ops.append(OpSchema(name, opsets: 1...23, inputs: 2...2, inferTypes: LegacyBroadcast.shapeRule(inferBroadcast())) { node, opset in
                let label = node.opType
                let legacy = try LegacyBroadcast(node, opset: opset)
                return ClosureKernel { inputs, ctx in
                    let (a, b) = try LegacyBroadcast.operands(legacy, inputs, label)
                    return [try arith(op, a, b, label, ctx)]
                }
            }.withSymbolicValue { ctx in
                // Shape arithmetic (e.g. height / 4): the same op on symbolic dims, broadcast.
                guard let x = ctx.symbols(0), let y = ctx.symbols(1) else { return nil }
                let n = max(x.count, y.count)
                guard x.count == n || x.count == 1, y.count == n || y.count == 1 else { return nil }
                return (0..<n).map { i in dimOp.apply(x[x.count == 1 ? 0 : i], y[y.count == 1 ? 0 : i]) }
            })
        }
        ops.append(OpSchema(OpType.pow, opsets: 1...23, inputs: 2...2, inferTypes: LegacyBroadcast.shapeRule(inferBroadcast())) { node, opset in
            let label = node.opType
            let legacy = try LegacyBroadcast(node, opset: opset)
            return ClosureKernel { inputs, ctx in
                let (a, b) = try LegacyBroadcast.operands(legacy, inputs, label)
                return [try pow(a, b, label, ctx)]
            }
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
            // Before opset 8 the inputs had one shape (numpy broadcasting accepts that too).
            ops.append(OpSchema(name, opsets: 1...23, inputs: 1...Int.max, inferTypes: inferBroadcast()) { node, _ in
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
            ("Equal", .equal, 1...23), ("Greater", .greater, 1...23), ("Less", .less, 1...23),
            ("GreaterOrEqual", .greaterOrEqual, 12...23), ("LessOrEqual", .lessOrEqual, 12...23),
        ]
        for (name, op, range) in comparisons {
            ops.append(OpSchema(name, opsets: range, inputs: 2...2,
                                inferTypes: LegacyBroadcast.shapeRule(inferBroadcast(resultType: .bool), resultType: .bool)) { node, opset in
                let label = node.opType
                let legacy = try LegacyBroadcast(node, opset: opset)
                return ClosureKernel { inputs, ctx in
                    let (a, b) = try LegacyBroadcast.operands(legacy, inputs, label)
                    return [try compare(op, a, b, label, ctx)]
                }
            })
        }
        for (name, op) in [("And", LogicOp.and), ("Or", .or), ("Xor", .xor)] {
            ops.append(OpSchema(name, opsets: 1...23, inputs: 2...2,
                                inferTypes: LegacyBroadcast.shapeRule(inferBroadcast(resultType: .bool), resultType: .bool)) { node, opset in
                let label = node.opType
                let legacy = try LegacyBroadcast(node, opset: opset)
                return ClosureKernel { inputs, ctx in
                    let (a, b) = try LegacyBroadcast.operands(legacy, inputs, label)
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
        // PRelu: the slope broadcasts onto x (unidirectionally: the output has x's shape). Before opset 7 a
        // one-dimensional slope of x's channel count is per channel (axis 1), as Caffe2 and PyTorch's
        // opset-6 exports mean it; `perChannelSlope` turns it into the [C, 1, …] that broadcasts so.
        ops.append(OpSchema("PRelu", opsets: 1...23, inputs: 2...2, inferTypes: inferSameShape()) { node, opset in
            let label = node.opType
            return ClosureKernel { inputs, ctx in
                let x = try inputs.required(0)
                var slope = try inputs.required(1)
                if opset < 7 { slope = perChannelSlope(slope, x) }
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
        return ops.map { s in rules[s.opType].map { s.withGradient(LegacyBroadcast.gradientRule($0)) } ?? s }
    }()

    /// A PRelu slope of opset < 7: [C] on x of shape [N, C, …] becomes [C, 1, …]; anything else as it is.
    static func perChannelSlope(_ slope: Tensor, _ x: Tensor) -> Tensor {
        guard x.rank > 2, slope.rank == 1, slope.count == x.shape[1] else { return slope }
        return slope.reshaped([slope.count] + [Int](repeating: 1, count: x.rank - 2))
    }
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
        OpType.sub: { c in
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
        OpType.pow: { c in
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
            if c.opset < 7 { throw SegFormerError.unsupported("\(c.node.label): gradient of PRelu before opset 7") }
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
