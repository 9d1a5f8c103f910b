import ArgumentParser
import Foundation
import GraphIR
import Runtime

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarise an ONNX model: opset, inputs/outputs, op histogram, parameters, unsupported ops.")

    @Argument(help: "The .onnx model file.") var model: String
    @Flag(help: "List every node.") var nodes = false
    @Flag(help: "Infer and list the type of every node output (symbolic shapes).") var shapes = false

    func run() throws {
        try reportingErrors {
            let m = try ONNXImporter.load(contentsOf: model)
            print(ModelSummary(model: m).text(listNodes: nodes))
            let inferred = try TypeInference.infer(m.graph, opset: m.opset)
            print("inferred outputs:")
            for o in m.graph.outputs { print("  \(o.name): \(inferred.types[o.name].map { "\($0)" } ?? "unknown")") }
            if shapes {
                print("inferred value types:")
                for n in try Passes.topologicalOrder(m.graph) {
                    for o in n.outputs where !o.isEmpty {
                        print("  \(o): \(inferred.types[o].map { "\($0)" } ?? "unknown")  (\(n.label))")
                    }
                }
                for (node, reason) in inferred.unknown { print("  no type for \(node): \(reason)") }
            }
            let problems = InferenceSession.unsupportedNodes(m.graph, opset: m.opset)
            if !problems.isEmpty {
                print("unsupported nodes (\(problems.count)):")
                for p in problems.prefix(50) { print("  \(p)") }
                let ops = Set(m.graph.nodes.filter { n in problems.contains { $0.contains(n.label) } }.map(\.opType))
                throw SegFormerError.unsupported("\(problems.count) nodes use ops this runtime lacks: \(ops.sorted().joined(separator: ", "))")
            }
        }
    }
}
