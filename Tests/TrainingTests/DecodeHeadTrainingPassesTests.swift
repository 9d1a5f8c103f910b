import XCTest
import GraphIR
@testable import Runtime
@testable import Training

/// The decode-head algebra (split the fuse conv over its Concat, move each part before its Resize,
/// fold it into the stage's MatMul) on a training graph, whose parameters are graph inputs: the merged
/// weights become nodes computed each run, and the loss and the gradient of every parameter are those
/// of the graph as written, up to float rounding.
final class DecodeHeadTrainingPassesTests: XCTestCase {
    private static let stages = [(c: 3, h: 8, w: 8), (c: 5, h: 4, w: 4), (c: 6, h: 2, w: 2)]
    private static let (k, m) = (4, 3)

    /// How the head under test differs from SegFormer's (a near miss is one the passes must leave, in part).
    private struct Head {
        /// HF's train mode: fuse conv without bias → BatchNormalization on batch statistics; else a
        /// biased fuse conv (the eval-mode export's, BatchNorm folded in).
        var batchNorm = true
        var resizeMode = "linear"
        /// The Concat is also a graph output (read twice: it must stay).
        var concatIsOutput = false
        /// The fuse weight's input channels are symbolic (its shape is not known).
        var weightShapeUnknown = false
    }

    /// Per stage i: tokens x_i [B, h_i·w_i, C_i] → MatMul P_i + c_i → Transpose → Reshape [B, K, h_i, w_i]
    /// → (stages after the first) Resize to 8×8 with sizes from the image's shape; Concat, last stage first →
    /// Conv1x1 W (3K → M) → BatchNorm (training) or + bias → Relu → loss Σ y·R for a fixed R. Every
    /// parameter is a graph input.
    private func graph(_ head: Head = Head()) -> (graph: Graph, parameters: [String]) {
        let (k, m) = (Self.k, Self.m)
        var inputs: [ValueInfo] = [], parameters: [String] = []
        func parameter(_ name: String, _ shape: [Dim]) {
            inputs.append(ValueInfo(name: name, type: TensorType(.float, shape)))
            parameters.append(name)
        }
        for (i, s) in Self.stages.enumerated() {
            parameter("x\(i)", [.symbol("batch"), .known(s.h * s.w), .known(s.c)])
            parameter("P\(i)", [.known(s.c), .known(k)])
            parameter("c\(i)", [.known(k)])
        }
        parameter("W", [.known(m), head.weightShapeUnknown ? .symbol("fused_channels") : .known(3 * k), .known(1), .known(1)])
        if head.batchNorm {
            parameter("gamma", [.known(m)])
            parameter("beta", [.known(m)])
        } else {
            parameter("b", [.known(m)])
        }
        let b = GraphBuilder(graph: Graph(inputs: inputs))
        var parts: [String] = []
        for (i, s) in Self.stages.enumerated() {
            let y = b.add1(OpType.add, [b.add1(OpType.matMul, ["x\(i)", "P\(i)"]), "c\(i)"])
            let t = b.add1(OpType.transpose, [y], attributes: ["perm": .ints([0, 2, 1])])
            let batch = b.add1(OpType.slice, [b.add1(OpType.shape, ["x\(i)"]), b.int64s([0]), b.int64s([1]), b.int64s([0])])
            var image = b.add1(OpType.reshape, [t, b.add1(OpType.concat, [batch, b.int64s([-1, s.h, s.w])], attributes: ["axis": .int(0)])])
            if i > 0 {
                let nc = b.add1(OpType.slice, [b.add1(OpType.shape, [image]), b.int64s([0]), b.int64s([2]), b.int64s([0])])
                let sizes = b.add1(OpType.concat, [nc, b.int64s([8, 8])], attributes: ["axis": .int(0)])
                image = b.add1(OpType.resize, [image, "", "", sizes], attributes: [
                    "mode": .string(head.resizeMode), "coordinate_transformation_mode": .string("half_pixel")])
            }
            parts.append(image)
        }
        let concat = b.add1(OpType.concat, parts.reversed(), attributes: ["axis": .int(1)])
        var fused: String
        if head.batchNorm {
            fused = b.add1(OpType.conv, [concat, "W"])
            fused = b.add1(OpType.batchNormalization, [fused, "gamma", "beta", b.constant(Tensor(zeros: .float, shape: [m])),
                                                       b.constant(Tensor([Float](repeating: 1, count: m), shape: [m]))],
                           attributes: ["training_mode": .int(1), "momentum": .float(0.9)])
        } else {
            fused = b.add1(OpType.conv, [concat, "W", "b"])
        }
        let r = b.constant(Tensor(GradientCheck.uniformValues(count: 2 * m * 64, seed: 9).map { Float($0) }, shape: [2, m, 8, 8]))
        b.add(OpType.reduceSum, [b.add1(OpType.mul, [b.add1(OpType.relu, [fused]), r])], attributes: ["keepdims": .int(0)],
              writing: "loss")
        var g = b.graph
        g.outputs = [ValueInfo(name: "loss", type: TensorType(.float, known: []))]
            + (head.concatIsOutput ? [ValueInfo(name: concat, type: TensorType(.float, nil))] : [])
        return (g, parameters)
    }

