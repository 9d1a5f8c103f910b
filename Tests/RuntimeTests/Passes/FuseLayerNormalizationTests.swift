import Foundation
import XCTest
import GraphIR
@testable import Runtime

final class FuseLayerNormalizationTests: XCTestCase {
    /// How the decomposed LayerNorm is written; the defaults are PyTorch's export below opset 17.
    private struct Form {
        var axes = [-1]
        var exponent: Float = 2
        var epsilon = Tensor(scalar: Float(1e-5))
        var swapped = false          // Add(ε, var), Mul(γ, ·), Add(β, ·)
        var squareOfInput = false    // mean(x²) in place of mean((x − μ)²)
        var centredAlsoOutput = false
        var scaleFed = false
    }

    /// x [batch, 3, 8] → ReduceMean → Sub → Pow → ReduceMean → Add ε → Sqrt → Div → Mul γ → Add β → y.
    /// From opset 18 ReduceMean takes its axes as an input.
    private func graph(_ f: Form = Form(), opset: Int) -> Graph {
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [.symbol("batch"), .known(3), .known(8)])]))
        func mean(_ v: String) -> String {
            opset >= 18 ? b.add1("ReduceMean", [v, b.int64s(f.axes)]) : b.add1("ReduceMean", [v], attributes: ["axes": .ints(f.axes)])
        }
        func ordered(_ a: String, _ c: String) -> [String] { f.swapped ? [c, a] : [a, c] }
        let centred = b.add1("Sub", ["x", mean("x")])
        let square = b.add1("Pow", [f.squareOfInput ? "x" : centred, b.constant(Tensor(scalar: f.exponent))])
        let deviation = b.add1("Sqrt", [b.add1("Add", ordered(mean(square), b.constant(f.epsilon)))])
        let normalized = b.add1("Div", [centred, deviation])
        var g = b.graph
        g.setInitializer("gamma", NNTest.tensor([8], seed: 21))
        g.setInitializer("beta", NNTest.tensor([8], seed: 22))
        if f.scaleFed { g.inputs.append(PassTest.input("gamma", [8])) }
        g.nodes.append(Node(name: "scale", opType: "Mul", inputs: ordered(normalized, "gamma"), outputs: ["scaled"]))
        g.nodes.append(Node(name: "shift", opType: "Add", inputs: ordered("scaled", "beta"), outputs: ["y"]))
        g.outputs = [PassTest.output("y")] + (f.centredAlsoOutput ? [PassTest.output(centred)] : [])
        return g
    }

    private let x = NNTest.tensor([2, 3, 8], seed: 23)

    /// LayerNorm over the last axis computed here in Double from its definition.
    private func reference(epsilon: Double) throws -> [Double] {
        let xs = try x.doubles(), gamma = try NNTest.tensor([8], seed: 21).doubles(), beta = try NNTest.tensor([8], seed: 22).doubles()
        return stride(from: 0, to: xs.count, by: 8).flatMap { start -> [Double] in
            let row = xs[start..<start + 8]
            let mu = row.reduce(0, +) / 8
            let variance = row.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / 8
            return row.enumerated().map { (i, v) in (v - mu) / (variance + epsilon).squareRoot() * gamma[i] + beta[i] }
        }
    }

    func testDecomposedLayerNormBecomesOneNodeValidAtTheOpset() throws {
        for (opset, domain) in [(12, fusedDomain), (17, ""), (18, "")] {
            for swapped in [false, true] {
                let original = graph(Form(swapped: swapped), opset: opset)
                let (rewritten, report) = try PassTest.optimize(original, [.fuseLayerNormalization], opset: opset)
                let what = "opset \(opset), swapped \(swapped): \(report)"
                XCTAssertEqual(rewritten.nodes.map(\.opType), ["LayerNormalization"], what)
                XCTAssertEqual(rewritten.nodes.first?.domain, domain, what)
                XCTAssertEqual(try rewritten.nodes.first?.float("epsilon"), 1e-5, what)
                XCTAssertEqual(report.passes.map(\.description), ["fuse-layer-normalization: -2 Add, -1 Div, -1 Mul, -1 Pow, "
                    + "-2 ReduceMean, -1 Sqrt, -1 Sub, +1 \(domain.isEmpty ? "" : domain + ".")LayerNormalization"], what)
                let y = try Session(model: Model(graph: rewritten, opsetImports: ["": opset])).run(["x": x])["y"]!
                try NNTest.assertClose(y, try reference(epsilon: 1e-5), shape: [2, 3, 8], tolerance: 1e-5)
                XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: ["x": x], opset: opset), 1e-5, what)
            }
        }
    }

    /// Graphs that only look like a LayerNorm: a mean over another axis, a cube, a per-channel ε, the
    /// mean of x² instead of the variance, the centred value read elsewhere too, a fed γ.
    func testNearMissesAreLeftAlone() throws {
        let nearMisses: [(String, Form)] = [
            ("mean over axis 1", Form(axes: [1])),
            ("exponent 3", Form(exponent: 3)),
            ("ε per channel", Form(epsilon: Tensor([Float](repeating: 1e-5, count: 8), shape: [8]))),
            ("mean of x²", Form(squareOfInput: true)),
            ("centred value also an output", Form(centredAlsoOutput: true)),
            ("γ fed", Form(scaleFed: true)),
        ]
        for (what, form) in nearMisses {
            let (rewritten, report) = try PassTest.optimize(graph(form, opset: 12), [.fuseLayerNormalization], opset: 12)
            XCTAssertFalse(report.passes[0].changedGraph, "\(what): \(report)")
            XCTAssertNil(rewritten.opCounts[fusedDomain + ".LayerNormalization"], what)
        }
    }
}
