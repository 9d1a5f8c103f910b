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
        // Opsets 1–5 differ from 6 only by the ignored `consumed_inputs` attribute.
        numeric(OpType.neg, 1...23, NegFn(), NegIntFn())
        numeric("Abs", 1...23, AbsFn(), AbsIntFn())
        numeric("Sign", 9...23, SignFn(), SignIntFn())
        numeric(OpType.relu, 1...23, ReluFn(), ReluIntFn())
        float(OpType.sqrt, 1...23, SqrtFn())
        float("Reciprocal", 1...23, ReciprocalFn())
        float("Exp", 1...23, ExpFn())
        float("Log", 1...23, LogFn())
        float(OpType.erf, 9...23, ErfFn())
        float("Sigmoid", 1...23, SigmoidFn())
        float("Tanh", 1...23, TanhFn())
        float("Floor", 1...23, FloorFn())
        float("Ceil", 1...23, CeilFn())
        float("Round", 11...23, RoundFn())
        float("Softplus", 1...23, SoftplusFn())
        float("Softsign", 1...23, SoftsignFn())
        float("HardSwish", 14...23, HardSwishFn())
        float("Mish", 18...23, MishFn())
        for (name, fn) in [("Sin", sin), ("Cos", cos), ("Tan", tan), ("Asin", asin), ("Acos", acos), ("Atan", atan),
                           ("Sinh", sinh), ("Cosh", cosh), ("Asinh", asinh), ("Acosh", acosh), ("Atanh", atanh)] as [(String, (Double) -> Double)] {
            float(name, 7...23, LibmFn(fn: fn))
        }
        floatAttr("Shrink", 9...23) { ShrinkFn(lambda: try $0.float("lambd", default: 0.5), bias: try $0.float("bias", default: 0)) }
        floatAttr("ThresholdedRelu", 10...23) { ThresholdedReluFn(alpha: try $0.float("alpha", default: 1)) }
        floatAttr("LeakyRelu", 1...23) { LeakyReluFn(alpha: try $0.float("alpha", default: 0.01)) }
        floatAttr("Elu", 1...23) { EluFn(alpha: try $0.float("alpha", default: 1)) }
        floatAttr("Selu", 1...23) {
            SeluFn(alpha: try $0.float("alpha", default: 1.67326319217681884765625),
                   gamma: try $0.float("gamma", default: 1.05070102214813232421875))
        }
        floatAttr("HardSigmoid", 1...23) {
            HardSigmoidFn(alpha: try $0.float("alpha", default: 0.2), beta: try $0.float("beta", default: 0.5))
        }
        ops.append(OpSchema(OpType.gelu, opsets: 20...23, inputs: 1...1, inferTypes: inferSameShape()) { node, _ in
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
        ops.append(OpSchema("Clip", opsets: 1...23, inputs: 1...3, inferTypes: inferSameShape()) { node, opset in
            let label = node.opType
            // Opsets 1–10 carry the bounds as attributes, 11+ as optional scalar inputs.
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
        let rules = unaryGradientRules
        return ops.map { s in rules[s.opType].map { s.withGradient($0) } ?? s }
    }()
}

// MARK: - Gradients

/// Backward rules (PyTorch's formulas and conventions at the kinks: Relu passes nothing at 0,
/// LeakyRelu/Elu/Selu take the negative branch at 0, Abs gives 0 at 0). Cheap ones are plain ONNX
/// ops; the rest are one-pass training-domain kernels reading the gradient and one forward value
/// (the output where the formula allows, as PyTorch does, so the input can be freed early).
private func fused(_ kernel: String, _ value: @escaping (GradientContext) -> String) -> GradientRule {
    return { c in
        guard c.needs(0) else { return [nil] }
        return [c.builder.add1(kernel, domain: trainingDomain, [try c.gradient(), value(c)], attributes: c.node.attributes)]
    }
}
private let forwardInput: (GradientContext) -> String = { $0.input(0) }
private let forwardOutput: (GradientContext) -> String = { $0.output(0) }

extension OpRegistry {
    static let unaryGradientRules: [String: GradientRule] = {
        let zero: GradientRule = { _ in [nil] }   // piecewise constant: zero gradient almost everywhere
        return [
            OpType.neg: { c in [c.needs(0) ? c.builder.add1(OpType.neg, [try c.gradient()]) : nil] },
            // grad · sgn(x)
            "Abs": { c in [c.needs(0) ? c.builder.add1(OpType.mul, [try c.gradient(), c.builder.add1("Sign", [c.input(0)])]) : nil] },
            // grad / (2·y), with 2·y written y + y (exact).
            OpType.sqrt: { c in
                let y = c.output(0)
                return [c.needs(0) ? c.builder.add1(OpType.div, [try c.gradient(), c.builder.add1(OpType.add, [y, y])]) : nil]
            },
            // −grad · y²
            "Reciprocal": { c in
                guard c.needs(0) else { return [nil] }
                let y = c.output(0), b = c.builder
                return [b.add1(OpType.mul, [b.add1(OpType.neg, [try c.gradient()]), b.add1(OpType.mul, [y, y])])]
            },
            "Exp": { c in [c.needs(0) ? c.builder.add1(OpType.mul, [try c.gradient(), c.output(0)]) : nil] },
            "Log": { c in [c.needs(0) ? c.builder.add1(OpType.div, [try c.gradient(), c.input(0)]) : nil] },
            OpType.relu: fused("ReluGrad", forwardOutput),
            "Sigmoid": fused("SigmoidGrad", forwardOutput),
            "Tanh": fused("TanhGrad", forwardOutput),
            OpType.erf: fused("ErfGrad", forwardInput),
            OpType.gelu: fused("GeluGrad", forwardInput),
            "Softplus": fused("SoftplusGrad", forwardInput),
            "LeakyRelu": fused("LeakyReluGrad", forwardInput),
            "Elu": fused("EluGrad", forwardInput),
            "Selu": fused("SeluGrad", forwardInput),
            "HardSigmoid": fused("HardSigmoidGrad", forwardInput),
            "HardSwish": fused("HardSwishGrad", forwardInput),
            "Softsign": fused("SoftsignGrad", forwardInput),
            "Mish": fused("MishGrad", forwardInput),
            "ThresholdedRelu": fused("ThresholdedReluGrad", forwardInput),
            "Sin": { c in [c.needs(0) ? c.builder.add1(OpType.mul, [try c.gradient(), c.builder.add1("Cos", [c.input(0)])]) : nil] },
            "Cos": { c in
                guard c.needs(0) else { return [nil] }
                let b = c.builder
                return [b.add1(OpType.mul, [b.add1(OpType.neg, [try c.gradient()]), b.add1("Sin", [c.input(0)])])]
            },
            "Clip": clipGradient,
            "Sign": zero, "Floor": zero, "Ceil": zero, "Round": zero,
        ]
    }()

    /// Constant bounds follow torch.clamp with scalar bounds: the gradient passes where
    /// min < x < max strictly (0 at the bounds and for NaN). Bounds that need a gradient follow
    /// torch.clamp with tensor bounds, i.e. minimum(maximum(x, min), max) with ties split in halves.
    static let clipGradient: GradientRule = { c in
        guard c.needs(0) || c.needs(1) || c.needs(2) else { return [nil, nil, nil] }
        let g = try c.gradient()
        var attrs: [String: Attribute] = ["split": .int(c.needs(1) || c.needs(2) ? 1 : 0)]
        if c.opset < 11 {
            attrs["min"] = .float(try c.node.float("min", default: -Float.greatestFiniteMagnitude))
            attrs["max"] = .float(try c.node.float("max", default: Float.greatestFiniteMagnitude))
        }
        var inputs = [g] + c.node.inputs
        while inputs.last == "" { inputs.removeLast() }
        func grad(_ which: Int) -> String {
            var a = attrs
            a["input"] = .int(which)
            return c.builder.add1("ClipGrad", domain: trainingDomain, inputs, attributes: a)
        }
        return [c.needs(0) ? grad(0) : nil,
                c.needs(1) ? c.sumToShape(grad(1), like: c.input(1)) : nil,
                c.needs(2) ? c.sumToShape(grad(2), like: c.input(2)) : nil]
    }

    static let unaryGradientOps: [OpSchema] = [
        gradientKernelSchema("ReluGrad", inputs: 2...2) { _ in { xs, l, ctx in try floatBinary(ReluGradFn(), xs[0], xs[1], l, ctx) } },
        gradientKernelSchema("SigmoidGrad", inputs: 2...2) { _ in { xs, l, ctx in try floatBinary(SigmoidGradFn(), xs[0], xs[1], l, ctx) } },
        gradientKernelSchema("TanhGrad", inputs: 2...2) { _ in { xs, l, ctx in try floatBinary(TanhGradFn(), xs[0], xs[1], l, ctx) } },
        gradientKernelSchema("ErfGrad", inputs: 2...2) { _ in { xs, l, ctx in try floatBinary(ErfGradFn(), xs[0], xs[1], l, ctx) } },
        gradientKernelSchema("SoftplusGrad", inputs: 2...2) { _ in { xs, l, ctx in try floatBinary(SoftplusGradFn(), xs[0], xs[1], l, ctx) } },
        gradientKernelSchema("HardSwishGrad", inputs: 2...2) { _ in { xs, l, ctx in try floatBinary(HardSwishGradFn(), xs[0], xs[1], l, ctx) } },
        gradientKernelSchema("SoftsignGrad", inputs: 2...2) { _ in { xs, l, ctx in try floatBinary(SoftsignGradFn(), xs[0], xs[1], l, ctx) } },
        gradientKernelSchema("MishGrad", inputs: 2...2) { _ in { xs, l, ctx in try floatBinary(MishGradFn(), xs[0], xs[1], l, ctx) } },
        gradientKernelSchema("ThresholdedReluGrad", inputs: 2...2) { node in
            let fn = ThresholdedReluGradFn(alpha: try node.float("alpha", default: 1))
            return { xs, l, ctx in try floatBinary(fn, xs[0], xs[1], l, ctx) }
        },
        gradientKernelSchema("GeluGrad", inputs: 2...2) { node in
            let mode = try node.string("approximate", default: "none")
            guard mode == "none" || mode == "tanh" else {
                throw SegFormerError.invalid("\(node.label): approximate must be 'none' or 'tanh', got '\(mode)'")
            }
            return { xs, l, ctx in
                mode == "tanh" ? try floatBinary(GeluTanhGradFn(), xs[0], xs[1], l, ctx) : try floatBinary(GeluGradFn(), xs[0], xs[1], l, ctx)
            }
        },
        gradientKernelSchema("LeakyReluGrad", inputs: 2...2) { node in
            let fn = LeakyReluGradFn(alpha: try node.float("alpha", default: 0.01))
            return { xs, l, ctx in try floatBinary(fn, xs[0], xs[1], l, ctx) }
        },
        gradientKernelSchema("EluGrad", inputs: 2...2) { node in
            let a = try node.float("alpha", default: 1)
            let fn = EluGradFn(negative: a, positive: 1)
            return { xs, l, ctx in try floatBinary(fn, xs[0], xs[1], l, ctx) }
        },
        gradientKernelSchema("SeluGrad", inputs: 2...2) { node in
            let a = try node.float("alpha", default: 1.67326319217681884765625)
            let g = try node.float("gamma", default: 1.05070102214813232421875)
            let fn = EluGradFn(negative: a * g, positive: g)
            return { xs, l, ctx in try floatBinary(fn, xs[0], xs[1], l, ctx) }
        },
        gradientKernelSchema("HardSigmoidGrad", inputs: 2...2) { node in
            let fn = HardSigmoidGradFn(alpha: try node.float("alpha", default: 0.2), beta: try node.float("beta", default: 0.5))
            return { xs, l, ctx in try floatBinary(fn, xs[0], xs[1], l, ctx) }
        },
        // ClipGrad(dY, X, min?, max?): the gradient for input `input` (0 = X, 1 = min, 2 = max) at X's
        // shape; bounds from the inputs, else from the min/max attributes (opset < 11 forward nodes).
        OpSchema("ClipGrad", domain: trainingDomain, inputs: 2...4, inferTypes: inferSameShape()) { node, _ in
            let label = node.label
            let split = try node.int("split", default: 0) != 0
            let which = try node.int("input", default: 0)
            guard (0...2).contains(which) else { throw SegFormerError.invalid("\(label): input must be 0, 1 or 2, got \(which)") }
            let attrMin = Double(try node.float("min", default: -.infinity))
            let attrMax = Double(try node.float("max", default: .infinity))
            return ClosureKernel { inputs, ctx in
                let g = try inputs.required(0), x = try inputs.required(1)
                func bound(_ i: Int, _ fallback: Double) throws -> Double? {
                    guard let t = inputs.optional(i) else { return split || fallback.isInfinite ? nil : fallback }
                    guard t.count == 1 else { throw SegFormerError.invalid("\(label): bound #\(i - 1) must be a scalar, has shape \(t.shape)") }
                    return try t.doubles()[0]
                }
                let lo = try bound(2, attrMin), hi = try bound(3, attrMax)
                let fn = ClipGradFn(lo: lo ?? -.infinity, hi: hi ?? .infinity, hasLo: lo != nil, hasHi: hi != nil,
                                    split: split, which: which)
                return [try floatBinary(fn, g, x, label, ctx)]
            }
        },
    ]
}
