import XCTest
import GraphIR
@testable import Runtime

final class ConvBeforeResizeTests: XCTestCase {
    /// x [1,3,4,5] → Resize (mode, to 8×10 by sizes computed from Shape(x), or by scales) → Conv1x1 W [2,3,1,1] → y.
    private func graph(mode: String = "linear", byScales: Bool = false, bias: Bool = false) -> Graph {
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [.symbol("batch"), .known(3), .known(4), .known(5)])]))
        let resized: String
        if byScales {
            resized = b.add1("Resize", ["x", "", b.constant(Tensor([Float(1), 1, 2, 2], shape: [4]))], attributes: ["mode": .string(mode)])
        } else {
            let nc = b.add1("Slice", [b.add1("Shape", ["x"]), b.int64s([0]), b.int64s([2]), b.int64s([0])])
            let sizes = b.add1("Concat", [nc, b.int64s([8, 10])], attributes: ["axis": .int(0)])
            resized = b.add1("Resize", ["x", "", "", sizes], attributes: ["mode": .string(mode)])
        }
        var g = b.graph
        g.setInitializer("W", NNTest.tensor([2, 3, 1, 1], seed: 5))
        if bias { g.setInitializer("B", NNTest.tensor([2], seed: 6)) }
        g.nodes.append(Node(name: "mix", opType: "Conv", inputs: [resized, "W"] + (bias ? ["B"] : []), outputs: ["y"]))
        g.outputs = [PassTest.output("y")]
        return g
    }

    private let feeds = ["x": NNTest.tensor([2, 3, 4, 5], seed: 7)]

    func testChannelMapMovesBeforeLinearAndNearestResize() throws {
        for (mode, byScales) in [("linear", false), ("nearest", false), ("linear", true)] {
            let original = graph(mode: mode, byScales: byScales)
            let (rewritten, report) = try PassTest.optimize(original, [.convBeforeResize])
            XCTAssertTrue(report.passes[0].changedGraph, "\(mode)")
            let order = rewritten.nodes.map(\.opType).filter { $0 == "Conv" || $0 == "Resize" }
            XCTAssertEqual(order, ["Conv", "Resize"], "\(mode)")
            XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds), 1e-6, "\(mode)")
        }
    }

    func testBiasOrCubicModeIsLeftAlone() throws {
        for original in [graph(bias: true), graph(mode: "cubic")] {
            let (_, report) = try PassTest.optimize(original, [.convBeforeResize])
            XCTAssertFalse(report.passes[0].changedGraph, "\(report)")
        }
    }
}
