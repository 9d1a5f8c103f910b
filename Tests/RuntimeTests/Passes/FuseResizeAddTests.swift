import XCTest
import GraphIR
@testable import Runtime

final class FuseResizeAddTests: XCTestCase {
    private let fusedName = fusedDomain + "." + OpType.resizeAdd

    /// y = Relu((Resize(a → 8×10) + s) + c): a [batch,3,4,5] resized by sizes computed from Shape(s),
    /// s [batch,3,8,10], c a per-channel constant of `biasShape` — SegFormer's decode-head sum.
    private func graph(mode: String = "linear", transform: String = "half_pixel", addendShape: [Dim]? = nil,
                       biasShape: [Int]? = [3, 1, 1], relu: Bool = true, resizedAlsoOutput: Bool = false) -> Graph {
        let sShape: [Dim] = addendShape ?? [.symbol("batch"), .known(3), .known(8), .known(10)]
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("a", [.symbol("batch"), .known(3), .known(4), .known(5)]),
                                                   PassTest.input("s", sShape)]))
        let nc = b.add1("Slice", [b.add1("Shape", ["a"]), b.int64s([0]), b.int64s([2]), b.int64s([0])])
        let sizes = b.add1("Concat", [nc, b.int64s([8, 10])], attributes: ["axis": .int(0)])
        var attributes: [String: Attribute] = ["mode": .string(mode), "coordinate_transformation_mode": .string(transform)]
        var roi = ""
        if transform == "tf_crop_and_resize" {
            roi = b.constant(Tensor([Float(0), 0, 0.25, -0.2, 1, 1, 0.9, 1.1], shape: [8]))
            attributes["extrapolation_value"] = .float(-3)
        }
        let resized = b.add1("Resize", ["a", roi, "", sizes], attributes: attributes)
        var sum = b.add1("Add", ["s", resized])
        if let biasShape { sum = b.add1("Add", [sum, b.constant(NNTest.tensor(biasShape, seed: 3))]) }
        b.add(relu ? "Relu" : "Identity", [sum], writing: "y")
        var g = b.graph
        g.outputs = [PassTest.output("y")] + (resizedAlsoOutput ? [PassTest.output(resized)] : [])
        return g
    }

    private func feeds(addend: [Int] = [2, 3, 8, 10]) -> [String: Tensor] {
        ["a": NNTest.tensor([2, 3, 4, 5], seed: 1), "s": NNTest.tensor(addend, seed: 2)]
    }

    func testResizeAddBiasAndReluBecomeOneNodeWithTheSameBits() throws {
        for (mode, transform) in [("linear", "half_pixel"), ("linear", "align_corners"), ("cubic", "half_pixel"),
                                  ("nearest", "asymmetric"), ("linear", "tf_crop_and_resize")] {
            let original = graph(mode: mode, transform: transform)
            let (rewritten, report) = try PassTest.optimize(original, [.fuseResizeAdd])
            XCTAssertEqual(rewritten.nodes.filter { $0.opType != "Shape" && $0.opType != "Slice" && $0.opType != "Concat" }.map(\.opName),
                           [fusedName], "\(mode) \(transform): \(report)")
            XCTAssertEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds()), 0,
                           "\(mode) \(transform): the kernel does the nodes' own float operations")
        }
    }

    /// Without a bias or Relu after it, the Add alone is taken in; an identity resize (same size) too.
    func testPlainAddIsFusedAlone() throws {
        let original = graph(biasShape: nil, relu: false)
        let (rewritten, report) = try PassTest.optimize(original, [.fuseResizeAdd])
        XCTAssertEqual(report.passes.map(\.description), ["fuse-resize-add: -1 Add, -1 Resize, +1 \(fusedName)"])
        XCTAssertEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds()), 0)
    }

    func testNearMissesAreLeftAlone() throws {
        // An addend that broadcasts, and a resized value that is also a graph output: no fusion.
        for original in [graph(addendShape: [.symbol("batch"), .known(3), .known(1), .known(10)]), graph(resizedAlsoOutput: true)] {
            let (_, report) = try PassTest.optimize(original, [.fuseResizeAdd])
            XCTAssertFalse(report.passes[0].changedGraph, "\(report)")
        }
        // A constant that is not one value per channel stays its own Add (and so does the Relu after it).
        let original = graph(biasShape: [1, 1, 10])
        let (rewritten, report) = try PassTest.optimize(original, [.fuseResizeAdd])
        XCTAssertEqual(report.passes.map(\.description), ["fuse-resize-add: -1 Add, -1 Resize, +1 \(fusedName)"])
        XCTAssertEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds()), 0)
    }

    /// The planes are split over the threads; each is computed the same way whichever thread takes it.
    func testSameBitsAtOneAndTwoThreads() throws {
        let (rewritten, _) = try PassTest.optimize(graph(), [.fuseResizeAdd])
        var results: [[UInt32]] = []
        for threads in [1, 2, 2] {
            let session = try Session(model: Model(graph: rewritten, opsetImports: ["": 17]),
                                      options: SessionOptions(threads: threads, optimizingPasses: false))
            let y = try session.run(feeds())["y"]!
            results.append(Array(UnsafeBufferPointer(start: y.pointer(Float.self), count: y.count)).map(\.bitPattern))
        }
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], results[2])
    }
    /// In a gradient graph the backward reads the shapes of the resized map and of the sum: the
    /// gradient-graph form fuses anyway and gives those Shape nodes the fused output (the same shape);
    /// the inference form leaves such a graph alone.
    func testGradientGraphFormRewiresTheShapeReaders() throws {
        var original = graph(biasShape: nil, relu: false)
        let resized = try XCTUnwrap(original.nodes.first { $0.opType == OpType.resize }?.outputs[0])
        let sum = try XCTUnwrap(original.nodes.first { $0.opType == OpType.add }?.outputs[0])
        original.nodes.append(Node(name: "resized_shape", opType: OpType.shape, inputs: [resized], outputs: ["resized_shape"]))
        original.nodes.append(Node(name: "sum_shape", opType: OpType.shape, inputs: [sum], outputs: ["sum_shape"]))
        original.outputs += [PassTest.output("resized_shape"), PassTest.output("sum_shape")]
        let (rewritten, report) = try PassTest.optimize(original, [.fuseResizeAddInGradientGraph])
        XCTAssertEqual(report.passes.map(\.description),
                       ["fuse-resize-add-in-gradient-graph: -1 Add, -1 Resize, -1 Shape, +1 Shape, +1 \(fusedName)"])
        XCTAssertEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds()), 0)
        let (_, inference) = try PassTest.optimize(original, [.fuseResizeAdd])
        XCTAssertFalse(inference.passes[0].changedGraph, "\(inference)")
    }
}
