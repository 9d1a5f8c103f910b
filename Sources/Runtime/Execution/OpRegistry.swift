import GraphIR

/// All ops the runtime implements, gathered from the op family files in `Ops/`.
public enum OpRegistry {
    public static let schemas: [String: OpSchema] = {
        var table: [String: OpSchema] = [:]
        let families: [[OpSchema]] = [
            elementwiseOps, shapeManipulationOps, linearAlgebraOps, convolutionOps, poolingOps,
            normalizationOps, softmaxOps, reductionOps, resizeOps,
            sumToShapeOps,
        ]
        for family in families {
            for s in family { table[key(s.domain, s.opType)] = s }
        }
        return table
    }()

    static func key(_ domain: String, _ opType: String) -> String {
        let d = (domain == "ai.onnx") ? "" : domain
        return d.isEmpty ? opType : "\(d).\(opType)"
    }

    public static func schema(domain: String, opType: String) -> OpSchema? { schemas[key(domain, opType)] }

    /// The schema for a node, or an "unsupported" error naming the node, op and opset.
    public static func schema(for node: Node, opset: Int) throws -> OpSchema {
        guard let s = schema(domain: node.domain, opType: node.opType) else {
            throw SegFormerError.unsupported("\(node.label): op \(node.opType) is not implemented")
        }
        if node.domain.isEmpty || node.domain == "ai.onnx", !s.opsets.contains(opset) {
            throw SegFormerError.unsupported("\(node.label): op \(node.opType) at opset \(opset) (implemented for opsets \(s.opsets.lowerBound)–\(s.opsets.upperBound))")
        }
        let present = node.inputs.count
        if present > s.inputCount.upperBound || node.inputs.filter({ !$0.isEmpty }).count < s.inputCount.lowerBound {
            throw SegFormerError.invalid("\(node.label): takes \(s.inputCount.lowerBound)…\(s.inputCount.upperBound) inputs, has \(present)")
        }
        if !s.outputCount.contains(node.outputs.count) {
            throw SegFormerError.invalid("\(node.label): produces \(s.outputCount.lowerBound)…\(s.outputCount.upperBound) outputs, has \(node.outputs.count)")
        }
        return s
    }
}
