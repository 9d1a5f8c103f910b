import XCTest
import GraphIR
@testable import Runtime

/// Runs a pass (through the pipeline: types, the pass, folding) on a small graph and checks that the
/// rewritten graph computes what the original does.
enum PassTest {
    /// The graph after `passes`, with the pipeline's report.
    static func optimize(_ graph: Graph, _ passes: [GraphPass], opset: Int = 17) throws -> (Graph, OptimizingPipeline.Report) {
        let cleaned = try CompiledModel(model: Model(graph: graph, opsetImports: ["": opset]), optimizingPasses: false).graph
        return try OptimizingPipeline.run(cleaned, opset: opset, passes: passes)
    }

    /// Runs both graphs on `feeds` and returns the largest absolute difference over all outputs.
    static func maxDifference(_ original: Graph, _ rewritten: Graph, feeds: [String: Tensor], opset: Int = 17) throws -> Double {
        func run(_ g: Graph) throws -> [String: Tensor] {
            try Session(model: Model(graph: g, opsetImports: ["": opset]),
                        options: SessionOptions(threads: 1, optimizingPasses: false)).run(feeds)
        }
        let (a, b) = (try run(original), try run(rewritten))
        var worst: Double = 0
        for o in original.outputs {
            let x = try a[o.name]!.doubles(), y = try b[o.name]!.doubles()
            XCTAssertEqual(a[o.name]!.shape, b[o.name]!.shape, o.name)
            for (u, v) in zip(x, y) { worst = max(worst, abs(u - v)) }
        }
        return worst
    }

    static func input(_ name: String, _ shape: [Dim]) -> ValueInfo { ValueInfo(name: name, type: TensorType(.float, shape)) }
    static func input(_ name: String, _ shape: [Int]) -> ValueInfo { ValueInfo(name: name, type: TensorType(.float, known: shape)) }
    static func output(_ name: String) -> ValueInfo { ValueInfo(name: name, type: TensorType(.float, nil)) }
}
