extension GraphPass {
    /// GELU written out with Erf, as PyTorch exports it below opset 20, becomes one node:
    ///
    ///     y = x · (1 + Erf(x / √2)) · 0.5      (the three factors grouped and ordered any way)
    ///       = Gelu(x)                           (approximate = none)
    ///
    /// Why it is the same function: Gelu is x·Φ(x) with Φ(x) = (1 + erf(x/√2)) / 2. Matched exactly
    /// and only: the constants √2 (or 1/√2 in a Mul), 1 and 0.5 as one-element float constants holding
    /// those numbers as their type writes them; the same x in the Erf's argument and in the product;
    /// x a float tensor of known rank ≥ 1 (so the constants broadcast without changing its shape);
    /// every intermediate read by the pattern alone. Written in ai.onnx from opset 20, else in
    /// `fusedDomain` (see `PassContext.domain`).
    public static let fuseGelu = overNodes("fuse-gelu", of: OpType.mul) { index, mul, r in
        guard let x = geluInput(of: mul, r), let type = r.context.types[x], [.float, .double].contains(type.dataType),
              let rank = type.shape?.count, rank >= 1 else { return }
        r.replace(index)
        r.add(OpType.gelu, domain: r.context.domain(ofOpIntroducedAt: 20), [x], writing: mul.outputs[0])
    }

    /// x when `mul` is x · E · 0.5 with E = 1 + erf(x/√2), grouped (x·E)·0.5, (x·0.5)·E or x·(E·0.5).
    private static func geluInput(of mul: Node, _ r: GraphRewriter) -> String? {
        for (a, b) in mul.operandOrders {
            if r.isScalar(b, 0.5), let product = r.soleProducer(of: a, OpType.mul) {
                for (x, e) in product.operandOrders where erfTermInput(e, r) == x { return x }
            }
            if let x = halved(a, r), erfTermInput(b, r) == x { return x }
            if let e = halved(b, r), erfTermInput(e, r) == a { return a }
        }
        return nil
    }

    /// x when `value` is 1 + erf(x/√2), written with Div(x, √2) or Mul(x, 1/√2).
    private static func erfTermInput(_ value: String, _ r: GraphRewriter) -> String? {
        guard let add = r.soleProducer(of: value, OpType.add) else { return nil }
        for (e, one) in add.operandOrders where r.isScalar(one, 1) {
            guard let erf = r.soleProducer(of: e, OpType.erf) else { continue }
            if let div = r.soleProducer(of: erf.inputs[0], OpType.div), r.isScalar(div.input(1), 2.squareRoot()) {
                return div.inputs[0]
            }
            if let scaled = r.soleProducer(of: erf.inputs[0], OpType.mul) {
                return scaled.operandOrders.first { r.isScalar($0.1, 0.5.squareRoot()) }?.0
            }
        }
        return nil
    }

    /// v when `value` is v · 0.5.
    private static func halved(_ value: String, _ r: GraphRewriter) -> String? {
        guard let mul = r.soleProducer(of: value, OpType.mul) else { return nil }
        return mul.operandOrders.first { r.isScalar($0.1, 0.5) }?.0
    }
}
