import Foundation
import XCTest
import GraphIR
@testable import Runtime

final class FuseAttentionTests: XCTestCase {
    /// How the attention is written; the defaults are the TorchScript export at opset 17 (transformers
    /// 5, SDPA): MatMul(Mul(Q, c), Mul(Transpose(K₄, [0,2,3,1]), c)) → Softmax(-1) → MatMul(·, V)
    /// with c = d^(-1/4), K₄ the keys as [B, M, heads, d].
    private struct Form {
        enum Scale { case none, splitOverQAndKeys, mulScores, divScores, onQueries }
        enum Keys { case headsLast, transposedLastTwo, givenTransposed }
        var scale = Scale.splitOverQAndKeys
        var keys = Keys.headsLast
        var cast = false              // two Casts (to float) between Softmax and MatMul, as eager exports write
        var softmaxAxis: Int? = nil   // nil: the opset's default
        var opset = 17
        var swapped = false           // the other operand order of every Mul
        // near misses
        var scaleFed = false          // the factor is a graph input, not a constant
        var vectorScale = false       // the factor is a constant [M], not a scalar
        var scoresAlsoOutput = false
        var probabilitiesAlsoOutput = false
        var keysBatchOne = false      // K has batch 1 where Q has 2: MatMul broadcasts
        /// The export's head split: Q, K, V arrive as [B, rows, heads, features] and are transposed to
        /// [B, heads, rows, features] (K by the Transpose making Kᵀ, or by its own before one of the
        /// last two axes); the output goes back through Transpose(0, 2, 1, 3).
        var headSplit = false
        // near misses of the tokens-first layout
        var queriesPerm = [0, 2, 1, 3]   // the Transpose writing Q
        var queriesAlsoOutput = false  // the transposed Q also read by a graph output
        var outputPerm = [0, 2, 1, 3]    // the Transpose after the product
        var productAlsoOutput = false  // the product also read by a graph output
        /// The opset-17 export's shape reads: the output goes through Reshape(product, target) before
        /// the Transpose back, target computed from Shape(product), Shape(Q) and Shape(V) (transposed);
        /// Shape(Q) is also an output, to check its replacement.
        var shapeReads = false
    }

    private let (batch, heads, n, m, d, dv) = (2, 2, 9, 6, 4, 3)

