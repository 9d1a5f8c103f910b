import Foundation
import XCTest
import GraphIR
@testable import Runtime
@testable import Training

/// The fused Attention's gradient rule (AttentionGrad, which recomputes the probabilities per tile):
/// finite differences, and the same gradients as autodiff through the unfused MatMul → Softmax →
/// MatMul graph it replaces.
final class AttentionGradientTests: XCTestCase {
    private func values(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return Tensor((0..<shape.reduce(1, *)).map { _ -> Float in
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            return (Float(s % 20001) / 10000 - 1) * scale
        }, shape: shape)
    }

    func testFiniteDifferences() throws {
        let inputs = [values([2, 5, 3], seed: 1, scale: 2), values([2, 4, 3], seed: 2, scale: 2), values([2, 4, 2], seed: 3)]
        let attributes: [String: Attribute] = ["scale": .float(0.6)]
        try GradientCheck.check(OpType.attention, domain: fusedDomain, inputs: inputs, attributes: attributes, differentiable: [0, 1, 2])
        try GradientCheck.checkRule(OpType.attention, domain: fusedDomain, inputs: inputs, attributes: attributes, differentiable: [0, 1, 2])
    }

    /// The tokens-first layout: Q [1, 5, 2, 3], K [1, 4, 2, 3], V [1, 4, 2, 2] (2 heads side by side).
    func testFiniteDifferencesTokensFirst() throws {
        let inputs = [values([1, 5, 2, 3], seed: 1, scale: 2), values([1, 4, 2, 3], seed: 2, scale: 2), values([1, 4, 2, 2], seed: 3)]
        let attributes: [String: Attribute] = ["scale": .float(0.6), AttentionLayout.attribute: .string(AttentionLayout.tokensFirst.rawValue)]
        try GradientCheck.check(OpType.attention, domain: fusedDomain, inputs: inputs, attributes: attributes, differentiable: [0, 1, 2])
        try GradientCheck.checkRule(OpType.attention, domain: fusedDomain, inputs: inputs, attributes: attributes, differentiable: [0, 1, 2])
    }

    /// Q [2, 2, 70, 8] (two row blocks), K and V [2, 2, 12, ·]: loss Σ O·W through the export's form
    /// (Mul on Q and Kᵀ, Transpose of the keys), differentiated before and after fuse-attention.
    func testSameGradientsAsTheUnfusedGraph() throws { try checkSameGradientsAsTheUnfusedGraph(headSplit: false) }

    /// The same with the export's head splits (Q, V [2, rows, 2, f] transposed, the output transposed
    /// back): fused in the tokens-first layout, the backward has no Transpose either.
    func testSameGradientsAsTheUnfusedGraphTokensFirst() throws { try checkSameGradientsAsTheUnfusedGraph(headSplit: true) }

    private func checkSameGradientsAsTheUnfusedGraph(headSplit: Bool) throws {
        let (n, m, d, dv) = (70, 12, 8, 5)
        let given = { (rows: Int, features: Int) in headSplit ? [2, rows, 2, features] : [2, 2, rows, features] }
        let b = GraphBuilder(graph: Graph(inputs: [
            ValueInfo(name: "q", type: TensorType(.float, known: given(n, d))),
            ValueInfo(name: "k", type: TensorType(.float, known: [2, m, 2, d])),
            ValueInfo(name: "v", type: TensorType(.float, known: given(m, dv))),
        ]))
        let splitHeads = { (x: String) in headSplit ? b.add1(OpType.transpose, [x], attributes: ["perm": .ints([0, 2, 1, 3])]) : x }
        let c = b.constant(Tensor(scalar: Float(pow(Double(d), -0.25))))
        let kT = b.add1(OpType.mul, [b.add1(OpType.transpose, ["k"], attributes: ["perm": .ints([0, 2, 3, 1])]), c])
        let scores = b.add1(OpType.matMul, [b.add1(OpType.mul, [splitHeads("q"), c]), kT])
        let o = splitHeads(b.add1(OpType.matMul, [b.add1(OpType.softmax, [scores]), splitHeads("v")]))
        let w = b.constant(values(given(n, dv), seed: 4))
        let loss = b.add1(OpType.reduceSum, [b.add1(OpType.mul, [o, w])], attributes: ["keepdims": .int(0)])
        var forward = b.graph
        forward.outputs = [ValueInfo(name: loss, type: TensorType(.float, known: []))]
        let fused = try OptimizingPipeline.run(try Passes.sorted(forward), opset: 17, passes: [.fuseAttention]).graph
        XCTAssertEqual(fused.opCounts[fusedDomain + "." + OpType.attention], 1, "\(fused.opCounts)")
        if headSplit { XCTAssertNil(fused.opCounts[OpType.transpose], "\(fused.opCounts)") }

        let feeds = ["q": values(given(n, d), seed: 5, scale: 3), "k": values([2, m, 2, d], seed: 6, scale: 3),
                     "v": values(given(m, dv), seed: 7)]
        func gradients(_ g: Graph, isFused: Bool = false) throws -> [[Double]] {
            let gg = try Autodiff.differentiate(g, opset: 17, loss: loss, parameters: ["q", "k", "v"])
            if headSplit && isFused { XCTAssertNil(gg.graph.opCounts[OpType.transpose], "\(gg.graph.opCounts)") }
            let out = try Session(model: Model(graph: gg.graph, opsetImports: ["": 17]),
                                  options: SessionOptions(threads: 2, optimizingPasses: false)).run(feeds)
            return try gg.gradients.map { try out[$0.gradient]!.doubles() }
        }
        let (expected, actual) = (try gradients(forward), try gradients(fused, isFused: true))
        for (name, (e, a)) in zip(["q", "k", "v"], zip(expected, actual)) {
            XCTAssertEqual(e.count, a.count, name)
            let scale = e.map(abs).max()!
            let worst = zip(e, a).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(worst, 1e-5 * max(1, scale), "d\(name): worst difference \(worst), largest \(scale)")
        }
    }
}
