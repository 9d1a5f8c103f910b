import GraphIR

// The work rules of the contractions (`OpSchema.work`): multiply-adds from shapes, for the planner's
// `WorkBudget`. Estimates of the arithmetic, not of time: memory-bound ops carry none.
enum WorkRules {
    /// `shape`'s element count as a Double (no overflow for hostile dims), nil when unknown.
    static func elements(_ shape: [Int]?) -> Double? {
        shape.map { $0.reduce(1.0) { $0 * Double(max($1, 0)) } }
    }

    /// The shape of the result an op computes: its first output's, or, when nothing reads that one, the
    /// LayerNorm output a fused producer writes beside it (the same shape; fuse-layer-norm-into-producer).
    static func result(_ outputs: [[Int]?]) -> [Int]? {
        outputs.lazy.compactMap { $0 }.first
    }

    /// A matrix product (MatMul, Gemm, FusedMatMul): each output element sums over A's inner axis,
    /// the last one, or the one before it when A is transposed.
    static func product(_ node: Node, _ inputs: [[Int]?], _ outputs: [[Int]?]) -> Double? {
        guard let a = inputs.first ?? nil, !a.isEmpty, let out = elements(result(outputs)) else { return nil }
        let transA = ((try? node.int("transA", default: 0)) ?? 0) != 0 && a.count >= 2
        return out * Double(transA ? a[a.count - 2] : a[a.count - 1])
    }

    /// Conv: each output element sums over its group's input channels × the kernel window (W's axes
    /// after the first). ConvTranspose: each input element spreads over the same count.
    static func convolution(transposed: Bool) -> WorkRule {
        { _, inputs, outputs in
            guard inputs.count > 1, let w = inputs[1], w.count >= 2,
                  let n = elements(transposed ? inputs[0] : result(outputs)) else { return nil }
            return n * (elements(Array(w.dropFirst())) ?? 0)
        }
    }

    /// Attention over Q [.., N, d], K [.., M, d], V [.., M, dv] (M before the heads axis in the
    /// tokens-first layout): Q·Kᵀ and P·V, N·M·(d + dv) per head; its backward (inputs dO, Q, K, V, O)
    /// recomputes Q·Kᵀ and makes dV, dP, dQ, dK: N·M·(3d + 2dv).
    static func attention(backward: Bool) -> WorkRule {
        { node, inputs, _ in
            let (q, k, v) = backward ? (1, 2, 3) : (0, 1, 2)
            let keysAxisFromEnd = (try? OpRegistry.attentionLayout(node)) == .tokensFirst ? 3 : 2
            guard inputs.count > v, let qs = inputs[q], let ks = inputs[k], let vs = inputs[v],
                  qs.count >= 2, ks.count >= keysAxisFromEnd, let d = qs.last, d > 0, let dv = vs.last,
                  let queries = elements(qs) else { return nil }
            let m = Double(ks[ks.count - keysAxisFromEnd])
            let perPair = backward ? Double(3 * d + 2 * dv) : Double(d + dv)
            return queries / Double(d) * m * perPair
        }
    }
}
