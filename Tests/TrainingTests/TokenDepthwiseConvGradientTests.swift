import Foundation
import XCTest
import GraphIR
@testable import Runtime
@testable import Training

/// TokenDepthwiseConv's gradient rule (dX as the conv with the kernel rotated by 180°, dW and dB from
/// TokenDepthwiseConvGrad, through the fused GELU by recomputing the conv's output): finite
/// differences, and the same gradients as autodiff through the Transpose → Conv → Transpose → Gelu
/// graph the pass replaces.
final class TokenDepthwiseConvGradientTests: XCTestCase {
    /// Seeded values in [-scale, scale] (the coverage table's).
    private func values(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
        GradientCoverageTests.values(shape, -scale, scale, seed: seed)
    }

    func testFiniteDifferences() throws {
        // Tokens of 3 × 4 images, 5 channels, a 3×3 and a 3×5 kernel (pads 1 and 1, 2).
        for (kh, kw) in [(3, 3), (3, 5)] {
            let inputs: [Tensor?] = [values([2, 12, 5], seed: 1, scale: 2), values([5, 1, kh, kw], seed: 2),
                                     Tensor([2, 5, 3, 4].map { Int64($0) }, shape: [4]), values([5], seed: 3)]
            for activation in [nil, OpType.gelu] {
                let attributes: [String: Attribute] = activation.map { ["activation": .string($0)] } ?? [:]
                try GradientCheck.check(OpType.tokenDepthwiseConv, domain: fusedDomain, inputs: inputs, attributes: attributes,
                                        differentiable: [0, 1, 3])
                try GradientCheck.checkRule(OpType.tokenDepthwiseConv, domain: fusedDomain, inputs: inputs, attributes: attributes,
                                            differentiable: [0, 1, 3])
            }
        }
    }

    /// x [2, H·W, C] → Transpose → Reshape [2, C, H, W] → depthwise Conv (w, b) → Reshape → Transpose →
    /// Gelu; loss Σ y·m. Differentiated before and after fuse-token-depthwise-conv (x, w, b fed as
    /// parameters); dx has the same bits, and the fused gradients are the same bits at 1 and 2 threads.
    func testSameGradientsAsTheUnfusedGraph() throws {
        let (h, w, c) = (9, 7, 70)
        let b = GraphBuilder(graph: Graph(inputs: [
            ValueInfo(name: "x", type: TensorType(.float, known: [2, h * w, c])),
            ValueInfo(name: "w", type: TensorType(.float, known: [c, 1, 3, 3])),
            ValueInfo(name: "b", type: TensorType(.float, known: [c])),
        ]))
        let planes = b.add1(OpType.reshape, [b.add1(OpType.transpose, ["x"], attributes: ["perm": .ints([0, 2, 1])]),
                                             b.int64s([2, c, h, w])])
        let conv = b.add1(OpType.conv, [planes, "w", "b"], attributes: ["group": .int(c), "kernel_shape": .ints([3, 3]),
                                                                       "pads": .ints([1, 1, 1, 1])])
        let tokens = b.add1(OpType.transpose, [b.add1(OpType.reshape, [conv, b.int64s([0, c, -1])])], attributes: ["perm": .ints([0, 2, 1])])
        let y = b.add1(OpType.gelu, domain: fusedDomain, [tokens])
        let loss = b.add1(OpType.reduceSum, [b.add1(OpType.mul, [y, b.constant(values([2, h * w, c], seed: 4))])],
                          attributes: ["keepdims": .int(0)])
        var forward = b.graph
        forward.outputs = [ValueInfo(name: loss, type: TensorType(.float, known: []))]
        let fused = try OptimizingPipeline.run(try Passes.sorted(forward), opset: 17, passes: [.fuseTokenDepthwiseConv]).graph
        XCTAssertEqual(fused.opCounts[fusedDomain + "." + OpType.tokenDepthwiseConv], 1, "\(fused.opCounts)")
        XCTAssertNil(fused.opCounts[OpType.transpose], "\(fused.opCounts)")

        let feeds = ["x": values([2, h * w, c], seed: 5, scale: 3), "w": values([c, 1, 3, 3], seed: 6), "b": values([c], seed: 7)]
        func gradients(_ g: Graph, threads: Int) throws -> [[Float]] {
            let gg = try Autodiff.differentiate(g, opset: 17, loss: loss, parameters: ["x", "w", "b"])
            let out = try Session(model: Model(graph: gg.graph, opsetImports: ["": 17]),
                                  options: SessionOptions(threads: threads, optimizingPasses: false)).run(feeds)
            return try gg.gradients.map { try out[$0.gradient]!.doubles().map { Float($0) } }
        }
        let expected = try gradients(forward, threads: 2), actual = try gradients(fused, threads: 2)
        for (name, (e, a)) in zip(["x", "w", "b"], zip(expected, actual)) {
            XCTAssertEqual(e.count, a.count, name)
            let scale = Double(e.map(abs).max()!)
            let worst = Double(zip(e, a).map { abs($0 - $1) }.max()!)
            XCTAssertLessThanOrEqual(worst, 1e-5 * max(1, scale), "d\(name): worst difference \(worst), largest \(scale)")
        }
        // dX is the adjoint conv, summed in ConvGradInput's order: the same bits.
        XCTAssertEqual(expected[0].map(\.bitPattern), actual[0].map(\.bitPattern), "dx of the fused and unfused graphs")
        let oneThread = try gradients(fused, threads: 1)
        for (name, (a, o)) in zip(["x", "w", "b"], zip(actual, oneThread)) {
            XCTAssertEqual(a.map(\.bitPattern), o.map(\.bitPattern), "d\(name) at 1 and 2 threads")
        }
    }
}