    private func graph(_ f: Form) -> Graph {
        let kBatch = f.keysBatchOne ? 1 : batch
        let keysShape: [Int] = switch f.keys {
        case .headsLast: [kBatch, m, heads, d]
        case .transposedLastTwo: [kBatch, heads, m, d]
        case .givenTransposed: [kBatch, heads, d, m]
        }
        // With head splits, each input's shape is what its Transpose (`perm`) turns into [B, heads, rows, f].
        func given(_ rows: Int, _ features: Int, _ perm: [Int] = [0, 2, 1, 3]) -> [Dim] {
            var shape = [Dim](repeating: .symbol("batch"), count: 4)
            if f.headSplit {
                for (i, dim) in [Dim.symbol("batch"), .known(heads), .known(rows), .known(features)].enumerated() { shape[perm[i]] = dim }
            } else {
                shape = [.symbol("batch"), .known(heads), .known(rows), .known(features)]
            }
            return shape
        }
        let keysGiven: [Dim] = f.headSplit && f.keys == .transposedLastTwo ? given(m, d)
            : [f.keysBatchOne ? .known(1) : .symbol("batch")] + keysShape.dropFirst().map { .known($0) }
        var inputs = [PassTest.input("q", given(n, d, f.queriesPerm)), PassTest.input("k", keysGiven), PassTest.input("v", given(m, dv))]
        if f.keysBatchOne { inputs[0] = PassTest.input("q", [batch, heads, n, d]); inputs[2] = PassTest.input("v", [batch, heads, m, dv]) }
        if f.scaleFed { inputs.append(PassTest.input("c", [Int]())) }
        let b = GraphBuilder(graph: Graph(inputs: inputs))
        let c = Double(d)
        func factor(_ v: Double) -> String {
            if f.scaleFed { return "c" }
            return b.constant(f.vectorScale ? Tensor([Float](repeating: Float(v), count: m), shape: [m]) : Tensor(scalar: Float(v)))
        }
        func mul(_ x: String, _ v: Double) -> String { b.add1("Mul", f.swapped ? [factor(v), x] : [x, factor(v)]) }
        func transpose(_ x: String, _ perm: [Int]) -> String { b.add1("Transpose", [x], attributes: ["perm": .ints(perm)]) }
        let splitHeads: (String) -> String = { f.headSplit ? transpose($0, [0, 2, 1, 3]) : $0 }
        var kT: String = switch f.keys {
        case .headsLast: transpose("k", [0, 2, 3, 1])
        case .transposedLastTwo: transpose(splitHeads("k"), [0, 1, 3, 2])
        case .givenTransposed: "k"
        }
        var q = f.headSplit ? transpose("q", f.queriesPerm) : "q"
        let transposedQueries = q
        switch f.scale {
        case .splitOverQAndKeys: (q, kT) = (mul(q, pow(c, -0.25)), mul(kT, pow(c, -0.25)))
        case .onQueries: q = mul(q, pow(c, -0.5))
        default: break
        }
        var scores = b.add1("MatMul", [q, kT])
        let rawScores = scores
        switch f.scale {
        case .mulScores: scores = mul(scores, pow(c, -0.5))
        case .divScores: scores = b.add1("Div", [scores, factor(c.squareRoot())])
        default: break
        }
        var p = b.add1("Softmax", [scores], attributes: f.softmaxAxis.map { ["axis": .int($0)] } ?? [:])
        let probabilities = p
        for _ in 0..<(f.cast ? 2 : 0) { p = b.add1("Cast", [p], attributes: ["to": .int(Int(DataType.float.rawValue))]) }
        let values = splitHeads("v")
        var product = b.add1("MatMul", [p, values])
        var queriesShape: String?
        if f.shapeReads {
            queriesShape = b.add1("Shape", [transposedQueries])
            let pick = { (shape: String, axes: [Int]) in b.add1("Gather", [shape, b.int64s(axes)], attributes: ["axis": .int(0)]) }
            let target = b.add1("Concat", [pick(b.add1("Shape", [product]), [0, 1]), pick(queriesShape!, [2]),
                                           pick(b.add1("Shape", [values]), [3])], attributes: ["axis": .int(0)])
            product = b.add1("Reshape", [product, target])
        }
        if f.headSplit { _ = transpose(product, f.outputPerm) }
        var g = b.graph
        g.nodes[g.nodes.count - 1].outputs = ["o"]
        g.outputs = [PassTest.output("o")] + (f.scoresAlsoOutput ? [PassTest.output(rawScores)] : [])
            + (f.probabilitiesAlsoOutput ? [PassTest.output(probabilities)] : [])
            + (f.queriesAlsoOutput ? [PassTest.output(transposedQueries)] : [])
            + (f.productAlsoOutput && f.headSplit ? [PassTest.output(product)] : [])
            + (queriesShape.map { [ValueInfo(name: $0, type: TensorType(.int64, nil))] } ?? [])
        return g
    }

    private func feeds(_ f: Form) -> [String: Tensor] {
        let g = graph(f)
        var feeds: [String: Tensor] = [:]
        for (i, input) in g.inputs.enumerated() {
            let shape = input.type.shape!.map { $0.value ?? batch }
            feeds[input.name] = input.name == "c" ? Tensor(scalar: Float(0.5))
                : Tensor(NNTest.values(shape.reduce(1, *), seed: UInt64(40 + i)).map { 2 * $0 }, shape: shape)
        }
        return feeds
    }

    private let attention = fusedDomain + "." + OpType.attention

