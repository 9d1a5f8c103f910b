import XCTest
import GraphIR
@testable import Runtime

final class FuseMatMulEpilogueTests: XCTestCase {
    private let fusedName = fusedDomain + "." + OpType.fusedMatMul

    /// y = Relu(r + (x·W + c)), x [batch, rows, 32] (batch symbolic), W [32, n], c [n], r like the product:
    /// a SegFormer linear layer with its residual, and a Relu.
    private func linear(rows: Int, n: Int, residualShape: [Dim]? = nil, bias: Tensor? = nil, relu: Bool = true,
                        productAlsoOutput: Bool = false) -> Graph {
        let out: [Dim] = [.symbol("batch"), .known(rows), .known(n)]
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [.symbol("batch"), .known(rows), .known(32)]),
                                                   PassTest.input("r", residualShape ?? out)]))
        let product = b.add1("MatMul", ["x", b.constant(NNTest.tensor([32, n], seed: 2))])
        let biased = b.add1("Add", [b.constant(bias ?? NNTest.tensor([n], seed: 3)), product])
        let sum = b.add1("Add", ["r", biased])
        b.add(relu ? "Relu" : "Identity", [sum], writing: "y")
        var g = b.graph
        g.outputs = [PassTest.output("y")] + (productAlsoOutput ? [PassTest.output(product)] : [])
        return g
    }

    /// The definition, in Double: Relu(r + (x·W + c)) per row.
    private func reference(_ x: Tensor, _ w: Tensor, _ c: Tensor, _ r: Tensor, relu: Bool = true) throws -> [Double] {
        let (xs, ws, cs, rs) = (try x.doubles(), try w.doubles(), try c.doubles(), try r.doubles())
        let k = w.shape[0], n = w.shape[1], rows = x.count / k
        var y = [Double](repeating: 0, count: rows * n)
        for i in 0..<rows {
            for j in 0..<n {
                var s = 0.0
                for l in 0..<k { s += xs[i * k + l] * ws[l * n + j] }
                let v = s + cs[j] + rs[i * n + j]
                y[i * n + j] = relu ? max(0, v) : v
            }
        }
        return y
    }

    func testLinearWithBiasResidualAndReluBecomesOneFusedMatMul() throws {
        let original = linear(rows: 6, n: 5)
        let (rewritten, report) = try PassTest.optimize(original, [.fuseMatMulEpilogue])
        XCTAssertEqual(rewritten.nodes.map(\.opName), [fusedName], "\(report)")
        XCTAssertEqual(report.passes.map(\.description), ["fuse-matmul-epilogue: -2 Add, -1 MatMul, -1 Relu, +1 \(fusedName)"])
        let feeds = ["x": NNTest.tensor([2, 6, 32], seed: 10), "r": NNTest.tensor([2, 6, 5], seed: 11)]
        let y = try Session(model: Model(graph: rewritten, opsetImports: ["": 17])).run(feeds)["y"]!
        let expected = try reference(feeds["x"]!, NNTest.tensor([32, 5], seed: 2), NNTest.tensor([5], seed: 3), feeds["r"]!)
        try NNTest.assertClose(y, expected, shape: [2, 6, 5], tolerance: 1e-5)
        XCTAssertEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds), 0, "the epilogue does the nodes' own float operations")
    }

    /// Tall products run in row blocks spread over the threads, each block's epilogue right after its
    /// GEMM: the same bits at 1 and 2 threads and from run to run, with every GEMM library there is.
    func testTallProductIsBitIdenticalAcrossRunsAndThreadCounts() throws {
        let rows = 5000, n = 64   // 64 columns: blocks of 1024 rows, so 5 blocks
        let graph = linear(rows: rows, n: n)
        let feeds = ["x": NNTest.tensor([1, rows, 32], seed: 20), "r": NNTest.tensor([1, rows, n], seed: 21)]
        let expected = try reference(feeds["x"]!, NNTest.tensor([32, n], seed: 2), NNTest.tensor([n], seed: 3), feeds["r"]!)
        let initial = GEMMLibrary.current
        defer { try? GEMMLibrary.use(initial) }
        for library in GEMMLibrary.allCases where library == .openBLAS || GEMMLibrary.oneDNNAvailable {
            try GEMMLibrary.use(library)
            var results: [[Float]] = []
            for threads in [2, 2, 1] {
                let session = try Session(model: Model(graph: graph, opsetImports: ["": 17]), options: SessionOptions(threads: threads))
                XCTAssertEqual(session.compiled.graph.nodes.map(\.opName), [fusedName])
                let y = try session.run(feeds)["y"]!
                try NNTest.assertClose(y, expected, shape: [1, rows, n], tolerance: 1e-5)
                results.append(Array(UnsafeBufferPointer(start: y.pointer(Float.self), count: y.count)))
            }
            XCTAssertTrue(results.allSatisfy { $0.map(\.bitPattern) == results[0].map(\.bitPattern) }, "\(library)")
        }
    }

    /// Transposes of the last two axes become transA / transB, broadcasting batch dims and all.
    func testTransposesOfTheLastTwoAxesBecomeFlags() throws {
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("a", [2, 3, 7, 4]), PassTest.input("b", [3, 5, 7])]))
        let at = b.add1("Transpose", ["a"], attributes: ["perm": .ints([0, 1, 3, 2])])   // [2, 3, 4, 7]
        let bt = b.add1("Transpose", ["b"], attributes: ["perm": .ints([0, 2, 1])])      // [3, 7, 5]
        b.add("MatMul", [at, bt], writing: "y")                                          // [2, 3, 4, 5]
        var original = b.graph
        original.outputs = [PassTest.output("y")]
        let (rewritten, report) = try PassTest.optimize(original, [.fuseMatMulEpilogue])
        XCTAssertEqual(rewritten.nodes.map(\.opName), [fusedName], "\(report)")
        XCTAssertEqual(try rewritten.nodes[0].int("transA"), 1)
        XCTAssertEqual(try rewritten.nodes[0].int("transB"), 1)
        XCTAssertEqual(rewritten.nodes[0].inputs, ["a", "b"])
        let feeds = ["a": NNTest.tensor([2, 3, 7, 4], seed: 30), "b": NNTest.tensor([3, 5, 7], seed: 31)]
        let (av, bv) = (try feeds["a"]!.doubles(), try feeds["b"]!.doubles())
        var expected: [Double] = []
        for i in 0..<2 { for h in 0..<3 { for r in 0..<4 { for c in 0..<5 {
            expected.append((0..<7).reduce(0.0) { $0 + av[((i * 3 + h) * 7 + $1) * 4 + r] * bv[(h * 5 + c) * 7 + $1] })
        } } } }
        let y = try Session(model: Model(graph: rewritten, opsetImports: ["": 17])).run(feeds)["y"]!
        try NNTest.assertClose(y, expected, shape: [2, 3, 4, 5], tolerance: 1e-5)
        XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds), 1e-6)
    }

    /// Graphs that only look alike are left as they are, or fused only as far as they match.
    func testNearMissesAreLeftAlone() throws {
        func transposed(_ perm: [Int], _ shape: [Int]) -> Graph {
            let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("a", shape), PassTest.input("b", [6, 5])]))
            b.add("MatMul", [b.add1("Transpose", ["a"], attributes: ["perm": .ints(perm)]), "b"], writing: "y")
            var g = b.graph
            g.outputs = [PassTest.output("y")]
            return g
        }
        let unchanged: [(String, Graph)] = [
            ("a Transpose that is not a swap of the last two axes", transposed([1, 0, 2], [4, 3, 6])),
            ("the product also a graph output", linear(rows: 6, n: 5, productAlsoOutput: true)),
        ]
        for (what, g) in unchanged {
            let (_, report) = try PassTest.optimize(g, [.fuseMatMulEpilogue])
            XCTAssertFalse(report.passes[0].changedGraph, "\(what): \(report)")
        }
        // A bias along the rows ([6, 1]) is no bias; a residual that broadcasts ([1, 6, 5] against
        // [batch, 6, 5]) is no residual: the fusion stops before them.
        let partly: [(String, Graph, String)] = [
            ("bias along the rows", linear(rows: 6, n: 5, bias: NNTest.tensor([6, 1], seed: 3)),
             "fuse-matmul-epilogue: no change"),
            ("broadcasting residual", linear(rows: 6, n: 5, residualShape: [.known(1), .known(6), .known(5)]),
             "fuse-matmul-epilogue: -1 Add, -1 MatMul, +1 \(fusedName)"),
        ]
        for (what, g, expected) in partly {
            let (rewritten, report) = try PassTest.optimize(g, [.fuseMatMulEpilogue])
            XCTAssertEqual(report.passes.map(\.description), [expected], what)
            let feeds = ["x": NNTest.tensor([2, 6, 32], seed: 40), "r": NNTest.tensor(g.inputs[1].type.shape!.map { $0.value ?? 2 }, seed: 41)]
            XCTAssertEqual(try PassTest.maxDifference(g, rewritten, feeds: feeds), 0, what)
        }
    }

    /// Transpose(Relu(x·W + c)) over the last two axes: the kernel writes (x·W)ᵀ = Wᵀ·xᵀ directly, the
    /// bias per row — SegFormer's linears before an NCHW consumer. With a residual the Transpose stays.
    func testTransposedResultIsWrittenDirectly() throws {
        func graph(residual: Bool) -> Graph {
            let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [.symbol("batch"), .known(6), .known(32)]),
                                                       PassTest.input("r", [.symbol("batch"), .known(6), .known(5)])]))
            var y = b.add1("Add", [b.add1("MatMul", ["x", b.constant(NNTest.tensor([32, 5], seed: 2))]),
                                   b.constant(NNTest.tensor([5], seed: 3))])
            if residual { y = b.add1("Add", [y, "r"]) }
            b.add("Transpose", [b.add1("Relu", [y])], attributes: ["perm": .ints([0, 2, 1])], writing: "y")
            var g = b.graph
            g.outputs = [PassTest.output("y")]
            return g
        }
        let feeds = ["x": NNTest.tensor([2, 6, 32], seed: 50), "r": NNTest.tensor([2, 6, 5], seed: 51)]
        let original = graph(residual: false)
        let (rewritten, report) = try PassTest.optimize(original, [.fuseMatMulEpilogue])
        XCTAssertEqual(rewritten.nodes.map(\.opName), [fusedName], "\(report)")
        XCTAssertEqual(try rewritten.nodes[0].int("transposeOutput", default: 0), 1)
        let y = try Session(model: Model(graph: rewritten, opsetImports: ["": 17]),
                            options: SessionOptions(threads: 2)).run(feeds)["y"]!
        let zero = Tensor(zeros: .float, shape: [2, 6, 5])
        let product = try reference(feeds["x"]!, NNTest.tensor([32, 5], seed: 2), NNTest.tensor([5], seed: 3), zero)
        var expected = [Double](repeating: 0, count: product.count)   // [2, 6, 5] → [2, 5, 6]
        for i in 0..<2 { for r in 0..<6 { for c in 0..<5 { expected[(i * 5 + c) * 6 + r] = product[(i * 6 + r) * 5 + c] } } }
        try NNTest.assertClose(y, expected, shape: [2, 5, 6], tolerance: 1e-5)
        XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds), 1e-5)

        let withResidual = graph(residual: true)
        let (kept, keptReport) = try PassTest.optimize(withResidual, [.fuseMatMulEpilogue])
        XCTAssertEqual(kept.nodes.map(\.opName).sorted(), ["Transpose", fusedName], "\(keptReport)")
        XCTAssertEqual(try PassTest.maxDifference(withResidual, kept, feeds: feeds), 0)
    }
    /// The gradient-graph form: the bias may be a fed parameter, the backward's Shape readers of the
    /// intermediates read the fused output (the same shape), and Transposes stay nodes (the forward of
    /// a training graph keeps its bits).
    func testGradientGraphFormTakesParameterBiasesAndLeavesTransposes() throws {
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [.symbol("batch"), .known(6), .known(32)]),
                                                   PassTest.input("w", [32, 5]), PassTest.input("c", [5]),
                                                   PassTest.input("r", [.symbol("batch"), .known(5), .known(6)])]))
        let product = b.add1("MatMul", ["x", "w"])
        let biased = b.add1("Add", [product, "c"])
        let residual = b.add1("Add", [b.add1("Transpose", ["r"], attributes: ["perm": .ints([0, 2, 1])]), biased])
        b.add("Shape", [product], writing: "product_shape")   // as an Add's gradient reads its operand's shape
        b.add("Shape", [biased], writing: "biased_shape")
        b.add("Transpose", [residual], attributes: ["perm": .ints([0, 2, 1])], writing: "y")
        var original = b.graph
        original.outputs = ["y", "product_shape", "biased_shape"].map(PassTest.output)
        let (rewritten, report) = try PassTest.optimize(original, [.fuseMatMulBiasAndResidual])
        XCTAssertEqual(report.passes.map(\.description),
                       ["fuse-matmul-bias-residual: -2 Add, -1 MatMul, -2 Shape, +2 Shape, +1 \(fusedName)"])
        let fused = try XCTUnwrap(rewritten.nodes.first { $0.opType == OpType.fusedMatMul })
        XCTAssertEqual(fused.inputs.prefix(3), ["x", "w", "c"])
        XCTAssertEqual(try fused.int("transA"), 0)
        XCTAssertEqual(try fused.int("transposeOutput", default: 0), 0)
        XCTAssertEqual(rewritten.nodes.filter { $0.opType == OpType.transpose }.count, 2)
        let feeds = ["x": NNTest.tensor([2, 6, 32], seed: 60), "w": NNTest.tensor([32, 5], seed: 61),
                     "c": NNTest.tensor([5], seed: 62), "r": NNTest.tensor([2, 5, 6], seed: 63)]
        XCTAssertEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds), 0)
        // The inference form needs each intermediate read by the pattern alone.
        let (inference, _) = try PassTest.optimize(original, [.fuseMatMulEpilogue])
        XCTAssertFalse(inference.nodes.contains { $0.opType == OpType.fusedMatMul })
    }
}
