import XCTest
import GraphIR
@testable import Runtime

final class SplitConvOverConcatTests: XCTestCase {
    /// Concat(a [1,3,4,5], b [1,2,4,5]) → Conv1x1 W [4,5,1,1] (+ bias) → y.
    private func graph(bias: Bool, weightIsInput: Bool = false, concatAlsoOutput: Bool = false) -> Graph {
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("a", [1, 3, 4, 5]), PassTest.input("b", [1, 2, 4, 5])]))
        let cat = b.add1("Concat", ["a", "b"], attributes: ["axis": .int(1)])
        var g = b.graph
        g.setInitializer("W", NNTest.tensor([4, 5, 1, 1], seed: 1))
        if bias { g.setInitializer("B", NNTest.tensor([4], seed: 2)) }
        if weightIsInput { g.inputs.append(PassTest.input("W", [4, 5, 1, 1])) }
        g.nodes.append(Node(name: "fuse", opType: "Conv", inputs: bias ? [cat, "W", "B"] : [cat, "W"], outputs: ["y"],
                            attributes: ["kernel_shape": .ints([1, 1])]))
        g.outputs = [PassTest.output("y")] + (concatAlsoOutput ? [PassTest.output(cat)] : [])
        return g
    }

    private let feeds = ["a": NNTest.tensor([1, 3, 4, 5], seed: 3), "b": NNTest.tensor([1, 2, 4, 5], seed: 4)]

    func testConvOfConcatBecomesSumOfConvs() throws {
        for bias in [false, true] {
            let original = graph(bias: bias)
            let (rewritten, report) = try PassTest.optimize(original, [.splitConvOverConcat])
            XCTAssertEqual(rewritten.opCounts["Concat"], nil)
            XCTAssertEqual(rewritten.opCounts["Conv"], 2)
            XCTAssertEqual(rewritten.opCounts["Add"], bias ? 2 : 1)
            XCTAssertEqual(report.passes.map(\.description),
                           ["split-conv-over-concat: -1 Concat, -1 Conv, +\(bias ? 2 : 1) Add, +2 Conv"])
            XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds), 1e-6)
        }
    }

    func testFedWeightOrSharedConcatIsLeftAlone() throws {
        for original in [graph(bias: true, weightIsInput: true), graph(bias: true, concatAlsoOutput: true)] {
            let (_, report) = try PassTest.optimize(original, [.splitConvOverConcat])
            XCTAssertFalse(report.passes[0].changedGraph, "\(report)")
        }
    }
}
