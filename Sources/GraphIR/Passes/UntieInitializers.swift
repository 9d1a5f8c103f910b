extension Passes {
    /// Gives every use of a floating-point initializer its own copy, so training does not tie values
    /// that the exporter merged. Exporters deduplicate equal initializers (e.g. a new decode head's
    /// zero biases) and reach the survivor through Identity nodes or by using one name in several
    /// places; in the model they were independent parameters.
    ///
    /// - An Identity whose input is (a chain of Identities from) an initializer becomes an
    ///   initializer named as the Identity's output — the name the exporter kept for that use.
    /// - A float initializer read by several node inputs keeps its name for the first use; each
    ///   further use gets a copy named `NAME.use2`, `NAME.use3`, …
    /// Integer initializers (shapes, axes) are left shared.
    public static func untieInitializers(_ graph: Graph) throws -> Graph {
        var g = try sorted(graph)
        let graphOutputs = Set(g.outputs.map(\.name))
        // 1. Identity(initializer) → initializer.
        var kept: [Node] = []
        for node in g.nodes {
            if node.domain.isEmpty, node.opType == OpType.identity, node.inputs.count == 1, node.outputs.count == 1,
               let t = g.initializers[node.inputs[0]], t.dataType.isFloatingPoint,
               !g.inputs.contains(where: { $0.name == node.inputs[0] }) {
                g.setInitializer(node.outputs[0], t.copy())
                continue
            }
            kept.append(node)
        }
        g.nodes = kept
        // 2. One initializer, several uses → one copy per use.
        var uses: [String: Int] = [:]
        for i in g.nodes.indices {
            for k in g.nodes[i].inputs.indices {
                let name = g.nodes[i].inputs[k]
                guard let t = g.initializers[name], t.dataType.isFloatingPoint else { continue }
                let n = uses[name, default: 0] + 1
                uses[name] = n
                if n == 1 && !graphOutputs.contains(name) { continue }
                var copyName = "\(name).use\(n)"
                while g.initializers[copyName] != nil { copyName += "_" }
                g.setInitializer(copyName, t.copy())
                g.nodes[i].inputs[k] = copyName
            }
        }
        return removeDeadNodes(g)
    }
}
