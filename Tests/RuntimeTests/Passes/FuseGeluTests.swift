import Foundation
import XCTest
import GraphIR
@testable import Runtime

final class FuseGeluTests: XCTestCase {
    /// How the decomposed GELU is written; the defaults are PyTorch's export below opset 20:
    /// Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5).
    private struct Form {
        enum Grouping { case productThenHalf, halfThenProduct, halfOfErfTerm }
        var grouping = Grouping.productThenHalf
        var byReciprocal = false      // Mul(x, 1/√2) in place of Div(x, √2)
        var swapped = false           // the other operand order of every Mul and Add
        var divisor: Float = Float(2.0.squareRoot())
        var one: Float = 1
        var half: Float = 0.5
        var productOfOther = false    // z · Φ(x) instead of x · Φ(x)
        var erfAlsoOutput = false
    }

    /// x, z [batch, 4, 6] → the decomposed GELU of x → y.
    private func graph(_ f: Form = Form()) -> Graph {
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [.symbol("batch"), .known(4), .known(6)]),
                                                   PassTest.input("z", [.symbol("batch"), .known(4), .known(6)])]))
        func mul(_ a: String, _ c: String) -> String { b.add1("Mul", f.swapped ? [c, a] : [a, c]) }
        func scalar(_ v: Float) -> String { b.constant(Tensor(scalar: v)) }
        let scaled = f.byReciprocal ? mul("x", scalar(Float(0.5.squareRoot()))) : b.add1("Div", ["x", scalar(f.divisor)])
        let erf = b.add1("Erf", [scaled])
        let term = b.add1("Add", f.swapped ? [scalar(f.one), erf] : [erf, scalar(f.one)])
        let x = f.productOfOther ? "z" : "x"
        switch f.grouping {
        case .productThenHalf: _ = mul(mul(x, term), scalar(f.half))
        case .halfThenProduct: _ = mul(mul(x, scalar(f.half)), term)
        case .halfOfErfTerm: _ = mul(x, mul(term, scalar(f.half)))
        }
        var g = b.graph
        g.nodes[g.nodes.count - 1].outputs = ["y"]   // the outer Mul, added last, writes the graph output
        g.outputs = [PassTest.output("y")] + (f.erfAlsoOutput ? [PassTest.output(erf)] : [])
        return g
    }

    /// Values over [-4, 4), where GELU bends.
    private let feeds = ["x": Tensor(NNTest.values(48, seed: 31).map { 4 * $0 }, shape: [2, 4, 6]), "z": NNTest.tensor([2, 4, 6], seed: 32)]

    func testEveryGroupingBecomesOneGeluValidAtTheOpset() throws {
        let x = try feeds["x"]!.doubles()
        let expected = x.map { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) }   // GELU's definition, in Double
        for (opset, domain) in [(12, fusedDomain), (20, "")] {
            for grouping in [Form.Grouping.productThenHalf, .halfThenProduct, .halfOfErfTerm] {
                for (byReciprocal, swapped) in [(false, false), (true, true)] {
                    let original = graph(Form(grouping: grouping, byReciprocal: byReciprocal, swapped: swapped))
                    let (rewritten, report) = try PassTest.optimize(original, [.fuseGelu], opset: opset)
                    let what = "opset \(opset), \(grouping), reciprocal \(byReciprocal), swapped \(swapped): \(report)"
                    XCTAssertEqual(rewritten.nodes.map(\.opType), ["Gelu"], what)
                    XCTAssertEqual(rewritten.nodes.first?.domain, domain, what)
                    let removed = byReciprocal ? "-1 Add, -1 Erf, -3 Mul" : "-1 Add, -1 Div, -1 Erf, -2 Mul"
                    XCTAssertEqual(report.passes.map(\.description), ["fuse-gelu: \(removed), +1 \(domain.isEmpty ? "" : domain + ".")Gelu"], what)
                    let y = try Session(model: Model(graph: rewritten, opsetImports: ["": opset])).run(feeds)["y"]!
                    try NNTest.assertClose(y, expected, shape: [2, 4, 6], tolerance: 1e-6)
                    XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds, opset: opset), 1e-6, what)
                }
            }
        }
    }

    /// Graphs that only look like a GELU: x/1.41, 2 + erf, a quarter, z·Φ(x), the Erf read elsewhere too.
    func testNearMissesAreLeftAlone() throws {
        let nearMisses: [(String, Form)] = [
            ("divisor 1.41", Form(divisor: 1.41)),
            ("2 + erf", Form(one: 2)),
            ("a quarter", Form(half: 0.25)),
            ("z · Φ(x)", Form(productOfOther: true)),
            ("z · Φ(x), half first", Form(grouping: .halfThenProduct, productOfOther: true)),
            ("Erf also an output", Form(erfAlsoOutput: true)),
        ]
        for (what, form) in nearMisses {
            let (rewritten, report) = try PassTest.optimize(graph(form), [.fuseGelu], opset: 12)
            XCTAssertFalse(report.passes[0].changedGraph, "\(what): \(report)")
            XCTAssertNil(rewritten.opCounts[fusedDomain + ".Gelu"], what)
        }
    }
}
