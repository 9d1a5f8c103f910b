extension GraphPass {
    /// A `FusedMatMul` whose left operand is a `TokenDepthwiseConv`'s output, read by it alone, takes
    /// the convolution in (MixFFN's fc2 after its depthwise conv and GELU):
    ///
    ///     FusedMatMul(TokenDepthwiseConv(X, W, shape, B), P, c, R)
    ///       = TokenDepthwiseConv(X, W, shape, B, P, c, R)
    ///
    /// Why it is the same function: the fused node computes the convolution's output band by band of
    /// whole rows into a buffer, then the very product, bias and residual of the FusedMatMul on that
    /// band while it is in cache (the GEMM may add a row's products in another order than one call over
    /// all rows: equal up to float rounding). The [B, N, 4C] hidden tensor — 8 MB per MixFFN of b0's
    /// first stage at 512² — is never written nor read back. Matched: a product without transposes,
    /// transposed output or activation, whose right operand has a known 2-D shape [C, M]. Inference
    /// graphs only (the projected form has no gradient rule; FusedMatMul has none either).
    public static let fuseTokenDepthwiseProjection = GraphPass(name: "fuse-token-depthwise-projection") { graph, context in
        let r = GraphRewriter(graph, context: context, pass: "fuse-token-depthwise-projection")
        for (index, product) in r.nodes.enumerated() where product.domain == fusedDomain && product.opType == OpType.fusedMatMul {
            guard ["transA", "transB", "transposeOutput"].allSatisfy({ (try? product.int($0, default: 0)) == 0 }),
                  product.attributes["activation"] == nil,
                  let p = r.knownShape(product.input(1)), p.count == 2,
                  let conv = r.producerIndex(of: product.inputs[0], OpType.tokenDepthwiseConv, domain: fusedDomain),
                  r.nodes[conv].inputs.count <= 4, (try? r.nodes[conv].int("adjoint", default: 0)) == 0,
                  r.knownShape(r.nodes[conv].input(1))?.first == p[0] else { continue }
            var inputs = r.nodes[conv].inputs
            while inputs.count < 4 { inputs.append("") }
            inputs += [product.inputs[1], product.input(2) ?? "", product.input(3) ?? ""]
            while inputs.last == "" { inputs.removeLast() }
            [conv, index].forEach(r.replace)
            r.add(OpType.tokenDepthwiseConv, domain: fusedDomain, inputs, attributes: r.nodes[conv].attributes,
                  writing: product.outputs[0])
        }
        return r.result()
    }
}
