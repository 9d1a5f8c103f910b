import XCTest
import GraphIR
@testable import Runtime

final class FoldConvIntoMatMulTests: XCTestCase {
    /// x [B,6,3] → MatMul P [3,4] (+ c [4]) → Transpose(0,2,1) → Reshape [B,4,2,3] (computed from
    /// Shape(x)) → Conv1x1 W [5,4,1,1] (+ b [5]) → y; the image's shape is a second output.
    private func graph(offset: Bool, bias: Bool) -> Graph {
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [.symbol("batch"), .known(6), .known(3)])]))
        var tokens = b.add1("MatMul", ["x", b.constant(NNTest.tensor([3, 4], seed: 8), name: "P")])
        if offset { tokens = b.add1("Add", [b.constant(NNTest.tensor([4], seed: 9), name: "c"), tokens]) }
        let channelsFirst = b.add1("Transpose", [tokens], attributes: ["perm": .ints([0, 2, 1])])
        let batch = b.add1("Slice", [b.add1("Shape", ["x"]), b.int64s([0]), b.int64s([1]), b.int64s([0])])
        let target = b.add1("Concat", [batch, b.int64s([-1, 2, 3])], attributes: ["axis": .int(0)])
        let image = b.add1("Reshape", [channelsFirst, target])
        var g = b.graph
        g.setInitializer("W", NNTest.tensor([5, 4, 1, 1], seed: 10))
        if bias { g.setInitializer("B", NNTest.tensor([5], seed: 11)) }
        g.nodes.append(Node(name: "mix", opType: "Conv", inputs: [image, "W"] + (bias ? ["B"] : []), outputs: ["y"]))
        g.nodes.append(Node(name: "shapeOfImage", opType: "Shape", inputs: [image], outputs: ["imageShape"]))
        g.outputs = [PassTest.output("y"), ValueInfo(name: "imageShape", type: TensorType(.int64, nil))]
        return g
    }

    func testConvFoldsIntoTheMatMulWithAndWithoutOffsetAndBias() throws {
        let feeds = ["x": NNTest.tensor([2, 6, 3], seed: 12)]
        for offset in [false, true] {
            for bias in [false, true] {
                let original = graph(offset: offset, bias: bias)
                let (rewritten, report) = try PassTest.optimize(original, [.foldConvIntoMatMul])
                XCTAssertNil(rewritten.opCounts["Conv"], "offset \(offset) bias \(bias): \(report)")
                XCTAssertEqual(rewritten.opCounts["MatMul"], 1)
                XCTAssertEqual(rewritten.opCounts["Add"], offset || bias ? 1 : nil)
                XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds), 1e-6)
            }
        }
    }

    /// A fed weight (a training graph's parameter: a graph input, no initializer): the merged weight and
    /// bias are nodes that run with the graph, so whatever W is fed, the rewritten graph computes what
    /// the original does.
    func testFedWeightIsMergedWhenTheGraphRuns() throws {
        var original = graph(offset: true, bias: false)
        original.removeInitializer("W")
        original.inputs.append(PassTest.input("W", [5, 4, 1, 1]))
        let (rewritten, report) = try PassTest.optimize(original, [.foldConvIntoMatMul])
        XCTAssertNil(rewritten.opCounts["Conv"], "\(report)")
        XCTAssertEqual(rewritten.opCounts["MatMul"], 3, "x·(P·W2ᵀ) and c·W2ᵀ, computed per run")
        let feeds = ["x": NNTest.tensor([2, 6, 3], seed: 12), "W": NNTest.tensor([5, 4, 1, 1], seed: 13)]
        XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds), 1e-6)
    }

    /// Left alone: a weight of unknown shape, and an initializer a feed may replace (the planner folds
    /// what reads it with its default).
    func testWeightOfUnknownShapeOrOverridableWeightIsLeftAlone() throws {
        var unknownShape = graph(offset: true, bias: false)
        unknownShape.removeInitializer("W")
        unknownShape.inputs.append(PassTest.input("W", [.symbol("m"), .known(4), .known(1), .known(1)]))
        var overridable = graph(offset: true, bias: false)
        overridable.inputs.append(PassTest.input("W", [5, 4, 1, 1]))
        for original in [unknownShape, overridable] {
            let (_, report) = try PassTest.optimize(original, [.foldConvIntoMatMul])
            XCTAssertFalse(report.passes[0].changedGraph, "\(report)")
        }
    }
}
