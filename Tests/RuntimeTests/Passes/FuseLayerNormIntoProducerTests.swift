import XCTest
import GraphIR
@testable import Runtime

/// fuse-layer-norm-into-producer: the LayerNorm of a fused producer's output becomes the producer's
/// second output. The truth it is held to is the LayerNormalization kernel itself (checked against
/// onnxruntime by the conformance cases): the same bits, at every thread count.
final class FuseLayerNormIntoProducerTests: XCTestCase {
    private let fusedMatMul = fusedDomain + "." + OpType.fusedMatMul
    private let tokenDepthwise = fusedDomain + "." + OpType.tokenDepthwiseConv
    private let channels = 64

    /// How the LayerNorm is written; the defaults are SegFormer's (opset 17, over the last axis, with
    /// a bias, ε 1e-6).
    private struct Norm {
        var domain = ""
        var attributes: [String: Attribute] = ["axis": .int(-1), "epsilon": .float(1e-6)]
        var bias = true
        var scaleShape: [Int]? = nil          // nil: [C]
        var meanAlsoOutput = false
    }

    /// s = the producer's output; y = LayerNorm(s); with `residualStream`, z = s + r2 reads s too (the
    /// next residual Add, as in SegFormer). The producer is SegFormer's attention output projection,
    /// x·W + c + r (`.matMul`), or MixFFN's depthwise conv with GELU and fc2, · P + c + r (`.mixFFN`), on
    /// tokens [1, rows, C] whose grid is `height` × `width` (rows = height · width).
    private enum Producer { case matMul, mixFFN, transposedMatMul }

