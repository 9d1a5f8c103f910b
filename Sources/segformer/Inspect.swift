import ArgumentParser
import Foundation
import GraphIR
import Runtime

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarise an ONNX model: opset, inputs/outputs, op histogram, parameters, unsupported ops.")

    @Argument(help: "The .onnx model file.") var model: String
    @Flag(help: "List every node.") var nodes = false

    func run() throws {
        try reportingErrors {
            let m = try ONNXImporter.load(contentsOf: model)
            print(ModelSummary(model: m).text(listNodes: nodes))
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
