import Foundation
import XCTest
import GraphIR
@testable import Runtime

final class FuseTokenDepthwiseConvTests: XCTestCase {
    private let fusedName = fusedDomain + "." + OpType.tokenDepthwiseConv

    /// How the MixFFN convolution is written; the defaults are the opset-17 export of HF's
    /// SegformerDWConv followed by its GELU.
    private struct Form {
        var channels = 70              // more than one 64-channel block of the kernel, and a ragged one
        var kernel = (3, 3)
        var group: Int? = nil          // nil: one group per channel
        var strides = [1, 1]
        var pads: [Int]? = nil         // nil: (K − 1)/2 on every side
        var perm = [0, 2, 1]
        var target: [Int]? = nil       // a constant NCHW target in place of the one computed from shapes
                                       // (its channel count is the conv's)
        var flattenByShape = true      // Shape → Slice → Concat(-1) → Reshape, as the exporter; else a constant [0, C, -1]
        var gelu: (domain: String, approximate: String)? = (fusedDomain, "none")
        var transposedAlsoOutput = false
        var convShapeAlsoOutput = false
        var projection = false         // then MixFFN's fc2: · P [C, 20] + c + residual input r
    }

    /// tokens [batch, N, C] and an image [batch, 1, h, w] whose spatial size is H × W (N = H·W, all
    /// symbolic) → Transpose → Reshape [batch, C, h, w] → Conv → Reshape [batch, C, N] → Transpose
    /// → Gelu → y.
    private func graph(_ f: Form = Form()) -> Graph {
        let (kh, kw) = f.kernel
        let b = GraphBuilder(graph: Graph(inputs: [
            PassTest.input("x", [.symbol("batch"), .symbol("tokens"), .known(f.channels)]),
            PassTest.input("image", [.symbol("batch"), .known(1), .symbol("h"), .symbol("w")])]
            + (f.projection ? [PassTest.input("r", [.symbol("batch"), .symbol("tokens"), .known(20)])] : [])))
        func dim(_ value: String, _ axis: Int) -> String {
            let shape = b.add1("Shape", [value])
            return b.add1("Unsqueeze", [b.add1("Gather", [shape, b.constant(Tensor(scalar: Int64(axis)))]), b.int64s([0])])
        }
        let target = f.target.map { b.int64s($0) }
            ?? b.add1("Concat", [dim("x", 0), dim("x", 2), dim("image", 2), dim("image", 3)], attributes: ["axis": .int(0)])
        let transposed = b.add1("Transpose", ["x"], attributes: ["perm": .ints(f.perm)])
        let planes = b.add1("Reshape", [transposed, target])
        let channels = f.target?[1] ?? f.channels, group = f.group ?? channels
        let weight = b.constant(NNTest.tensor([channels, channels / group, kh, kw], seed: 3))
        let conv = b.add1("Conv", [planes, weight, b.constant(NNTest.tensor([channels], seed: 4))], attributes: [
            "group": .int(group), "kernel_shape": .ints([kh, kw]), "strides": .ints(f.strides),
            "pads": .ints(f.pads ?? [(kh - 1) / 2, (kw - 1) / 2, (kh - 1) / 2, (kw - 1) / 2]), "dilations": .ints([1, 1])])
        let merged: String
        if f.flattenByShape {
            let leading = b.add1("Slice", [b.add1("Shape", [conv]), b.int64s([0]), b.int64s([2]), b.int64s([0])])
            merged = b.add1("Reshape", [conv, b.add1("Concat", [leading, b.int64s([-1])], attributes: ["axis": .int(0)])])
        } else {
            merged = b.add1("Reshape", [conv, b.int64s([0, f.channels, -1])])
        }
        let back = b.add1("Transpose", [merged], attributes: ["perm": .ints(f.perm)])
        if f.projection, let gelu = f.gelu {
            let hidden = b.add1("Gelu", domain: gelu.domain, [back], attributes: ["approximate": .string(gelu.approximate)])
            let product = b.add1("MatMul", [hidden, b.constant(NNTest.tensor([f.channels, 20], seed: 5))])
            b.add("Add", [b.add1("Add", [product, b.constant(NNTest.tensor([20], seed: 6))]), "r"], writing: "y")
        } else if let gelu = f.gelu {
            b.add("Gelu", domain: gelu.domain, [back], attributes: ["approximate": .string(gelu.approximate)], writing: "y")
        } else {
            b.add("Identity", [back], writing: "y")
        }
        let convShape = f.convShapeAlsoOutput ? b.add1("Shape", [conv]) : nil
        var g = b.graph
        g.outputs = [PassTest.output("y")]
        if f.transposedAlsoOutput { g.outputs.append(PassTest.output(transposed)) }
        if let convShape { g.outputs.append(ValueInfo(name: convShape, type: TensorType(.int64, nil))) }
        return g
    }

