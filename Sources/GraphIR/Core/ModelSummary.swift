import Foundation

/// A printable summary of a model: what `segformer inspect` shows.
public struct ModelSummary {
    public let model: Model
    public init(model: Model) { self.model = model }

    /// Op type → node count, most frequent first.
    public var opHistogram: [(op: String, count: Int)] { model.graph.opHistogram }

    public func text(listNodes: Bool = false) -> String {
        let g = model.graph
        var lines: [String] = []
        let opsets = model.opsetImports.sorted { $0.key < $1.key }
            .map { ($0.key.isEmpty ? "ai.onnx" : $0.key) + " \($0.value)" }.joined(separator: ", ")
        lines.append("model: \(g.name)  (ir_version \(model.irVersion), producer \(model.producerName) \(model.producerVersion))")
        lines.append("opset: \(opsets)")
        lines.append("inputs:")
        for i in g.runtimeInputs { lines.append("  \(i.name): \(i.type)") }
        lines.append("outputs:")
        for o in g.outputs { lines.append("  \(o.name): \(o.type)") }
        let params = g.parameterCount
        let floatInits = g.initializers.values.filter { $0.dataType.isFloatingPoint }.count
        lines.append("nodes: \(g.nodes.count)")
        lines.append("initializers: \(g.initializers.count) (\(floatInits) floating-point)")
        lines.append("parameters: \(params) (\(String(format: "%.2f", Double(params) / 1e6))M)")
        lines.append("op histogram:")
        for (op, count) in opHistogram { lines.append("  \(op.padding(toLength: max(op.count, 28), withPad: " ", startingAt: 0)) \(count)") }
        if listNodes {
            lines.append("nodes:")
            for n in g.nodes { lines.append("  \(n.label): \(n.inputs.joined(separator: ", ")) -> \(n.outputs.joined(separator: ", "))") }
        }
        return lines.joined(separator: "\n")
    }
}