    private func feeds() -> [String: Tensor] {
        var feeds: [String: Tensor] = [:]
        func random(_ name: String, _ shape: [Int], seed: UInt64) {
            feeds[name] = Tensor(GradientCheck.uniformValues(count: shape.reduce(1, *), seed: seed).map { Float($0) }, shape: shape)
        }
        for (i, s) in Self.stages.enumerated() {
            random("x\(i)", [2, s.h * s.w, s.c], seed: UInt64(10 + i))
            random("P\(i)", [s.c, Self.k], seed: UInt64(20 + i))
            random("c\(i)", [Self.k], seed: UInt64(30 + i))
        }
        random("W", [Self.m, 3 * Self.k, 1, 1], seed: 40)
        random("b", [Self.m], seed: 41)
        random("gamma", [Self.m], seed: 42)
        random("beta", [Self.m], seed: 43)
        return feeds
    }

    /// Loss and the gradient of every parameter, by autodiff over `graph`.
    private func lossAndGradients(_ graph: Graph, parameters: [String]) throws -> [String: [Double]] {
        let gg = try Autodiff.differentiate(graph, opset: 17, loss: "loss", parameters: parameters)
        var feeds = feeds()
        for name in feeds.keys where !graph.inputs.contains(where: { $0.name == name }) { feeds[name] = nil }
        let out = try Session(model: Model(graph: gg.graph, opsetImports: ["": 17]),
                              options: SessionOptions(threads: 2, optimizingPasses: false)).run(feeds)
        var result = ["loss": try out["loss"]!.doubles()]
        for (p, g) in gg.gradients { result[p] = try out[g]!.doubles() }
        return result
    }

    /// The graph after the training passes, checked to compute the same loss and gradients as before.
    private func checkSameLossAndGradients(_ head: Head, file: StaticString = #filePath, line: UInt = #line) throws -> Graph {
        let (original, parameters) = graph(head)
        let (rewritten, report) = try OptimizingPipeline.runOnTrainingGraph(original, opset: 17)
        let (expected, actual) = (try lossAndGradients(original, parameters: parameters),
                                  try lossAndGradients(rewritten, parameters: parameters))
        XCTAssertEqual(Set(expected.keys), Set(parameters + ["loss"]), file: file, line: line)
        for (name, e) in expected {
            let a = try XCTUnwrap(actual[name], name, file: file, line: line)
            XCTAssertEqual(e.count, a.count, name, file: file, line: line)
            let scale = e.map(abs).max()!
            let worst = zip(e, a).map { abs($0 - $1) }.max()!
            XCTAssertGreaterThan(scale, 0, "\(name) is all zero: the comparison would prove nothing", file: file, line: line)
            XCTAssertLessThanOrEqual(worst, 1e-5 * max(1, scale), "\(name): worst difference \(worst), largest \(scale)\n\(report)",
                                     file: file, line: line)
        }
        return rewritten
    }

    func testTrainModeHeadFoldsIntoTheStageMatMulsWithTheSameGradients() throws {
        let rewritten = try checkSameLossAndGradients(Head())
        XCTAssertNil(rewritten.opCounts[OpType.conv], "\(rewritten.opCounts)")
        XCTAssertTrue(rewritten.nodes.allSatisfy { $0.opType != OpType.concat || (try? $0.int("axis")) == 0 },
                      "only shape arithmetic concatenates")
        // Per stage: the product with its merged weight, P_i·W_iᵀ and c_i·W_iᵀ.
        XCTAssertEqual(rewritten.opCounts[OpType.matMul], 3 * Self.stages.count)
        XCTAssertEqual(rewritten.nodes.filter { $0.opType == OpType.slice && $0.inputs[0] == "W" }.count, Self.stages.count,
                       "one slice of W per stage")
        XCTAssertEqual(rewritten.opCounts[OpType.batchNormalization], 1, "the BatchNorm reads the summed map")
        XCTAssertEqual(Set(rewritten.inputs.map(\.name)), Set(graph().graph.inputs.map(\.name)), "every parameter stays an input")
    }

    func testEvalModeHeadWithBias() throws {
        let rewritten = try checkSameLossAndGradients(Head(batchNorm: false))
        XCTAssertNil(rewritten.opCounts[OpType.conv], "\(rewritten.opCounts)")
    }

    /// Near misses: a cubic Resize is not a channel map's partner (the part stays after it, the others
    /// still fold); a Concat read elsewhere and a weight of unknown shape leave the conv whole.
    func testNearMissesAreLeftAloneAndKeepTheirGradients() throws {
        let cubic = try checkSameLossAndGradients(Head(resizeMode: "cubic"))
        XCTAssertEqual(cubic.opCounts[OpType.conv], 2, "the two stages behind cubic Resizes keep their convolutions")
        XCTAssertEqual(cubic.opCounts[OpType.resize], 2)
        XCTAssertEqual(cubic.nodes.filter { $0.opType == OpType.concat && (try? $0.int("axis")) == 1 }.count, 0)

        for head in [Head(concatIsOutput: true), Head(weightShapeUnknown: true)] {
            let (original, _) = graph(head)
            let (rewritten, report) = try OptimizingPipeline.runOnTrainingGraph(original, opset: 17)
            XCTAssertEqual(rewritten.opCounts[OpType.conv], 1, "\(head): \(report)")
            XCTAssertEqual(rewritten.opCounts[OpType.matMul], Self.stages.count, "\(head)")
            XCTAssertFalse(report.passes.contains(where: \.changedGraph), "\(head): \(report)")
        }
        _ = try checkSameLossAndGradients(Head(concatIsOutput: true))
    }
}
