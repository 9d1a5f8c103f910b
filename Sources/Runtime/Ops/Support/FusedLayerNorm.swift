import GraphIR

// The LayerNorm a fused producer carries (fuse-layer-norm-into-producer; `ProducerLayerNorm` says
// where): its output is the producer's second output, of the first one's type.
extension TypeInferenceContext {
    /// The producer's own output types, then, when it carries a LayerNorm, the LayerNorm's output:
    /// the same type as the first.
    func withLayerNormOutput(_ types: [TensorType?]) -> [TensorType?] {
        guard let scale = ProducerLayerNorm.scaleIndex(of: node.opType), node.input(scale) != nil else { return types }
        return types + [types.first ?? nil]
    }
}