    func testEveryFormBecomesOneAttentionNodeWithTheSameNumbers() throws {
        let forms: [(String, Form)] = [
            ("opset 17 export (scale split over Q and Kᵀ)", Form()),
            ("opset 12 eager export (Mul on the scores, Softmax axis 3, Cast)", Form(scale: .mulScores, cast: true, softmaxAxis: 3, opset: 12)),
            ("Div on the scores", Form(scale: .divScores)),
            ("Div on the scores, Kᵀ = Transpose(K, last two)", Form(scale: .divScores, keys: .transposedLastTwo)),
            ("pre-scaled Q, Kᵀ given", Form(scale: .onQueries, keys: .givenTransposed)),
            ("no scale", Form(scale: .none, swapped: true)),
        ]
        for (what, form) in forms {
            let original = graph(form)
            let (rewritten, report) = try PassTest.optimize(original, [.fuseAttention], opset: form.opset)
            let counts = rewritten.opCounts
            XCTAssertEqual(counts[attention], 1, "\(what): \(report)")
            for op in ["MatMul", "Softmax", "Mul", "Div", "Cast"] { XCTAssertNil(counts[op], "\(what): \(op) left: \(report)") }
            // K is the Transpose's input itself, or one Transpose (the export's, with the last two axes swapped back).
            XCTAssertLessThanOrEqual(counts["Transpose"] ?? 0, 1, what)
            XCTAssertEqual(counts.values.reduce(0, +), 1 + (counts["Transpose"] ?? 0), "\(what): \(counts)")
            XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds(form), opset: form.opset), 1e-6, what)
        }
    }

    /// The exports' head splits (Reshape → Transpose(0, 2, 1, 3) on Q, K, V and back on the output)
    /// are taken into the node: it reads and writes the tokens-first layout, no Transpose is left.
    func testHeadSplitsBecomeTheTokensFirstLayout() throws {
        let forms: [(String, Form)] = [
            ("opset 17 export (K₄ → Kᵀ in one Transpose)", Form(headSplit: true)),
            ("opset 17 export with its shape reads and no-op Reshape", Form(headSplit: true, shapeReads: true)),
            ("opset 12 eager export (Kᵀ a second Transpose)",
             Form(scale: .mulScores, keys: .transposedLastTwo, cast: true, softmaxAxis: 3, opset: 12, headSplit: true)),
        ]
        for (what, form) in forms {
            let original = graph(form)
            let (rewritten, report) = try PassTest.optimize(original, [.fuseAttention], opset: form.opset)
            // What is left besides the node: the replaced Shape read, Shape(Q₄) gathered in swapped order.
            XCTAssertEqual(rewritten.opCounts, form.shapeReads ? [attention: 1, "Shape": 1, "Gather": 1] : [attention: 1], "\(what): \(report)")
            let node = try XCTUnwrap(rewritten.nodes.first { $0.opType == OpType.attention })
            XCTAssertEqual(try node.string(AttentionLayout.attribute), AttentionLayout.tokensFirst.rawValue, what)
            XCTAssertEqual(node.inputs, ["q", "k", "v"], what)
            XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds(form), opset: form.opset), 1e-6, what)
        }
    }

    /// Transposes that are not exactly the head split, or whose tensors something else reads, stay:
    /// the node is fused in the heads-first layout.
    func testHeadSplitNearMissesKeepTheirTransposes() throws {
        let nearMisses: [(String, Form)] = [
            ("Q transposed over its last two axes", Form(headSplit: true, queriesPerm: [0, 1, 3, 2])),
            ("transposed Q also an output", Form(headSplit: true, queriesAlsoOutput: true)),
            ("output transposed another way", Form(headSplit: true, outputPerm: [0, 2, 3, 1])),
            ("product also an output", Form(headSplit: true, productAlsoOutput: true)),
        ]
        for (what, form) in nearMisses {
            let original = graph(form)
            let (rewritten, report) = try PassTest.optimize(original, [.fuseAttention], opset: form.opset)
            XCTAssertEqual(rewritten.opCounts[attention], 1, "\(what): \(report)")
            XCTAssertGreaterThanOrEqual(rewritten.opCounts["Transpose"] ?? 0, 3, "\(what): \(report)")
            let node = try XCTUnwrap(rewritten.nodes.first { $0.opType == OpType.attention })
            XCTAssertNil(try node.string(AttentionLayout.attribute), what)
            XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds(form), opset: form.opset), 1e-6, what)
        }
    }

    /// Graphs that only look like attention, each left as it is.
    func testNearMissesAreLeftAlone() throws {
        let nearMisses: [(String, Form)] = [
            ("Softmax over axis 2", Form(softmaxAxis: 2)),
            ("opset 12 Softmax with its default axis 1 (rows coerced from axis 1)", Form(opset: 12)),
            ("scale fed at run time", Form(scale: .mulScores, scaleFed: true)),
            ("scale a vector", Form(scale: .mulScores, vectorScale: true)),
            ("scores also an output", Form(scoresAlsoOutput: true)),
            ("probabilities also an output", Form(probabilitiesAlsoOutput: true)),
            ("K broadcast over the batch", Form(keys: .transposedLastTwo, keysBatchOne: true)),
        ]
        for (what, form) in nearMisses {
            let (rewritten, report) = try PassTest.optimize(graph(form), [.fuseAttention], opset: form.opset)
            XCTAssertFalse(report.passes[0].changedGraph, "\(what): \(report)")
            XCTAssertNil(rewritten.opCounts[attention], what)
        }
    }
}
