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
                throw ExitCode(3)
            }
        }
    }
}
