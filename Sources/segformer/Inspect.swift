import ArgumentParser
import Foundation
import GraphIR
import Runtime
import SegformerModels

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarise an ONNX model: opset, inputs/outputs, op histogram, parameters, unsupported ops.")

    @Argument(help: "The .onnx model file, or a HuggingFace checkpoint folder.") var model: String
    @Flag(help: "List every node.") var nodes = false
    @Flag(help: "Infer and list the type of every node output (symbolic shapes).") var shapes = false
    @Flag(help: "Plan a run without running it: the nodes left after folding, each value's type and size, the activation peak.")
    var plan = false
    @Flag(help: "Compile the model and print the op histogram before and after the optimizing passes, and what each pass changed.")
    var optimized = false
    @Option(name: .customLong("input-shape"), help: "NAME=1x3x512x512: an input shape to plan for (repeatable; needed for symbolic dimensions).")
    var inputShapes: [String] = []

    func run() throws {
        try reportingErrors {
            let m = try ModelFile.load(model)
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
            let compiled = plan || optimized ? try CompiledModel(model: m) : nil
            if optimized, let compiled {
                print(compiled.optimization.map { "\($0)" } ?? "optimizing passes: off")
            }
            if plan, let compiled {
                let shapes = try compiled.inputShapes(try parseInputShapes(inputShapes))
                print("plan for " + shapes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.map(String.init).joined(separator: "x"))" }.joined(separator: ", ") + ":")
                print(try Planner.plan(compiled, shapes: shapes).report())
            }
            let problems = OpRegistry.unsupportedNodes(m.graph, opset: m.opset)
            if !problems.isEmpty {
                print("unsupported nodes (\(problems.count)):")
                for p in problems.prefix(50) { print("  \(p.error)") }
                let ops = Set(problems.map(\.node.opType))
                throw SegFormerError.unsupported("\(problems.count) nodes use ops this runtime lacks: \(ops.sorted().joined(separator: ", "))")
            }
        }
    }
}

/// `NAME=1x3x512x512` options as a name → shape table; a repeated name is an error.
func parseInputShapes(_ options: [String]) throws -> [String: [Int]] {
    var shapes: [String: [Int]] = [:]
    for option in options {
        let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
        let dims = parts.count == 2 ? parts[1].split(separator: "x").map { Int($0) } : []
        guard parts.count == 2, !parts[0].isEmpty, !dims.isEmpty, dims.allSatisfy({ ($0 ?? -1) >= 0 }) else {
            throw SegFormerError.invalid("--input-shape '\(option)': expected NAME=1x3x512x512")
        }
        guard shapes[parts[0]] == nil else { throw SegFormerError.invalid("--input-shape: '\(parts[0])' is given twice") }
        shapes[parts[0]] = dims.map { $0! }
    }
    return shapes
}
