extension GraphPass {
    /// LayerNormalization written out in elementary ops, as PyTorch exports it below opset 17,
    /// becomes one node:
    ///
    ///     d = x − ReduceMean(x)                                  (last axis, keepdims)
    ///     y = d / Sqrt(ReduceMean(Pow(d, 2)) + ε) · γ + β   =   LayerNormalization(x, γ, β; axis −1, epsilon ε)
    ///
    /// Why it is the same function: the first ReduceMean is each row's mean μ, the second its biased
    /// variance, and the rest is LayerNormalization's definition term by term. Matched exactly and only:
    /// both means over the last axis alone, keeping it; the exponent the constant 2; ε a scalar float
    /// constant (exactly a float32, the attribute's type); γ and β constant vectors as long as x's last
    /// axis, in x's element type, so the Mul and Add broadcast along that axis only; the Sub and the
    /// first mean reading the same x, the square and the quotient the same d; every intermediate read
    /// by the pattern alone (d by exactly those two). Mul and Add operands may come in either order.
    /// Written in ai.onnx from opset 17, else in `fusedDomain` (see `PassContext.domain`).
    public static let fuseLayerNormalization = overNodes("fuse-layer-normalization", of: OpType.add) { index, add, r in
        guard let ln = DecomposedLayerNorm(endingAt: add, in: r) else { return }
        r.replace(index)
        r.add(OpType.layerNormalization, domain: r.context.domain(ofOpIntroducedAt: 17), [ln.x, ln.scale, ln.bias],
              attributes: ["axis": .int(-1), "epsilon": .float(ln.epsilon)], writing: add.outputs[0])
    }
}

/// The decomposed LayerNormalization that ends in a given `Add(·, β)` (see `fuseLayerNormalization`).
private struct DecomposedLayerNorm {
    let x: String
    let scale: String
    let bias: String
    let epsilon: Float

    init?(endingAt add: Node, in r: GraphRewriter) {
        for (product, bias) in add.operandOrders {
            guard let mul = r.soleProducer(of: product, OpType.mul) else { continue }
            for (quotient, scale) in mul.operandOrders {
                if let (x, epsilon) = Self.normalized(quotient, r), Self.isAffineVector(scale, of: x, r),
                   Self.isAffineVector(bias, of: x, r) {
                    (self.x, self.scale, self.bias, self.epsilon) = (x, scale, bias, epsilon)
                    return
                }
            }
        }
        return nil
    }

    /// (x, ε) when `value` is (x − μ) / Sqrt(mean((x − μ)²) + ε), μ = mean(x), means over the last axis.
    private static func normalized(_ value: String, _ r: GraphRewriter) -> (x: String, epsilon: Float)? {
        guard let div = r.soleProducer(of: value, OpType.div),
              let sub = r.producer(of: div.inputs[0], OpType.sub, readers: 2),   // the Div and the Pow
              let mean = r.soleProducer(of: sub.inputs[1], OpType.reduceMean),
              mean.inputs[0] == sub.inputs[0], isMeanOverLastAxis(mean, r),
              let sqrt = r.soleProducer(of: div.inputs[1], OpType.sqrt),
              let shifted = r.soleProducer(of: sqrt.inputs[0], OpType.add) else { return nil }
        for (variance, eps) in shifted.operandOrders {
            guard let (epsilon, _) = r.scalar(eps), Double(Float(epsilon)) == epsilon,
                  let meanSquare = r.soleProducer(of: variance, OpType.reduceMean), isMeanOverLastAxis(meanSquare, r),
                  let square = r.soleProducer(of: meanSquare.inputs[0], OpType.pow),
                  square.inputs[0] == div.inputs[0], r.isScalar(square.input(1), 2) else { continue }
            return (sub.inputs[0], Float(epsilon))
        }
        return nil
    }

    /// A ReduceMean over the last axis only, keeping it (axes as attribute, or as input from opset 18).
    private static func isMeanOverLastAxis(_ mean: Node, _ r: GraphRewriter) -> Bool {
        guard let rank = r.shape(mean.inputs[0])?.count, rank >= 1,
              (try? mean.int("keepdims", default: 1)) == 1 else { return false }
        let axes = mean.inputs.count > 1 ? r.constant(mean.input(1)).flatMap { try? $0.integers() }
                                         : (try? mean.ints("axes")).flatMap { $0 }
        return axes == [-1] || axes == [rank - 1]
    }

    /// A constant vector as long as x's (known) last axis, of x's element type.
    private static func isAffineVector(_ value: String, of x: String, _ r: GraphRewriter) -> Bool {
        guard let t = r.constant(value), let type = r.context.types[x], let last = type.shape?.last?.value else { return false }
        return t.shape == [last] && t.dataType == type.dataType
    }
}
