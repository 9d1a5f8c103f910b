import GraphIR

// Attention (internal `fusedDomain`, written by GraphIR/Passes/FuseAttention.swift): scaled
// dot-product attention as one node,
//
//     Attention(Q, K, V; scale) = Softmax(scale · Q·Kᵀ, last axis) · V
//
// Q [B…, N, d], K [B…, M, d], V [B…, M, dv] (the same leading dims, no broadcasting) → [B…, N, dv],
// float32. With `layout = "BSHD"` (`AttentionLayout.tokensFirst`) the heads come after the tokens:
// Q [B…, N, h, d], K [B…, M, h, d], V [B…, M, h, dv] → [B…, N, h, dv], i.e. the op is
// Transpose(Attention(Transpose(Q), Transpose(K), Transpose(V))) with Transpose swapping tokens and
// heads — what an export writes around attention, without the copies. The kernel (Kernels/AttentionKernels.swift) is tiled: the N×M scores never exist in full,
// forward or backward.
// AttentionGrad (training domain): (dO, Q, K, V, O) → (dQ, dK, dV), recomputing the probabilities
// per tile from Q and K; O is the forward's output (for rowsum(dO ∘ O)).

extension OpRegistry {
    static let attentionOps: [OpSchema] = [
        OpSchema(OpType.attention, domain: fusedDomain, inputs: 3...3,
                 inferTypes: { ctx in
                     guard let q = ctx.type(0) else { return [nil] }
                     guard let qs = q.shape, let vs = ctx.type(2)?.shape, qs.count >= 2, let dv = vs.last else {
                         return [TensorType(q.dataType, nil)]
                     }
                     return [TensorType(q.dataType, Array(qs.dropLast()) + [dv])]
                 },
                 makeKernel: { node, _ in
                     let (scale, layout, label) = (try attentionScale(node), try attentionLayout(node), node.label)
                     return ClosureKernel { inputs, context in
                         [try AttentionKernels.forward(try inputs.required(0), try inputs.required(1), try inputs.required(2),
                                                       scale: scale, layout: layout, label: label, context: context)]
                     }
                 }).withGradient { ctx in
                     // The gradients in the forward's layout: dQ, dK, dV have Q's, K's and V's shapes.
                     let outs = ctx.builder.add("AttentionGrad", domain: trainingDomain,
                                                [try ctx.gradient(), ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)],
                                                attributes: ["scale": .float(try attentionScale(ctx.node)),
                                                             AttentionLayout.attribute: .string(try attentionLayout(ctx.node).rawValue)],
                                                outputs: 3)
                     return (0..<3).map { ctx.needs($0) ? outs[$0] : nil }
                 }.withWork(WorkRules.attention(backward: false)),
    ]

    static let attentionGradOps: [OpSchema] = [
        OpSchema("AttentionGrad", domain: trainingDomain, inputs: 5...5, outputs: 3...3,
                 inferTypes: { ctx in [ctx.type(1), ctx.type(2), ctx.type(3)] },
                 makeKernel: { node, _ in
                     let (scale, layout, label) = (try attentionScale(node), try attentionLayout(node), node.label)
                     return ClosureKernel { inputs, context in
                         try AttentionKernels.backward(try inputs.required(0), try inputs.required(1), try inputs.required(2),
                                                       try inputs.required(3), try inputs.required(4),
                                                       scale: scale, layout: layout, label: label, context: context)
                     }
                 }).withWork(WorkRules.attention(backward: true)),
    ]

    /// The required, finite `scale` attribute.
    private static func attentionScale(_ node: Node) throws -> Float {
        guard let scale = try node.float("scale"), scale.isFinite else {
            throw SegFormerError.invalid("\(node.label): needs a finite float attribute 'scale'")
        }
        return scale
    }

    /// The `layout` attribute: "BHSD" (the default) or "BSHD".
    static func attentionLayout(_ node: Node) throws -> AttentionLayout {
        let name = try node.string(AttentionLayout.attribute, default: AttentionLayout.headsFirst.rawValue)
        guard let layout = AttentionLayout(rawValue: name) else {
            throw SegFormerError.invalid("\(node.label): attribute '\(AttentionLayout.attribute)' is '\(name)', expected "
                                         + AttentionLayout.allCases.map { "'\($0.rawValue)'" }.joined(separator: " or "))
        }
        return layout
    }
}
