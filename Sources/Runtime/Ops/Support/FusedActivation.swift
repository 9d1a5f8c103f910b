import GraphIR

extension Node {
    /// Whether a fused node applies its one allowed activation (`activation` attribute: `allowed`, e.g.
    /// Relu or Gelu, or absent); any other value is an error naming the node.
    func appliesActivation(_ allowed: String) throws -> Bool {
        let activation = try string("activation", default: "")
        guard activation.isEmpty || activation == allowed else {
            throw SegFormerError.invalid("\(label): \(opType) activation must be \(allowed) or absent, got '\(activation)'")
        }
        return !activation.isEmpty
    }
}
