import XCTest
import GraphIR
@testable import Runtime

final class FuseConvToTokensTests: XCTestCase {
    private let fusedName = fusedDomain + "." + OpType.channelsLastConv

    /// Where the conv's NCHW input comes from.
    private enum Source {
        case image                  // a graph input x [batch, C, h, w]
        case channelsLastImage      // x [batch, h, w, C] → Transpose(0, 3, 1, 2), as stages 2–4's patch embeddings
        case tokens(constantTarget: Bool)   // x [batch, h·w, C] → Transpose(0, 2, 1) → Reshape [batch, C, h, w], as the
                                            // spatial reductions; the target from shapes, or the constant [0, C, -1, w]
    }

    /// How the conv is written; the defaults are a SegFormer patch embedding (3×3, stride 2, pad 1).
    private struct Form {
        var source = Source.image
        var channels = 6, outputs = 20
        var kernel = 3, stride = 2, pad = 1, group = 1
        var bias = true
        var perm = [0, 2, 1]
        var flattenByShape = true      // Shape → Slice → Concat(-1) → Reshape, as the exporter; else a constant
        var flattenTarget = [0, 20, -1]
    }

    /// The image (x, per `source`) → Conv → Reshape [batch, M, OH·OW] → Transpose → y, with the
    /// conv's height and width also read through Shape (as HF's patch embedding returns them) → hw.
    /// h and w are symbolic; `grid` [1, 1, h, w] gives the tokens' Reshape its h and w.
    private func graph(_ f: Form = Form(), width: Int = 12) -> Graph {
        let (batch, c, h, w): (Dim, Dim, Dim, Dim) = (.symbol("batch"), .known(f.channels), .symbol("h"), .symbol("w"))
        let b: GraphBuilder, image: String
        switch f.source {
        case .image:
            b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [batch, c, h, w])]))
            image = "x"
        case .channelsLastImage:
            b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [batch, h, w, c])]))
            image = b.add1("Transpose", ["x"], attributes: ["perm": .ints([0, 3, 1, 2])])
        case .tokens(let constantTarget):
            b = GraphBuilder(graph: Graph(inputs: [PassTest.input("x", [batch, .symbol("tokens"), c]),
                                                   PassTest.input("grid", [.known(1), .known(1), h, w])]))
            func dim(_ value: String, _ axis: Int) -> String {
                b.add1("Unsqueeze", [b.add1("Gather", [b.add1("Shape", [value]), b.constant(Tensor(scalar: Int64(axis)))]), b.int64s([0])])
            }
            let target = constantTarget ? b.int64s([0, f.channels, -1, width])
                : b.add1("Concat", [dim("x", 0), dim("x", 2), dim("grid", 2), dim("grid", 3)], attributes: ["axis": .int(0)])
            image = b.add1("Reshape", [b.add1("Transpose", ["x"], attributes: ["perm": .ints([0, 2, 1])]), target])
        }
        let weight = b.constant(NNTest.tensor([f.outputs, f.channels / f.group, f.kernel, f.kernel], seed: 3))
        let bias = f.bias ? [b.constant(NNTest.tensor([f.outputs], seed: 4))] : []
        let conv = b.add1("Conv", [image, weight] + bias, attributes: [
            "group": .int(f.group), "kernel_shape": .ints([f.kernel, f.kernel]), "strides": .ints([f.stride, f.stride]),
            "pads": .ints([f.pad, f.pad, f.pad, f.pad])])
        let convShape = b.add1("Shape", [conv])
        b.add("Slice", [convShape, b.int64s([2]), b.int64s([4]), b.int64s([0])], writing: "hw")
        let target = f.flattenByShape
            ? b.add1("Concat", [b.add1("Slice", [b.add1("Shape", [conv]), b.int64s([0]), b.int64s([2]), b.int64s([0])]), b.int64s([-1])],
                     attributes: ["axis": .int(0)])
            : b.int64s(f.flattenTarget)
        let merged = b.add1("Reshape", [conv, target])
        b.add("Transpose", [merged], attributes: ["perm": .ints(f.perm)], writing: "y")
        var g = b.graph
        g.outputs = [PassTest.output("y"), ValueInfo(name: "hw", type: TensorType(.int64, nil))]
        return g
    }

    /// The image in NCHW, for the reference.
    private func image(_ f: Form, batch: Int, height: Int, width: Int) -> Tensor {
        NNTest.tensor([batch, f.channels, height, width], seed: 11)
    }

    /// The same image as the graph's inputs take it.
    private func feeds(_ f: Form = Form(), batch: Int = 2, height: Int = 9, width: Int = 12) throws -> [String: Tensor] {
        let x = image(f, batch: batch, height: height, width: width)
        func channelsLast() throws -> [Float] {
            let v = try x.doubles(), c = f.channels
            var out = [Float](repeating: 0, count: v.count)
            for n in 0..<batch { for ch in 0..<c { for p in 0..<(height * width) {
                out[(n * height * width + p) * c + ch] = Float(v[(n * c + ch) * height * width + p])
            } } }
            return out
        }
        switch f.source {
        case .image: return ["x": x]
        case .channelsLastImage: return ["x": Tensor(try channelsLast(), shape: [batch, height, width, f.channels])]
        case .tokens:
            return ["x": Tensor(try channelsLast(), shape: [batch, height * width, f.channels]),
                    "grid": Tensor([Float](repeating: 0, count: height * width), shape: [1, 1, height, width])]
        }
    }

    /// The definition in Double, written out: y[n, oh·OW + ow, m] = B[m] + Σ W[m, c, i, j]·x[n, g·C/G + c,
    /// oh·s − p + i, ow·s − p + j] over the taps inside the image (zero padding), g = m's group.
    private func reference(_ f: Form, _ x: Tensor) throws -> (values: [Double], shape: [Int]) {
        let (batch, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (k, s, p, m) = (f.kernel, f.stride, f.pad, f.outputs)
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1)
        let (cg, mg) = (c / f.group, m / f.group)
        let xs = try x.doubles(), ws = try NNTest.tensor([m, cg, k, k], seed: 3).doubles()
        let bs = f.bias ? try NNTest.tensor([m], seed: 4).doubles() : [Double](repeating: 0, count: m)
        var y = [Double](repeating: 0, count: batch * oh * ow * m)
        for n in 0..<batch { for r in 0..<oh { for q in 0..<ow { for o in 0..<m {
            var sum = bs[o]
            for ci in 0..<cg { for i in 0..<k { for j in 0..<k {
                let (ih, iw) = (r * s - p + i, q * s - p + j)
                guard ih >= 0, ih < h, iw >= 0, iw < w else { continue }
                sum += ws[((o * cg + ci) * k + i) * k + j] * xs[((n * c + (o / mg) * cg + ci) * h + ih) * w + iw]
            } } }
            y[((n * oh + r) * ow + q) * m + o] = sum
        } } } }
        return (y, [batch, oh * ow, m])
    }

    func testConvsWhoseOutputBecomesTokensWriteThemDirectly() throws {
        let forms = [Form(),                                                           // stages 1–3 patch embedding
                     Form(channels: 3, outputs: 16, kernel: 7, stride: 4, pad: 3),       // stage 0 patch embedding
                     Form(channels: 8, outputs: 12, kernel: 4, stride: 4, pad: 0, bias: false),
                     Form(source: .channelsLastImage),                                   // stages 2–4
                     Form(source: .tokens(constantTarget: false), channels: 8, outputs: 12, kernel: 4, stride: 4, pad: 0),  // spatial reduction
                     Form(source: .tokens(constantTarget: true), channels: 8, outputs: 8, kernel: 2, stride: 2, pad: 0, bias: false),
                     Form(source: .channelsLastImage, channels: 7, outputs: 5, kernel: 3, stride: 1, pad: 1),
                     Form(channels: 8, outputs: 12, kernel: 3, stride: 1, pad: 1, group: 2),
                     Form(channels: 5, outputs: 7, kernel: 1, stride: 1, pad: 0, flattenByShape: false, flattenTarget: [0, 7, -1])]
        for f in forms {
            for (height, width) in [(9, 12), (4, 4), (1, 7)] where height + 2 * f.pad >= f.kernel && width + 2 * f.pad >= f.kernel {
                let original = graph(f, width: width)
                let (rewritten, report) = try PassTest.optimize(original, [.fuseConvToTokens])
                let ops = rewritten.opCounts
                XCTAssertEqual(ops[fusedName], 1, "\(report)")
                for gone in ["Conv", "Transpose"] { XCTAssertNil(ops[gone], "\(gone): \(report)") }
                let feeds = try feeds(f, height: height, width: width)
                let outputs = try Session(model: Model(graph: rewritten, opsetImports: ["": 17])).run(feeds)
                let expected = try reference(f, image(f, batch: 2, height: height, width: width))
                try NNTest.assertClose(outputs["y"]!, expected.values, shape: expected.shape, tolerance: 1e-5)
                XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: feeds), 1e-5, "\(f)")
                let (oh, ow) = ((height + 2 * f.pad - f.kernel) / f.stride + 1, (width + 2 * f.pad - f.kernel) / f.stride + 1)
                XCTAssertEqual(try outputs["hw"]!.integers(), [oh, ow], "the conv's Shape readers see its NCHW shape")
            }
        }
    }

    /// The GEMM splits its work over the threads the same way on every run: the same bits each time.
    func testBitIdenticalAcrossRuns() throws {
        for f in [Form(channels: 32, outputs: 64, kernel: 3, stride: 2, pad: 1),
                  Form(source: .channelsLastImage, channels: 32, outputs: 64, kernel: 3, stride: 2, pad: 1)] {
        let feeds = try feeds(f, batch: 2, height: 64, width: 48)
        for threads in [1, 2] {
            let session = try Session(model: Model(graph: graph(f), opsetImports: ["": 17]), options: SessionOptions(threads: threads))
            XCTAssertEqual(session.compiled.graph.opCounts[fusedName], 1)
            let bits = try (0..<3).map { _ in
                let y = try session.run(feeds)["y"]!
                return Array(UnsafeBufferPointer(start: y.pointer(Float.self), count: y.count)).map(\.bitPattern)
            }
            XCTAssertEqual(bits[0], bits[1], "threads \(threads)")
            XCTAssertEqual(bits[0], bits[2], "threads \(threads)")
        }
        }
    }

    /// A grouped conv of a channels-last image writes tokens but reads its input channels-first.
    func testGroupedConvOfChannelsLastImageKeepsItsTranspose() throws {
        let f = Form(source: .channelsLastImage, channels: 8, outputs: 12, kernel: 3, stride: 1, pad: 1, group: 2)
        let original = graph(f)
        let (rewritten, report) = try PassTest.optimize(original, [.fuseConvToTokens])
        XCTAssertEqual(rewritten.opCounts[fusedName], 1, "\(report)")
        XCTAssertEqual(rewritten.opCounts["Transpose"], 1, "\(report)")
        let feeds = try feeds(f)
        let expected = try reference(f, image(f, batch: 2, height: 9, width: 12))
        try NNTest.assertClose(try Session(model: Model(graph: rewritten, opsetImports: ["": 17])).run(feeds)["y"]!,
                               expected.values, shape: expected.shape, tolerance: 1e-5)
    }

    /// The channels-first image also read elsewhere (as SegFormer's decode head reads each stage's):
    /// the conv reads the channels-last one all the same, the Transpose stays for that reader.
    func testChannelsFirstImageAlsoReadElsewhereStays() throws {
        let f = Form(source: .channelsLastImage)
        var original = graph(f)
        let image = original.nodes.first { $0.opType == OpType.transpose && $0.inputs == ["x"] }!.outputs[0]
        original.outputs.append(PassTest.output(image))
        let (rewritten, report) = try PassTest.optimize(original, [.fuseConvToTokens])
        XCTAssertEqual(rewritten.opCounts[fusedName], 1, "\(report)")
        XCTAssertEqual(rewritten.opCounts["Transpose"], 1, "\(report)")
        XCTAssertEqual(try rewritten.nodes.first { $0.opType == OpType.channelsLastConv }?.int("channels_last_input"), 1)
        XCTAssertLessThanOrEqual(try PassTest.maxDifference(original, rewritten, feeds: try feeds(f)), 1e-5)
    }

    /// Near misses stay as they are: another perm, a Reshape that does not keep the channels.
    func testNearMissesAreLeftAlone() throws {
        for f in [Form(perm: [1, 0, 2]), Form(flattenByShape: false, flattenTarget: [0, 10, -1])] {
            let (rewritten, report) = try PassTest.optimize(graph(f), [.fuseConvToTokens])
            XCTAssertNil(rewritten.opCounts[fusedName], "\(report)")
            XCTAssertEqual(rewritten.opCounts["Conv"], 1, "\(report)")
        }
    }
}