    private func feeds(channels: Int = 70, batch: Int = 2, height: Int = 5, width: Int = 7) -> [String: Tensor] {
        // Values in [-4, 4): the conv sums land on both sides of GELU's bend and in its negative tail.
        ["x": Tensor(NNTest.values(batch * height * width * channels, seed: 11).map { 4 * $0 }, shape: [batch, height * width, channels]),
         "image": Tensor([Float](repeating: 0, count: batch * height * width), shape: [batch, 1, height, width])]
    }

    /// The definition in Double: a zero-padded depthwise window sum per channel, plus bias, then GELU.
    private func reference(_ x: Tensor, height: Int, width: Int, kernel: (Int, Int), gelu: Bool) throws -> [Double] {
        let (batch, tokens, c) = (x.shape[0], x.shape[1], x.shape[2]), (kh, kw) = kernel
        let xs = try x.doubles(), ws = try NNTest.tensor([c, 1, kh, kw], seed: 3).doubles()
        let bs = try NNTest.tensor([c], seed: 4).doubles()
        var y = [Double](repeating: 0, count: x.count)
        for n in 0..<batch { for h in 0..<height { for w in 0..<width { for ch in 0..<c {
            var s = bs[ch]
            for i in 0..<kh { for j in 0..<kw {
                let (ih, iw) = (h + i - (kh - 1) / 2, w + j - (kw - 1) / 2)
                guard ih >= 0, ih < height, iw >= 0, iw < width else { continue }
                s += ws[(ch * kh + i) * kw + j] * xs[(n * tokens + ih * width + iw) * c + ch]
            } }
            y[(n * tokens + h * width + w) * c + ch] = gelu ? 0.5 * s * (1 + erf(s / 2.0.squareRoot())) : s
        } } } }
        return y
    }

