/// Which BatchNormalization nodes normalise with batch statistics (training mode): at opset ≥ 14 the
/// `training_mode` attribute; at opsets 9–13 a node that asks for its running-statistics outputs,
/// which is how torch.onnx exports `TrainingMode.TRAINING` there.
public enum BatchNormMode {
    public static func isTraining(_ node: Node, opset: Int) throws -> Bool {
        if opset >= 14 { return try node.int("training_mode", default: 0) != 0 }
        return opset >= 9 && node.outputs.dropFirst().contains { !$0.isEmpty }
    }
}

extension Passes {
    /// Whether `graph` computes in training form — a BatchNormalization on batch statistics, a Dropout
    /// given a training_mode input, or drop-path's RandomUniformLike — so that running it as it is would
    /// give random, batch-dependent results (`inferenceForm` gives the graph to run instead).
    public static func isTrainingForm(_ graph: Graph, opset: Int) throws -> Bool {
        for n in graph.nodes where n.domain.isEmpty || n.domain == "ai.onnx" {
            switch n.opType {
            case OpType.batchNormalization where try BatchNormMode.isTraining(n, opset: opset): return true
            case OpType.dropout where n.inputs.count >= 3 && !n.inputs[2].isEmpty: return true
            case OpType.randomUniformLike: return true
            default: continue
            }
        }
        return false
    }

    /// The graph a training-mode export (or `segformer init`) computes in eval mode, as PyTorch's
    /// `model.eval()` does: BatchNormalization on its running statistics (training_mode removed, one
    /// output), Dropout gone, and drop-path — `x / keep · Floor(keep + RandomUniformLike(…))` — back
    /// to `x`. Eval-mode graphs come back unchanged. Throws when a running-statistics or mask output
    /// feeds another node (nothing could stand in for it).
    public static func inferenceForm(_ graph: Graph, opset: Int) throws -> Graph {
        var g = graph
        let producer = g.producers()
        var consumed = Set<String>()
        for n in g.nodes { consumed.formUnion(n.inputs) }
        consumed.formUnion(g.outputs.map(\.name))
        func node(_ value: String) -> Node? { producer[value].map { g.nodes[$0] } }
        func only(_ n: Node, keeping k: Int) throws {
            for (i, o) in n.outputs.enumerated() where i != k && !o.isEmpty && consumed.contains(o) {
                throw SegFormerError.unsupported("\(n.label): its output '\(o)' is used, so it has no inference form")
            }
        }
        for i in g.nodes.indices {
            var n = g.nodes[i]
            guard n.domain.isEmpty || n.domain == "ai.onnx" else { continue }
            let trainingBatchNorm = try n.opType == OpType.batchNormalization && BatchNormMode.isTraining(n, opset: opset)
            switch n.opType {
            case OpType.batchNormalization where trainingBatchNorm:
                try only(n, keeping: 0)
                n.attributes["training_mode"] = nil
                n.outputs = [n.outputs[0]]
            case OpType.dropout:
                try only(n, keeping: 0)
                n = Node(name: n.name, opType: OpType.identity, inputs: [n.inputs[0]], outputs: [n.outputs[0]])
            case OpType.mul where n.inputs.count == 2:
                // drop-path: Mul(Div(x, keep), Floor(Add(RandomUniformLike(…), keep))), either order
                for (scaled, mask) in [(0, 1), (1, 0)] {
                    guard let div = node(n.inputs[scaled]), div.opType == OpType.div, div.inputs.count == 2,
                          let floor = node(n.inputs[mask]), floor.opType == OpType.floor,
                          let add = node(floor.inputs[0]), add.opType == OpType.add,
                          add.inputs.contains(where: { node($0)?.opType == OpType.randomUniformLike }) else { continue }
                    n = Node(name: n.name, opType: OpType.identity, inputs: [div.inputs[0]], outputs: [n.outputs[0]])
                    break
                }
            default:
                continue
            }
            g.nodes[i] = n
        }
        return removeDeadNodes(removeIdentities(g))
    }
}
