import GraphIR

/// Static type inference over a graph: propagates element types and symbolic shapes from the graph
/// inputs through every op's shape rule. Values computed only from constants are evaluated (when
/// small), so shape arithmetic on constants yields concrete shapes, as in onnxruntime's inference.
public enum TypeInference {
    public struct Result {
        /// Inferred type per value name (graph inputs, initializers, node outputs).
        public var types: [String: TensorType]
        /// Nodes whose rule failed or is missing, with the reason (inference continues past them).
        public var unknown: [(node: String, reason: String)]
    }

    public static func infer(_ graph: Graph, opset: Int, evaluateConstantsUpTo limit: Int = 1 << 16) throws -> Result {
        let g = try Passes.sorted(graph)
        var types: [String: TensorType] = g.valueInfo
        var constants: [String: Tensor] = [:]
        for (name, t) in g.initializers {
            types[name] = TensorType(t.dataType, known: t.shape)
            constants[name] = t
        }
        for i in g.inputs { types[i.name] = i.type; if g.initializers[i.name] != nil { constants[i.name] = nil } }
        var unknown: [(String, String)] = []
        for node in g.nodes {
            let schema: OpSchema
            do { schema = try OpRegistry.schema(for: node, opset: opset) } catch {
                unknown.append((node.label, "\(error)"))
                continue
            }
            let ins: [Tensor?] = node.inputs.map { $0.isEmpty ? nil : constants[$0] }
            // Evaluate nodes whose inputs are all small constants.
            let present = node.inputs.filter { !$0.isEmpty }
            if present.allSatisfy({ constants[$0] != nil }),
               present.reduce(0, { $0 + constants[$1]!.count }) <= limit,
               !InferenceSession.nondeterministicOps.contains(node.opType),
               let outs = try? schema.makeKernel(node, opset).run(ins, .singleThreaded) {
                for (name, t) in zip(node.outputs, outs) where !name.isEmpty {
                    types[name] = TensorType(t.dataType, known: t.shape)
                    if t.count <= limit { constants[name] = t }
                }
                continue
            }
            guard let rule = schema.inferTypes else {
                unknown.append((node.label, "op \(node.opType) has no shape rule"))
                continue
            }
            let ctx = TypeInferenceContext(node: node, opset: opset,
                                           inputTypes: node.inputs.map { $0.isEmpty ? nil : types[$0] },
                                           constantInputs: ins)
            do {
                let outs = try rule(ctx)
                for (name, t) in zip(node.outputs, outs) where !name.isEmpty {
                    if let t { types[name] = t }
                }
            } catch {
                unknown.append((node.label, "\(error)"))
            }
        }
        return Result(types: types, unknown: unknown)
    }
}
