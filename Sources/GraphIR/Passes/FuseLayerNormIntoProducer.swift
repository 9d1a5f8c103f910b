/// How a fused producer carries the LayerNorm of its output (fuse-layer-norm-into-producer; the
/// kernels read it the same way): the LayerNorm's Scale and optional B as the producer's inputs
/// `scaleIndex` and `scaleIndex + 1`, its epsilon as the attribute `epsilonAttribute`, its output as
/// the producer's second output. The first output is "" when nothing but the LayerNorm read it.
public enum ProducerLayerNorm {
    public static let epsilonAttribute = "layer_norm_epsilon"

    /// Where a producer of `opType` (fused domain) takes the LayerNorm's Scale: after its own inputs.
    public static func scaleIndex(of opType: String) -> Int? {
        switch opType {
        case OpType.fusedMatMul: 4          // A, B, bias, residual
        case OpType.tokenDepthwiseConv: 7   // X, W, shape, B, projection P, its bias, residual
        default: nil
        }
    }
}

extension GraphPass {
    /// A LayerNormalization over the last axis of a value that a fused producer has just written —
    /// SegFormer's attention output projection with its residual (FusedMatMul) or MixFFN's fc2 with
    /// its residual (the projected TokenDepthwiseConv) — becomes the producer's second output,
    /// computed row by row in its epilogue while the row is in cache:
    ///
    ///     y = P(…);  z = LayerNormalization(y, γ, β; axis −1, epsilon ε)
    ///       = P(…, γ, β; layer_norm_epsilon ε) → (y, z)      (y "" when the LayerNorm was its only reader)
    ///
    /// Why it is the same function: each producer finishes whole rows of y (the last axis) in its
    /// epilogue, and a LayerNorm over the last axis is a function of each row alone; the kernel runs
    /// the LayerNormalization kernel's own row routine on it with the same operands, so z has the same
    /// bits. y stays an output when anything else reads it (the residual stream does), so the
    /// LayerNorm saves re-reading y from memory, and its own pass over the threads. Matched only: a
    /// float32 LayerNormalization (ai.onnx, or the fused domain's below opset 17) with axis −1 (or the
    /// last axis), stash_type 1, no Mean / InvStdDev output read, Scale (and B, if any) of known shape
    /// [C], C = y's last dimension; a producer in the fused domain with one output: a FusedMatMul
    /// without transposeOutput, or a TokenDepthwiseConv with its projection. The patch embeddings' and
    /// spatial reductions' LayerNorms, after a ChannelsLastConv, are left: their inputs are small
    /// (at most 16384 × 32 values in b0 at 512²), and the conv's GEMM writes a whole tile at a time.
    /// Inference graphs only (the producers' fused forms have no gradient rule).
    public static let fuseLayerNormIntoProducer = GraphPass(name: "fuse-layer-norm-into-producer") { graph, context in
        let r = GraphRewriter(graph, context: context, pass: "fuse-layer-norm-into-producer")
        for (index, norm) in r.nodes.enumerated() where norm.opType == OpType.layerNormalization
            && (norm.domain.isEmpty || norm.domain == fusedDomain) {
            let y = norm.inputs[0]
            guard let epsilon = lastAxisLayerNormEpsilon(norm, r),
                  let (producerIndex, scaleIndex) = fusedProducer(of: y, r) else { continue }
            let producer = r.nodes[producerIndex]
            var inputs = producer.inputs
            while inputs.count < scaleIndex { inputs.append("") }
            inputs += [norm.inputs[1], norm.input(2) ?? ""]
            while inputs.last == "" { inputs.removeLast() }
            var attributes = producer.attributes
            attributes[ProducerLayerNorm.epsilonAttribute] = .float(epsilon)
            let keepsY = r.readCount(of: y) > 1
            [producerIndex, index].forEach(r.replace)
            r.add(producer.opType, domain: fusedDomain, inputs, attributes: attributes,
                  writing: [keepsY ? y : "", norm.outputs[0]])
        }
        return r.result()
    }

    /// The epsilon of a float32 LayerNormalization over the last axis whose Scale and B are [C] vectors
    /// (C = its input's last dimension) and whose only output read is Y; nil for any other.
    private static func lastAxisLayerNormEpsilon(_ norm: Node, _ r: GraphRewriter) -> Float? {
        guard norm.inputs.count >= 2, norm.inputs.count <= 3, !norm.outputs[0].isEmpty,
              norm.outputs.dropFirst().allSatisfy({ $0.isEmpty || r.readCount(of: $0) == 0 }),
              let type = r.context.types[norm.inputs[0]], type.dataType == .float,
              let shape = type.shape, shape.count >= 1, let c = shape.last?.value,
              let axis = try? norm.int("axis", default: -1), axis == -1 || axis == shape.count - 1,
              (try? norm.int("stash_type", default: 1)) == 1,
              let epsilon = try? norm.float("epsilon", default: 1e-5) else { return nil }
        for vector in [norm.input(1), norm.input(2)].compactMap({ $0 }) {
            guard r.knownShape(vector) == [c], r.context.types[vector]?.dataType == .float else { return nil }
        }
        return epsilon
    }

    /// The fused producer of `value` that can normalise its rows (see `fuseLayerNormIntoProducer`),
    /// with the input index where it takes the LayerNorm's Scale.
    private static func fusedProducer(of value: String, _ r: GraphRewriter) -> (index: Int, scaleIndex: Int)? {
        for opType in [OpType.fusedMatMul, OpType.tokenDepthwiseConv] {
            guard let i = r.producerIndex(of: value, opType, readers: r.readCount(of: value), domain: fusedDomain),
                  let scaleIndex = ProducerLayerNorm.scaleIndex(of: opType) else { continue }
            let node = r.nodes[i]
            guard node.outputs == [value], node.inputs.count <= scaleIndex else { return nil }
            switch opType {
            case OpType.fusedMatMul: guard (try? node.int("transposeOutput", default: 0)) == 0 else { return nil }
            default: guard node.input(4) != nil else { return nil }   // the projected form only
            }
            return (i, scaleIndex)
        }
        return nil
    }
}
