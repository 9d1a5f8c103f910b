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

    /// A fed weight (a training graph's parameter: a graph input, no initializer) is sliced by nodes
    /// that run with the graph: the rewritten graph computes what the original does with whatever W is fed.
    func testFedWeightIsSlicedWhenTheGraphRuns() throws {
        var original = graph(bias: true)
        original.removeInitializer("W")
        original.inputs.append(PassTest.input("W", [4, 5, 1, 1]))
        let (rewritten, report) = try PassTest.optimize(original, [.splitConvOverConcat])
        XCTAssertEqual(report.passes.map(\.description), ["split-conv-over-concat: -1 Concat, -1 Conv, +2 Add, +2 Conv, +2 Slice"])
        XCTAssertEqual(rewritten.nodes.filter { $0.opType == "Slice" && $0.inputs[0] == "W" }.count, 2)
        let fed = feeds.merging(["W": NNTest.tensor([4, 5, 1, 1], seed: 5)]) { $1 }
        XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: fed), 1e-6)
    }

    /// Left alone: a Concat read elsewhere, a weight of unknown shape, and an initializer a feed may
    /// replace (the planner folds what reads it with its default).
    func testSharedConcatWeightOfUnknownShapeOrOverridableWeightIsLeftAlone() throws {
        var unknownShape = graph(bias: false)
        unknownShape.removeInitializer("W")
        unknownShape.inputs.append(PassTest.input("W", [.known(4), .symbol("channels"), .known(1), .known(1)]))
        for original in [graph(bias: true, concatAlsoOutput: true), unknownShape, graph(bias: true, weightIsInput: true)] {
            let (_, report) = try PassTest.optimize(original, [.splitConvOverConcat])
            XCTAssertFalse(report.passes[0].changedGraph, "\(report)")
        }
    }
}