    func testMixFFNConvolutionAndGeluBecomeOneNode() throws {
        for (opset, gelu) in [(17, (fusedDomain, "none")), (20, ("", "none"))] {
            let original = graph(Form(gelu: gelu))
            let (rewritten, report) = try PassTest.optimize(original, [.fuseTokenDepthwiseConv], opset: opset)
            let ops = rewritten.opCounts
            XCTAssertEqual(ops[fusedName], 1, "\(report)")
            for gone in ["Conv", "Transpose", "Gelu", fusedDomain + ".Gelu"] { XCTAssertNil(ops[gone], "\(gone): \(report)") }
            XCTAssertEqual(try rewritten.nodes.first { $0.opType == OpType.tokenDepthwiseConv }?.string("activation"), "Gelu")
            let feeds = feeds()
            let y = try Session(model: Model(graph: rewritten, opsetImports: ["": opset])).run(feeds)["y"]!
            try NNTest.assertClose(y, try reference(feeds["x"]!, height: 5, width: 7, kernel: (3, 3), gelu: true),
                                   shape: [2, 35, 70], tolerance: 1e-5)
            XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds, opset: opset), 1e-5, "opset \(opset)")
        }
    }

    /// No GELU after it, a 5×3 kernel, a constant flatten shape with 0 and -1: still the depthwise conv
    /// over tokens; images of one row or column (every tap at an edge) too.
    /// MixFFN's fc2 after the conv: the product, its bias and the residual go into the fused node,
    /// computed band by band of rows; the same sums in a GEMM's order, and the same bits at any thread count.
    func testNextProductIsTakenInBandByBand() throws {
        let original = graph(Form(projection: true))
        let (rewritten, report) = try PassTest.optimize(original, [.fuseTokenDepthwiseConv, .fuseMatMulEpilogue, .fuseTokenDepthwiseProjection])
        XCTAssertEqual(rewritten.nodes.map(\.opName).filter { !["Shape", "Slice", "Concat", "Gather", "Unsqueeze"].contains($0) },
                       [fusedName], "\(report)")
        for (height, width) in [(5, 7), (40, 30)] {   // one band; several bands and a ragged last one
            var f = feeds(height: height, width: width)
            f["r"] = NNTest.tensor([2, height * width, 20], seed: 12)
            XCTAssertLessThan(try PassTest.maxDifference(original, rewritten, feeds: f), 1e-4, "\(height)×\(width)")
            var bits: [[UInt32]] = []
            for threads in [1, 2, 3] {
                let session = try Session(model: Model(graph: rewritten, opsetImports: ["": 17]),
                                          options: SessionOptions(threads: threads, optimizingPasses: false))
                let y = try session.run(f)["y"]!
                bits.append(Array(UnsafeBufferPointer(start: y.pointer(Float.self), count: y.count)).map(\.bitPattern))
            }
            XCTAssertEqual(bits[0], bits[1])
            XCTAssertEqual(bits[0], bits[2])
        }
    }

    func testOtherOddKernelsWithoutActivationAndThinImages() throws {
        let original = graph(Form(kernel: (5, 3), flattenByShape: false, gelu: nil))
        let (rewritten, report) = try PassTest.optimize(original, [.fuseTokenDepthwiseConv])
        XCTAssertEqual(rewritten.opCounts[fusedName], 1, "\(report)")
        XCTAssertNil(try rewritten.nodes.first { $0.opType == OpType.tokenDepthwiseConv }?.string("activation"))
        for (height, width) in [(5, 7), (1, 9), (6, 1), (1, 1)] {
            let feeds = feeds(height: height, width: width)
            let y = try Session(model: Model(graph: rewritten, opsetImports: ["": 17])).run(feeds)["y"]!
            try NNTest.assertClose(y, try reference(feeds["x"]!, height: height, width: width, kernel: (5, 3), gelu: false),
                                   shape: [2, height * width, 70], tolerance: 1e-5)
        }
    }

    /// The fused kernel sums each output in the order of the NCHW depthwise kernel it replaces, with no
    /// fused multiply-add, and its GELU is the Gelu kernel's: the same bits as the unfused graph, for
    /// 3×3 windows inside the image, at its edges, and for other odd kernels, on images down to 1×1.
    /// (Training relies on it: its forward pass keeps the unfused graph's bits.)
    func testSameBitsAsTheUnfusedGraph() throws {
        for (kernel, gelu) in [((3, 3), true), ((3, 3), false), ((5, 3), false), ((3, 5), true)] {
            let original = graph(Form(kernel: kernel, gelu: gelu ? (fusedDomain, "none") : nil))
            let (rewritten, report) = try PassTest.optimize(original, [.fuseTokenDepthwiseConv])
            XCTAssertEqual(rewritten.opCounts[fusedName], 1, "\(report)")
            for (height, width) in [(5, 7), (24, 20), (3, 3), (2, 2), (1, 9), (6, 1), (1, 1)] {
                let f = feeds(height: height, width: width)
                var bits: [[UInt32]] = []
                for g in [original, rewritten] {
                    let session = try Session(model: Model(graph: g, opsetImports: ["": 17]),
                                              options: SessionOptions(threads: 2, optimizingPasses: false))
                    let y = try session.run(f)["y"]!
                    bits.append(Array(UnsafeBufferPointer(start: y.pointer(Float.self), count: y.count)).map(\.bitPattern))
                }
                XCTAssertEqual(bits[0], bits[1], "kernel \(kernel), GELU \(gelu), \(height)×\(width)")
            }
        }
    }

    /// Rows are split over the threads in fixed chunks and every output is one thread's: the same bits at
    /// 1 and 2 threads and from run to run.
    func testBitIdenticalAcrossRunsAndThreadCounts() throws {
        let graph = graph(Form(channels: 128))
        let feeds = feeds(channels: 128, batch: 2, height: 24, width: 20)
        var results: [[UInt32]] = []
        for threads in [2, 2, 1] {
            let session = try Session(model: Model(graph: graph, opsetImports: ["": 17]), options: SessionOptions(threads: threads))
            XCTAssertEqual(session.compiled.graph.opCounts[fusedName], 1)
            let y = try session.run(feeds)["y"]!
            results.append(Array(UnsafeBufferPointer(start: y.pointer(Float.self), count: y.count)).map(\.bitPattern))
        }
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], results[2])
    }

    /// The conv's shape also read for a graph output: that Shape reads the conv's input instead (the
    /// same shape), and the result is unchanged.
    func testShapeReadersOfTheConvOutputMoveToItsInput() throws {
        let original = graph(Form(convShapeAlsoOutput: true))
        let (rewritten, report) = try PassTest.optimize(original, [.fuseTokenDepthwiseConv])
        XCTAssertEqual(rewritten.opCounts[fusedName], 1, "\(report)")
        XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds()), 1e-5)
    }

    /// Near misses stay as they are: not depthwise, strided, a size-changing padding, other perms, a
    /// Reshape that does not keep the channels, an intermediate read elsewhere. A tanh GELU stays a
    /// Gelu after the fused conv.
    func testNearMissesAreLeftAlone() throws {
        let nearMisses: [(String, Form)] = [
            ("group 1", Form(channels: 8, group: 1)),
            ("group 4 of 8 channels", Form(channels: 8, group: 4)),
            ("stride 2", Form(strides: [2, 2])),
            ("no padding", Form(pads: [0, 0, 0, 0])),
            ("asymmetric padding", Form(pads: [1, 1, 0, 0])),
            ("even kernel", Form(kernel: (2, 2), pads: [1, 1, 0, 0])),
            ("perm (1, 0, 2)", Form(perm: [1, 0, 2])),
            ("channels into rows", Form(channels: 8, target: [2, 4, 10, 7])),
            ("transposed tokens read elsewhere", Form(transposedAlsoOutput: true)),
        ]
        for (what, form) in nearMisses {
            let (rewritten, report) = try PassTest.optimize(graph(form), [.fuseTokenDepthwiseConv])
            XCTAssertNil(rewritten.opCounts[fusedName], what)
            XCTAssertEqual(report.passes.map(\.description), ["fuse-token-depthwise-conv: no change"], what)
        }
        let (rewritten, _) = try PassTest.optimize(graph(Form(gelu: (fusedDomain, "tanh"))), [.fuseTokenDepthwiseConv])
        XCTAssertEqual(rewritten.opCounts[fusedName], 1)
        XCTAssertEqual(rewritten.opCounts[fusedDomain + ".Gelu"], 1)
    }

    /// A shape input that does not split the tokens into rows and columns of the same batch and
    /// channels is one error naming the node.
    func testShapeThatDoesNotSplitTheTokensIsAnError() throws {
        let b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [1, 12, 4])]))
        b.add(OpType.tokenDepthwiseConv, domain: fusedDomain,
              ["x", b.constant(NNTest.tensor([4, 1, 3, 3], seed: 1)), b.int64s([1, 2, 4, 6])], writing: "y")
        var g = b.graph
        g.outputs = [PassTest.output("y")]
        let session = try Session(model: Model(graph: g, opsetImports: ["": 17]), options: SessionOptions(optimizingPasses: false))
        XCTAssertThrowsError(try session.run(["x": NNTest.tensor([1, 12, 4], seed: 2)])) { error in
            XCTAssertTrue("\(error)".contains("TokenDepthwiseConv shape [1, 2, 4, 6] does not split"), "\(error)")
        }
    }
}
