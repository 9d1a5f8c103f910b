import XCTest
import GraphIR
@testable import Runtime

final class FuseResizeSumTests: XCTestCase {
    private let fusedName = fusedDomain + "." + OpType.resizeSum

    /// SegFormer's decode-head sum in small: token matrices t1 [batch, 80, 3] (an 8×10 image), t2
    /// [batch, 20, 3] (4×5) and t3 [batch, 6, 3] (2×3), each laid out as NCHW by Transpose + Reshape to a
    /// computed target, resized to 8×10 by sizes computed from the image's Shape, summed left to right,
    /// then a per-channel bias and Relu; optionally a 1×1 classifier conv (4 classes) after it.
    private func graph(mode: String = "linear", transform: String = "half_pixel", identity: String = "resize",
                       bias: Bool = true, relu: Bool = true, classifier: Bool = false, oddAttributes: Bool = false,
                       resizedAlsoOutput: Bool = false, allowZero: Bool = false) -> Graph {
        let batch = Dim.symbol("batch")
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("t1", [batch, .known(80), .known(3)]),
                                                   PassTest.input("t2", [batch, .known(20), .known(3)]),
                                                   PassTest.input("t3", [batch, .known(6), .known(3)])]))
        var resizedValues: [String] = []
        func term(_ tokens: String, _ h: Int, _ w: Int, resize: Bool, odd: Bool = false) -> String {
            let n = b.add1("Slice", [b.add1("Shape", [tokens]), b.int64s([0]), b.int64s([1]), b.int64s([0])])
            let target = b.add1("Concat", [n, b.int64s([-1, h, w])], attributes: ["axis": .int(0)])
            let image = b.add1("Reshape", [b.add1("Transpose", [tokens], attributes: ["perm": .ints([0, 2, 1])]), target],
                               attributes: allowZero ? ["allowzero": .int(1)] : [:])
            guard resize else { return image }
            let nc = b.add1("Slice", [b.add1("Shape", [image]), b.int64s([0]), b.int64s([2]), b.int64s([0])])
            let sizes = b.add1("Concat", [nc, b.int64s([8, 10])], attributes: ["axis": .int(0)])
            let attributes: [String: Attribute] = ["mode": .string(mode), "coordinate_transformation_mode": .string(odd ? "asymmetric" : transform)]
            let resized = b.add1("Resize", [image, "", "", sizes], attributes: attributes)
            resizedValues.append(resized)
            return resized
        }
        let first = term("t1", 8, 10, resize: identity == "resize")
        var sum = b.add1("Add", [term("t2", 4, 5, resize: true), first])
        sum = b.add1("Add", [sum, term("t3", 2, 3, resize: true, odd: oddAttributes)])
        if bias { sum = b.add1("Add", [b.constant(NNTest.tensor([3, 1, 1], seed: 3)), sum]) }
        if relu { sum = b.add1("Relu", [sum]) }
        if classifier {
            b.add("Conv", [sum, b.constant(NNTest.tensor([4, 3, 1, 1], seed: 4)), b.constant(NNTest.tensor([4], seed: 5))],
                  writing: "y")
        } else {
            b.add("Identity", [sum], writing: "y")
        }
        var g = b.graph
        g.outputs = [PassTest.output("y")] + (resizedAlsoOutput ? [PassTest.output(resizedValues[0])] : [])
        return g
    }

    private let feeds = ["t1": NNTest.tensor([2, 80, 3], seed: 1), "t2": NNTest.tensor([2, 20, 3], seed: 2),
                         "t3": NNTest.tensor([2, 6, 3], seed: 6)]

    private func fusedOps(_ g: Graph) -> [String] {
        g.nodes.map(\.opName).filter { !["Shape", "Slice", "Concat", "Gather", "Reshape", "Identity"].contains($0) }
    }

    func testSumOfResizedTokenImagesBecomesOneChannelsLastNodeWithTheSameBits() throws {
        for (mode, transform) in [("linear", "half_pixel"), ("linear", "align_corners"), ("cubic", "half_pixel"),
                                  ("nearest", "asymmetric")] {
            for identity in ["resize", "none"] {
                let original = graph(mode: mode, transform: transform, identity: identity)
                let (rewritten, report) = try PassTest.optimize(original, [.fuseResizeSum])
                XCTAssertEqual(fusedOps(rewritten), [fusedName, "Transpose"], "\(mode) \(transform) \(identity): \(report)")
                XCTAssertEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds), 0,
                               "\(mode) \(transform) \(identity): the kernel does the nodes' own float operations")
            }
        }
    }

    /// Exporters that write Reshape with allowzero (torch.onnx's dynamo path): the view keeps it.
    func testReshapeWithAllowZero() throws {
        let original = graph(allowZero: true)
        let (rewritten, report) = try PassTest.optimize(original, [.fuseResizeSum])
        XCTAssertEqual(fusedOps(rewritten), [fusedName, "Transpose"], "\(report)")
        XCTAssertEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds), 0)
    }

    func testWithoutBiasOrRelu() throws {
        for (bias, relu) in [(false, false), (true, false), (false, true)] {
            let original = graph(bias: bias, relu: relu)
            let (rewritten, report) = try PassTest.optimize(original, [.fuseResizeSum])
            XCTAssertEqual(fusedOps(rewritten), [fusedName, "Transpose"], "\(report)")
            XCTAssertEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds), 0)
        }
    }

    /// The classifier after the sum becomes its projection: each band of rows goes through the 1×1
    /// convolution while in cache, written NCHW.
    func testClassifierAfterTheSumBecomesItsProjection() throws {
        let original = graph(classifier: true)
        let (rewritten, report) = try PassTest.optimize(original, [.fuseResizeSum, .pointwiseConvOverChannelsLast, .fuseMatMulEpilogue])
        XCTAssertEqual(fusedOps(rewritten), [fusedName], "\(report)")
        // The GEMM adds the same products in another order: equal up to float rounding.
        XCTAssertLessThan(try PassTest.maxDifference(original, rewritten, feeds: feeds), 1e-5)
        for threads in [1, 2, 3] {
            let a = try run(rewritten, threads: threads), b = try run(rewritten, threads: 2)
            XCTAssertEqual(a, b, "threads \(threads): bands are fixed by the shape")
        }
    }

    /// A 1×1 convolution of an NHWC tensor seen as NCHW (not a ResizeSum's): a transposed product.
    func testPointwiseConvOfChannelsLastTensorBecomesATransposedProduct() throws {
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [.symbol("batch"), .known(8), .known(10), .known(3)])]))
        let nchw = b.add1("Transpose", ["x"], attributes: ["perm": .ints([0, 3, 1, 2])])
        b.add("Conv", [nchw, b.constant(NNTest.tensor([4, 3, 1, 1], seed: 4)), b.constant(NNTest.tensor([4], seed: 5))], writing: "y")
        var original = b.graph
        original.outputs = [PassTest.output("y")]
        let (rewritten, report) = try PassTest.optimize(original, [.pointwiseConvOverChannelsLast, .fuseMatMulEpilogue])
        XCTAssertEqual(fusedOps(rewritten), [fusedDomain + "." + OpType.fusedMatMul], "\(report)")
        let product = try XCTUnwrap(rewritten.nodes.first { $0.opType == OpType.fusedMatMul })
        XCTAssertEqual(try product.int("transposeOutput", default: 0), 1)
        XCTAssertLessThan(try PassTest.maxDifference(original, rewritten, feeds: ["x": NNTest.tensor([2, 8, 10, 3], seed: 9)]), 1e-5)
    }

    private func run(_ g: Graph, threads: Int) throws -> [UInt32] {
        let session = try Session(model: Model(graph: g, opsetImports: ["": 17]),
                                  options: SessionOptions(threads: threads, optimizingPasses: false))
        let y = try session.run(feeds)["y"]!
        return Array(UnsafeBufferPointer(start: y.pointer(Float.self), count: y.count)).map(\.bitPattern)
    }

    func testNearMissesAreLeftAlone() throws {
        // Terms resized with different attributes, and a resized value that is also a graph output.
        for original in [graph(oddAttributes: true), graph(resizedAlsoOutput: true)] {
            let (_, report) = try PassTest.optimize(original, [.fuseResizeSum])
            XCTAssertFalse(report.passes[0].changedGraph, "\(report)")
        }
    }

    /// Output rows are split over the threads; each is computed the same way whichever thread takes it.
    func testSameBitsAtOneTwoAndThreeThreads() throws {
        let (rewritten, _) = try PassTest.optimize(graph(), [.fuseResizeSum])
        let results = try [1, 2, 3, 2].map { try run(rewritten, threads: $0) }
        for r in results.dropFirst() { XCTAssertEqual(results[0], r) }
    }

    /// Terms that resize to different sizes are an error naming the node, not a wrong sum.
    func testTermsOfDifferentSizesAreAClearError() throws {
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("a", [1, 4, 5, 3]), PassTest.input("c", [1, 2, 3, 3])]))
        b.add(OpType.resizeSum, domain: fusedDomain, ["", "", "", "a", "", "", b.int64s([1, 3, 8, 10]), "c", "", "", b.int64s([1, 3, 8, 9])],
              attributes: ["mode": .string("linear"), "layout": .string("NHWC")], writing: "y")
        var g = b.graph
        g.outputs = [PassTest.output("y")]
        let session = try Session(model: Model(graph: g, opsetImports: ["": 17]), options: SessionOptions(threads: 1, optimizingPasses: false))
        XCTAssertThrowsError(try session.run(["a": NNTest.tensor([1, 4, 5, 3], seed: 1), "c": NNTest.tensor([1, 2, 3, 3], seed: 2)])) {
            XCTAssertTrue("\($0)".contains("ResizeSum term 1 resizes to [1, 3, 8, 9]"), "\($0)")
        }
    }
}
