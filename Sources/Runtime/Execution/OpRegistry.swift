import GraphIR

/// All ops the runtime implements. `families` is the one list of what is registered: each op family
/// file under `Ops/` declares its schemas; the fused forms the canonicalising passes write and the
/// training-domain kernels behind the gradient rules are listed as families of their own.
public enum OpRegistry {
    public static let families: [(name: String, schemas: [OpSchema])] = [
        ("elementwise binary", binaryElementwiseOps),
        ("elementwise unary", unaryElementwiseOps),
        ("cast", castOps),
        ("shape and data movement", shapeManipulationOps),
        ("linear algebra", linearAlgebraOps),
        ("convolution", convolutionOps),
        ("pooling", poolingOps),
        ("normalization", normalizationOps),
        ("batch normalization in training", batchNormTrainingOps),
        ("random generators", randomOps),
        ("softmax", softmaxOps),
        ("cross-entropy loss", crossEntropyOps),
        ("segmentation loss (fused upsampling + cross-entropy)", fusedSegmentationLossOps),
        ("reduction", reductionOps),
        ("resize", resizeOps),
        ("fused forms of decomposed ops", fusedForms),
        ("fused attention", attentionOps),
        ("gradient kernels: elementwise binary", binaryGradientOps),
        ("gradient kernels: elementwise unary", unaryGradientOps),
        ("gradient kernels: shape and data movement", shapeGradientOps),
        ("gradient kernels: normalization", normalizationGradOps),
        ("gradient kernels: softmax", softmaxGradOps),
        ("gradient kernels: fused attention", attentionGradOps),
        ("gradient kernels: reduction", reductionGradOps),
        ("gradient kernels: resize", resizeGradOps),
        ("gradient kernels: sum to shape", sumToShapeOps),
    ]

    /// Every registered schema by domain and op type (a key registered twice is a bug that
    /// `duplicateRegistrations` names; the tests check there is none).
    public static let schemas: [String: OpSchema] = {
        var table: [String: OpSchema] = [:]
        for family in families {
            for s in family.schemas { table[key(s.domain, s.opType)] = s }
        }
        return table
    }()

    /// Op keys that more than one schema claims.
    public static var duplicateRegistrations: [String] {
        var seen = Set<String>(), twice: [String] = []
        for family in families {
            for s in family.schemas where !seen.insert(key(s.domain, s.opType)).inserted { twice.append(key(s.domain, s.opType)) }
        }
        return twice
    }

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