    private func graph(_ producer: Producer, height: Int, width: Int, norm: Norm = Norm(), residualStream: Bool = true) -> Graph {
        let (rows, c) = (height * width, channels)
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [1, rows, c]), PassTest.input("r", [1, rows, c]),
                                                   PassTest.input("r2", [1, rows, c])]))
        let s: String
        switch producer {
        case .matMul:
            s = b.add1(OpType.fusedMatMul, domain: fusedDomain, ["x", b.constant(NNTest.tensor([c, c], seed: 2)),
                                                                   b.constant(NNTest.tensor([c], seed: 3)), "r"])
        case .transposedMatMul:
            s = b.add1(OpType.fusedMatMul, domain: fusedDomain, ["x", b.constant(NNTest.tensor([rows, rows], seed: 2))],
                       attributes: ["transA": .int(1), "transposeOutput": .int(1)])
        case .mixFFN:
            let hidden = 2 * c
            let expanded = b.add1(OpType.fusedMatMul, domain: fusedDomain, ["x", b.constant(NNTest.tensor([c, hidden], seed: 4))])
            s = b.add1(OpType.tokenDepthwiseConv, domain: fusedDomain, [
                expanded, b.constant(NNTest.tensor([hidden, 1, 3, 3], seed: 5)), b.int64s([1, hidden, height, width]),
                b.constant(NNTest.tensor([hidden], seed: 6)), b.constant(NNTest.tensor([hidden, c], seed: 7)),
                b.constant(NNTest.tensor([c], seed: 8)), "r"], attributes: ["activation": .string(OpType.gelu)])
        }
        // Scale around 1 and a bias, as trained LayerNorms have.
        let scale = Tensor(NNTest.values(c, seed: 9).map { 1 + $0 / 2 }, shape: norm.scaleShape ?? [c])
        let inputs = [s, b.constant(scale)] + (norm.bias ? [b.constant(NNTest.tensor([c], seed: 10))] : [])
        let outputs = b.add(OpType.layerNormalization, domain: norm.domain, inputs, attributes: norm.attributes,
                            outputs: norm.meanAlsoOutput ? 2 : 1)
        let next = residualStream ? [b.add1(OpType.add, [s, "r2"])] : []
        var g = b.graph
        g.outputs = (outputs.prefix(norm.meanAlsoOutput ? 2 : 1) + next).map(PassTest.output)
        return g
    }

    private func feeds(rows: Int) -> [String: Tensor] {
        // Tokens of a few units, as SegFormer's residual stream has.
        ["x": Tensor(NNTest.values(rows * channels, seed: 11).map { 3 * $0 }, shape: [1, rows, channels]),
         "r": NNTest.tensor([1, rows, channels], seed: 12), "r2": NNTest.tensor([1, rows, channels], seed: 13)]
    }

    /// Every output of `graph` as bit patterns, run with `threads` and the pipeline off.
    private func bits(_ graph: Graph, _ feeds: [String: Tensor], threads: Int, opset: Int = 17) throws -> [String: [UInt32]] {
        let session = try Session(model: Model(graph: graph, opsetImports: ["": opset]),
                                  options: SessionOptions(threads: threads, optimizingPasses: false))
        return try session.run(feeds).mapValues { t in
            Array(UnsafeBufferPointer(start: t.pointer(Float.self), count: t.count)).map(\.bitPattern)
        }
    }

    /// The pass on each producer, the product read by the residual stream too (it stays an output) or
    /// by the LayerNorm alone (normalised in place): the LayerNorm's output has the bits of the
    /// LayerNormalization kernel's, at 1, 2 and 3 threads, and those bits do not depend on the thread
    /// count. The sizes run FusedMatMul both ways (a small product's epilogue after its GEMM, a tall
    /// one's per block of rows) and the MixFFN band by band, with a ragged last band.
    func testLayerNormBecomesTheProducersSecondOutputWithTheSameBits() throws {
        for (producer, height, width) in [(Producer.matMul, 4, 6), (.matMul, 50, 100), (.mixFFN, 5, 7), (.mixFFN, 40, 30)] {
            for residualStream in [true, false] {
                let what = "\(producer) \(height)×\(width), residual stream \(residualStream)"
                let original = graph(producer, height: height, width: width, residualStream: residualStream)
                let (rewritten, report) = try PassTest.optimize(original, [.fuseLayerNormIntoProducer])
                XCTAssertNil(rewritten.opCounts[OpType.layerNormalization], "\(what): \(report)")
                let fused = try XCTUnwrap(rewritten.nodes.first { $0.attributes[ProducerLayerNorm.epsilonAttribute] != nil }, what)
                XCTAssertEqual(fused.outputs.count, 2, what)
                XCTAssertEqual(fused.outputs[0].isEmpty, !residualStream, "the product stays an output while the residual stream reads it: \(what)")
                XCTAssertEqual(try fused.float(ProducerLayerNorm.epsilonAttribute), 1e-6, what)
                let feeds = feeds(rows: height * width)
                var fusedBits: [[String: [UInt32]]] = []
                for threads in [1, 2, 3] {
                    let expected = try bits(original, feeds, threads: threads)
                    fusedBits.append(try bits(rewritten, feeds, threads: threads))
                    XCTAssertEqual(fusedBits.last!, expected, "\(what), \(threads) threads")
                }
                XCTAssertEqual(fusedBits[0], fusedBits[1], "1 vs 2 threads: \(what)")
                XCTAssertEqual(fusedBits[0], fusedBits[2], "1 vs 3 threads: \(what)")
            }
        }
    }

    /// The LayerNorm against its definition in Double, so the test does not rest on the kernel alone.
    func testNormalisedRowsMatchTheDefinition() throws {
        let original = graph(.matMul, height: 3, width: 5, residualStream: false)
        let (rewritten, _) = try PassTest.optimize(original, [.fuseLayerNormIntoProducer])
        let feeds = feeds(rows: 15)
        let y = try Session(model: Model(graph: rewritten, opsetImports: ["": 17])).run(feeds)[original.outputs[0].name]!
        let (xs, rs) = (try feeds["x"]!.doubles(), try feeds["r"]!.doubles())
        let (w, c) = (try NNTest.tensor([channels, channels], seed: 2).doubles(), try NNTest.tensor([channels], seed: 3).doubles())
        let gamma = NNTest.values(channels, seed: 9).map { 1 + Double($0) / 2 }, beta = try NNTest.tensor([channels], seed: 10).doubles()
        var expected: [Double] = []
        for i in 0..<15 {
            let row = (0..<channels).map { j in
                (0..<channels).reduce(c[j] + rs[i * channels + j]) { $0 + xs[i * channels + $1] * w[$1 * channels + j] }
            }
            let mean = row.reduce(0, +) / Double(channels)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(channels)
            expected += row.indices.map { (row[$0] - mean) / (variance + 1e-6).squareRoot() * gamma[$0] + beta[$0] }
        }
        try NNTest.assertClose(y, expected, shape: [1, 15, channels], tolerance: 1e-4)
    }

    /// The forms a LayerNorm also takes: without a bias, and the fused domain's below opset 17 (what
    /// fuse-layer-normalization writes for older exports), with the axis given as the last one.
    func testNoBiasAndTheFusedDomainsLayerNorm() throws {
        let forms = [(Norm(bias: false), 17),
                     (Norm(domain: fusedDomain, attributes: ["axis": .int(2), "epsilon": .float(1e-5)]), 12)]
        for (norm, opset) in forms {
            let original = graph(.mixFFN, height: 6, width: 4, norm: norm)
            let (rewritten, report) = try PassTest.optimize(original, [.fuseLayerNormIntoProducer], opset: opset)
            XCTAssertNil(rewritten.nodes.first { $0.opType == OpType.layerNormalization }, "\(report)")
            let feeds = feeds(rows: 24)
            XCTAssertEqual(try bits(rewritten, feeds, threads: 2, opset: opset), try bits(original, feeds, threads: 2, opset: opset), "\(norm)")
        }
    }

    /// Anything else stays as it is: a LayerNorm over another axis, with another stash_type, whose Mean
    /// is read, whose scale only broadcasts to the row; a product written transposed; a producer that is
    /// not fused (a plain MatMul).
    func testNearMissesAreLeftAlone() throws {
        let misses: [(String, Graph)] = [
            ("axis 1", graph(.matMul, height: 4, width: 4, norm: Norm(attributes: ["axis": .int(1)]))),
            ("stash_type 11", graph(.matMul, height: 4, width: 4, norm: Norm(attributes: ["stash_type": .int(11)]))),
            ("Mean read", graph(.matMul, height: 4, width: 4, norm: Norm(meanAlsoOutput: true))),
            ("scale [1, C]", graph(.matMul, height: 4, width: 4, norm: Norm(scaleShape: [1, channels]))),
            ("transposed output", graph(.transposedMatMul, height: 8, width: 8)),
        ]
        for (what, original) in misses {
            let (rewritten, report) = try PassTest.optimize(original, [.fuseLayerNormIntoProducer])
            XCTAssertEqual(report.passes.map(\.changedGraph), [false], "\(what): \(report)")
            XCTAssertEqual(rewritten.opCounts[OpType.layerNormalization], 1, what)
        }
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [2, 5, channels])]))
        let product = b.add1(OpType.matMul, ["x", b.constant(NNTest.tensor([channels, channels], seed: 2))])
        b.add(OpType.layerNormalization, [product, b.constant(NNTest.tensor([channels], seed: 3))], writing: "y")
        var plain = b.graph
        plain.outputs = [PassTest.output("y")]
        let (_, report) = try PassTest.optimize(plain, [.fuseLayerNormIntoProducer])
        XCTAssertEqual(report.passes.map(\.changedGraph), [false], "a MatMul is no fused producer: \(report)")
    }

    /// A carried LayerNorm whose scale does not fit the rows is one error naming the node, not a crash.
    func testScaleThatDoesNotFitTheRowsIsAnError() throws {
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [1, 4, channels])]))
        b.add(OpType.fusedMatMul, domain: fusedDomain, ["x", b.constant(NNTest.tensor([channels, channels], seed: 2)), "", "",
                                                        b.constant(NNTest.tensor([channels + 1], seed: 3))],
              attributes: [ProducerLayerNorm.epsilonAttribute: .float(1e-6)], writing: ["", "y"])
        var g = b.graph
        g.outputs = [PassTest.output("y")]
        let session = try Session(model: Model(graph: g, opsetImports: ["": 17]), options: SessionOptions(optimizingPasses: false))
        XCTAssertThrowsError(try session.run(["x": NNTest.tensor([1, 4, channels], seed: 4)])) { e in
            XCTAssertTrue("\(e)".contains("FusedMatMul") && "\(e)".contains("LayerNorm scale"), "\(e)")
        }
    }
}
