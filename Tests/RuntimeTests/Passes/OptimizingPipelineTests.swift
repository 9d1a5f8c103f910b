import XCTest
import GraphIR
@testable import Runtime

/// The decode-head algebra end to end on a head shaped like SegFormer's (two stages instead of four).
final class OptimizingPipelineTests: XCTestCase {
    /// Per stage i: tokens x_i [B, h_i·w_i, C_i] → MatMul P_i + c_i → Transpose → Reshape [B, K, h_i, w_i]
    /// → Resize (linear, half_pixel) to 8×8; then Concat → Conv1x1 (2K → M, bias) → Relu → y.
    private func head() -> Graph {
        let stages = [(c: 3, h: 8, w: 8, resize: false), (c: 5, h: 4, w: 4, resize: true)]
        let k = 4, m = 3
        let b = GraphBuilder(graph: Graph(inputs: stages.indices.map {
            PassTest.input("x\($0)", [.symbol("batch"), .known(stages[$0].h * stages[$0].w), .known(stages[$0].c)])
        }))
        var parts: [String] = []
        for (i, s) in stages.enumerated() {
            let y = b.add1("Add", [b.add1("MatMul", ["x\(i)", b.constant(NNTest.tensor([s.c, k], seed: UInt64(20 + i)))]),
                                   b.constant(NNTest.tensor([k], seed: UInt64(30 + i)))])
            let t = b.add1("Transpose", [y], attributes: ["perm": .ints([0, 2, 1])])
            let batch = b.add1("Slice", [b.add1("Shape", ["x\(i)"]), b.int64s([0]), b.int64s([1]), b.int64s([0])])
            var image = b.add1("Reshape", [t, b.add1("Concat", [batch, b.int64s([-1, s.h, s.w])], attributes: ["axis": .int(0)])])
            if s.resize {
                let nc = b.add1("Slice", [b.add1("Shape", [image]), b.int64s([0]), b.int64s([2]), b.int64s([0])])
                let sizes = b.add1("Concat", [nc, b.int64s([8, 8])], attributes: ["axis": .int(0)])
                image = b.add1("Resize", [image, "", "", sizes], attributes: [
                    "mode": .string("linear"), "coordinate_transformation_mode": .string("half_pixel")])
            }
            parts.append(image)
        }
        let fused = b.add1("Conv", [b.add1("Concat", parts, attributes: ["axis": .int(1)]),
                                    b.constant(NNTest.tensor([m, 2 * k, 1, 1], seed: 40)), b.constant(NNTest.tensor([m], seed: 41))])
        b.add("Relu", [fused], writing: "y")
        var g = b.graph
        g.outputs = [PassTest.output("y")]
        return g
    }

    func testTheFuseConvDisappearsIntoTheStageMatMuls() throws {
        let original = head()
        let (optimized, report) = try PassTest.optimize(original, OptimizingPipeline.passes)
        XCTAssertNil(optimized.opCounts["Conv"], "\(report)")
        XCTAssertTrue(optimized.nodes.allSatisfy { $0.opType != "Concat" || (try? $0.int("axis")) == 0 }, "only shape arithmetic concatenates")
        XCTAssertNil(optimized.opCounts["MatMul"], "\(report)")
        XCTAssertEqual(optimized.opCounts[fusedDomain + "." + OpType.fusedMatMul], 2, "each stage's product with its bias")
        XCTAssertEqual(report.passes.map(\.pass), ["fuse-layer-normalization", "fuse-gelu", "fuse-attention",
                                                   "fuse-token-depthwise-conv", "fuse-conv-to-tokens", "split-conv-over-concat", "conv-before-resize",
                                                   "fold-conv-into-matmul", "fuse-resize-sum", "pointwise-conv-over-channels-last",
                                                   "fuse-matmul-epilogue", "fuse-token-depthwise-projection",
                                                   "fuse-layer-norm-into-producer", "fuse-resize-add"])
        XCTAssertEqual(report.passes.map(\.changedGraph), [false, false, false, false, false, true, true, true, true, false, true, false, false, false],
                       "\(report)")
        XCTAssertNil(optimized.opCounts["Add"], "the resized parts summed by ResizeSum: \(report)")
        XCTAssertEqual(optimized.opCounts[fusedDomain + "." + OpType.resizeSum], 1, "\(report)")
        let feeds = ["x0": NNTest.tensor([2, 64, 3], seed: 50), "x1": NNTest.tensor([2, 16, 5], seed: 51)]
        XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, optimized, feeds: feeds), 1e-5)
    }

    func testSessionOptionsTurnThePassesOff() throws {
        let model = Model(graph: head(), opsetImports: ["": 17])
        XCTAssertNotNil(try Session(model: model).compiled.optimization)
        let off = try Session(model: model, options: SessionOptions(optimizingPasses: false)).compiled
        XCTAssertNil(off.optimization)
        XCTAssertEqual(off.graph.opCounts["Conv"], 1)
    }
}
