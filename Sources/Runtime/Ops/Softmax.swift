import GraphIR

extension OpRegistry {
    /// Schemas of this family (filled in by the family's implementation).
    static let softmaxOps: [OpSchema] = []
}
