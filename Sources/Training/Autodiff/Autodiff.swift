import GraphIR
import Runtime

/// A forward graph extended with its backward pass: one graph in the same IR, so it is planned
/// (order, liveness, buffer reuse) and executed like any other. Its outputs are the loss followed
/// by one gradient per parameter.
public struct GradientGraph {
    public var graph: Graph
    public var opset: Int
    public var loss: String
    /// Parameter name → name of its gradient value (a graph output).
    public var gradients: [(parameter: String, gradient: String)]
}

/// Reverse-mode automatic differentiation over GraphIR: every op's gradient rule (kept next to its
/// kernel in Runtime/Ops) writes backward nodes; contributions to the same value are summed.
public enum Autodiff {

    /// Differentiates the scalar `loss` of `graph` with respect to `parameters` (graph inputs).
    /// Parameters the loss does not depend on get a zero gradient. `seed`, a graph input holding a float
    /// scalar w, makes the gradients those of w · loss (the backward pass starts from w instead of 1).
    public static func differentiate(_ graph: Graph, opset: Int, loss: String, parameters: [String],
                                     seed: String? = nil) throws -> GradientGraph {
        let sorted = try Passes.sorted(graph)
        let producer = sorted.producers()
        guard producer[loss] != nil || sorted.inputs.contains(where: { $0.name == loss }) else {
            throw SegFormerError.invalid("autodiff: loss '\(loss)' is not a value of the graph")
        }
        let parameterSet = Set(parameters)
        for p in parameters where !sorted.inputs.contains(where: { $0.name == p }) {
            throw SegFormerError.invalid("autodiff: parameter '\(p)' is not a graph input")
        }

        // Values that depend on some parameter (forward reachability).
        var dependsOnParameter = parameterSet
        for node in sorted.nodes where node.inputs.contains(where: { dependsOnParameter.contains($0) }) {
            dependsOnParameter.formUnion(node.outputs.filter { !$0.isEmpty })
        }
        // Nodes that lead to the loss (backward reachability).
        var leadsToLoss: Set<String> = [loss]
        var relevant: [Node] = []
        for node in sorted.nodes.reversed() where node.outputs.contains(where: { leadsToLoss.contains($0) }) {
            if node.inputs.contains(where: { dependsOnParameter.contains($0) }) {
                relevant.append(node)   // reverse topological order
            }
            for i in node.inputs where !i.isEmpty { leadsToLoss.insert(i) }
        }

        let builder = GraphBuilder(graph: sorted, prefix: "grad")
        // Pending gradient contributions per value; summed when the value's producer is reached.
        var contributions: [String: [String]] = [:]
        let ones = builder.add1(OpType.constantOfShape, [builder.add1(OpType.shape, [loss])],
                                attributes: ["value": .tensor(Tensor([Float(1)], shape: [1]))], name: "seed")
        contributions[loss] = [seed.map { builder.add1(OpType.mul, [ones, $0], name: "weighted_seed") } ?? ones]

        func total(_ value: String) -> String? {
            guard let list = contributions[value], !list.isEmpty else { return nil }
            if list.count == 1 { return list[0] }
            let sum = builder.add1(OpType.sum, list, name: "accumulate")
            contributions[value] = [sum]
            return sum
        }

        for node in relevant {
            let outGrads = node.outputs.map { $0.isEmpty ? nil : total($0) }
            if outGrads.allSatisfy({ $0 == nil }) { continue }
            let schema = try OpRegistry.schema(for: node, opset: opset)
            guard let rule = schema.gradient else {
                throw SegFormerError.unsupported("autodiff: \(node.label): op \(node.opType) has no gradient rule")
            }
            let needs = node.inputs.map { !$0.isEmpty && dependsOnParameter.contains($0) }
            let context = GradientContext(node: node, opset: opset, outputGradients: outGrads,
                                          needsInputGradient: needs, builder: builder)
            let inputGrads: [String?]
            do { inputGrads = try rule(context) } catch let e as SegFormerError { throw e.prefixed("autodiff") }
            for (i, g) in inputGrads.enumerated() where i < node.inputs.count {
                guard let g, needs[i] else { continue }
                contributions[node.inputs[i], default: []].append(g)
            }
        }

        var result: [(String, String)] = []
        for p in parameters {
            let g: String
            if let t = total(p) {
                g = t
            } else {
                g = builder.add1(OpType.constantOfShape, [builder.add1(OpType.shape, [p])],
                                 attributes: ["value": .tensor(Tensor([Float(0)], shape: [1]))], name: "zero_grad")
            }
            // A gradient output must be its own value (not the parameter itself or another output).
            let named = builder.add1(OpType.identity, [g], name: "grad_of_\(p)")
            result.append((p, named))
        }
        var g = builder.graph
        let lossType = sorted.valueInfo[loss] ?? TensorType(.float, nil)
        g.outputs = [ValueInfo(name: loss, type: lossType)]
        for (p, name) in result {
            let type = sorted.inputs.first(where: { $0.name == p })!.type
            g.outputs.append(ValueInfo(name: name, type: type))
        }
        return GradientGraph(graph: g, opset: opset, loss: loss, gradients: result)
    }
}
