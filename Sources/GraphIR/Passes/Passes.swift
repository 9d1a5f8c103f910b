/// Graph → Graph rewrites. Each pass takes a graph and returns a new one; none of them needs to
/// run a kernel except constant folding, which asks an injected evaluator.
public enum Passes {

    /// Nodes in an order where every producer comes before its consumers. Throws on a cycle or on
    /// an input that nothing defines, naming the node.
    public static func topologicalOrder(_ graph: Graph) throws -> [Node] {
        let producer = graph.producers()
        var state = [UInt8](repeating: 0, count: graph.nodes.count)   // 0 new, 1 visiting, 2 done
        var order: [Node] = []
        order.reserveCapacity(graph.nodes.count)
        let defined = Set(graph.inputs.map(\.name)).union(graph.initializers.keys)

        // Iterative DFS so deep graphs cannot overflow the stack.
        for root in graph.nodes.indices where state[root] == 0 {
            var stack: [(node: Int, nextInput: Int)] = [(root, 0)]
            state[root] = 1
            while !stack.isEmpty {
                let (n, k) = stack[stack.count - 1]
                let inputs = graph.nodes[n].inputs
                if k < inputs.count {
                    stack[stack.count - 1].nextInput += 1
                    let name = inputs[k]
                    if name.isEmpty || defined.contains(name) && producer[name] == nil { continue }
                    guard let p = producer[name] else {
                        throw SegFormerError.invalid("\(graph.nodes[n].label): input '\(name)' is not produced by any node, graph input or initializer")
                    }
                    if state[p] == 1 {
                        throw SegFormerError.invalid("\(graph.nodes[n].label): the graph has a cycle through '\(name)'")
                    }
                    if state[p] == 0 { state[p] = 1; stack.append((p, 0)) }
                } else {
                    state[n] = 2
                    order.append(graph.nodes[n])
                    stack.removeLast()
                }
            }
        }
        return order
    }

    /// Sorts the nodes topologically.
    public static func sorted(_ graph: Graph) throws -> Graph {
        var g = graph
        g.nodes = try topologicalOrder(graph)
        return g
    }

    /// Removes Identity nodes, rewiring consumers to the Identity's input. (Dropout is left alone: in
    /// training mode it is not an identity, and its kernel returns its input unchanged otherwise.) An Identity whose output is a graph output is kept when its input is a
    /// graph input or another graph output (a graph output must stay a distinct name).
    public static func removeIdentities(_ graph: Graph) -> Graph {
        var g = graph
        let outputs = Set(g.outputs.map(\.name))
        var rename: [String: String] = [:]
        func resolve(_ n: String) -> String {
            var x = n
            while let r = rename[x] { x = r }
            return x
        }
        var kept: [Node] = []
        for node in g.nodes {
            let isIdentity = node.domain.isEmpty && node.opType == OpType.identity && node.inputs.count == 1
                && node.outputs.count == 1
            if isIdentity, !outputs.contains(node.outputs[0]) {
                rename[node.outputs[0]] = node.inputs[0]
                continue
            }
            kept.append(node)
        }
        for i in kept.indices { kept[i].inputs = kept[i].inputs.map { $0.isEmpty ? $0 : resolve($0) } }
        g.nodes = kept
        return g
    }

    /// Drops nodes whose outputs reach no graph output, and initializers nothing reads — but not the
    /// default of a graph input (IR < 4 lists initializers among the inputs): without it the input would
    /// become one that every run must feed.
    public static func removeDeadNodes(_ graph: Graph) -> Graph {
        var g = graph
        var live = Set(g.outputs.map(\.name) + g.inputs.map(\.name))
        var keep = [Bool](repeating: false, count: g.nodes.count)
        for i in g.nodes.indices.reversed() {
            let n = g.nodes[i]
            if n.outputs.contains(where: { live.contains($0) }) {
                keep[i] = true
                for input in n.inputs where !input.isEmpty { live.insert(input) }
            }
        }
        g.nodes = g.nodes.indices.filter { keep[$0] }.map { g.nodes[$0] }
        for name in g.initializerOrder where !live.contains(name) { g.removeInitializer(name) }
        return g
    }

    /// Replaces nodes whose inputs are all constants (initializers) with initializers holding their
    /// results. `evaluate` runs one node; `isFoldable` may veto a node given its constant inputs (e.g.
    /// random ops, or results too large to keep as constants).
    /// Folded values that are graph outputs stay initializers named as the output.
    public static func foldConstants(_ graph: Graph,
                                     isFoldable: (Node, [Tensor?]) -> Bool = { _, _ in true },
                                     evaluate: (Node, [Tensor?]) throws -> [Tensor]) throws -> Graph {
        var g = try sorted(graph)
        var kept: [Node] = []
        let graphInputs = Set(g.inputs.map(\.name))   // an initializer listed as input may be overridden
        for node in g.nodes {
            let constant = node.inputs.allSatisfy { $0.isEmpty || (g.initializers[$0] != nil && !graphInputs.contains($0)) }
            let inputs: [Tensor?] = constant ? node.inputs.map { $0.isEmpty ? nil : g.initializers[$0] } : []
            if constant, isFoldable(node, inputs) {
                let results = try evaluate(node, inputs)
                for (name, t) in zip(node.outputs, results) where !name.isEmpty { g.setInitializer(name, t) }
            } else {
                kept.append(node)
            }
        }
        g.nodes = kept
        return removeDeadNodes(g)
    }
}
