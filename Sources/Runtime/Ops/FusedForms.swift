import GraphIR

// The fused forms the canonicalising passes write into models whose opset predates the ONNX op
// (GraphIR/Passes: FuseLayerNormalization, FuseGelu): LayerNormalization (opset 17) and Gelu (20)
// registered again under `fusedDomain`, with the very same schema — shape rule, kernel, gradient —
// so an opset-12 graph runs the one LayerNormalization / Gelu kernel the runtime has.

extension OpRegistry {
    static let fusedForms: [OpSchema] = (normalizationOps + unaryElementwiseOps)
        .filter { [OpType.layerNormalization, OpType.gelu].contains($0.opType) }
        .map { $0.inDomain(fusedDomain) }
}
