import XCTest
import GraphIR
@testable import Runtime

final class ConvolutionTests: XCTestCase {
    /// Conv straight from the definition (explicit pads, Double sums), any spatial rank.
    static func reference(_ x: Tensor, _ w: Tensor, _ b: Tensor?, group: Int, strides: [Int], dilations: [Int],
                          padBegin: [Int], padEnd: [Int]) throws -> ([Double], [Int]) {
        let xv = try x.doubles(), wv = try w.doubles(), bv = try b?.doubles()
        let n = x.shape[0], c = x.shape[1], m = w.shape[0], r = x.rank - 2
        let inS = Array(x.shape.dropFirst(2)), k = Array(w.shape.dropFirst(2))
        var out: [Int] = []
        for d in 0..<r {
            let span: Int = inS[d] + padBegin[d] + padEnd[d] - (k[d] - 1) * dilations[d] - 1
            out.append(span / strides[d] + 1)
        }
        let cg = c / group, mg = m / group
        let outCount = out.reduce(1, *), taps = k.reduce(1, *), inCount = inS.reduce(1, *)
        func unflat(_ i: Int, _ dims: [Int]) -> [Int] {
            var rem = i; var v = [Int](repeating: 0, count: dims.count)
            for d in stride(from: dims.count - 1, through: 0, by: -1) { v[d] = rem % dims[d]; rem /= dims[d] }
            return v
        }
        var y: [Double] = []
        for img in 0..<n { for oc in 0..<m {
            let grp = oc / mg
            for p in 0..<outCount {
                let o = unflat(p, out)
                var s = bv?[oc] ?? 0
                for ci in 0..<cg { for t in 0..<taps {
                    let kk = unflat(t, k)
                    var off = 0, inside = true
                    for d in 0..<r {
                        let v = o[d] * strides[d] - padBegin[d] + kk[d] * dilations[d]
                        if v < 0 || v >= inS[d] { inside = false }
                        off = off * inS[d] + v
                    }
                    if inside {
                        s += xv[(img * c + grp * cg + ci) * inCount + off] * wv[(oc * cg + ci) * taps + t]
                    }
                } }
                y.append(s)
            }
        } }
        return (y, [n, m] + out)
    }

    func check(x xs: [Int], w ws: [Int], bias: Bool = true, group: Int = 1, strides: [Int]? = nil, dilations: [Int]? = nil,
               pads: [Int]? = nil, autoPad: String? = nil, expectPads: [Int]? = nil, threads: Int = 1,
               type: DataType = .float, tolerance: Double = 1e-4,
               file: StaticString = #filePath, line: UInt = #line) throws {
        let r = xs.count - 2
        var x = NNTest.tensor(xs, seed: 11), w = NNTest.tensor(ws, seed: 12)
        var b: Tensor? = bias ? NNTest.tensor([ws[0]], seed: 13) : nil
        if type == .double {
            x = Tensor(try x.doubles(), shape: xs); w = Tensor(try w.doubles(), shape: ws)
            b = try b.map { Tensor(try $0.doubles(), shape: $0.shape) }
        } else if type == .float16 {
            x = BLAS.fromFloat32(x, to: .float16); w = BLAS.fromFloat32(w, to: .float16)
            b = b.map { BLAS.fromFloat32($0, to: .float16) }
        }
        var attrs: [String: Attribute] = ["group": .int(group)]
        if let strides { attrs["strides"] = .ints(strides) }
        if let dilations { attrs["dilations"] = .ints(dilations) }
        if let pads { attrs["pads"] = .ints(pads) }
        if let autoPad { attrs["auto_pad"] = .string(autoPad) }
        let ctx = threads == 1 ? ExecutionContext.singleThreaded : ExecutionContext(threads: threads)
        let y = try SingleOp.run("Conv", inputs: b == nil ? [x, w] : [x, w, b], attributes: attrs, context: ctx)[0]
        let p = expectPads ?? pads ?? [Int](repeating: 0, count: 2 * r)
        let (e, shape) = try Self.reference(x, w, b, group: group, strides: strides ?? Array(repeating: 1, count: r),
                                            dilations: dilations ?? Array(repeating: 1, count: r),
                                            padBegin: Array(p[0..<r]), padEnd: Array(p[r...]))
        XCTAssertEqual(y.dataType, type, file: file, line: line)
        try NNTest.assertClose(y, e, shape: shape, tolerance: tolerance, file: file, line: line)
    }

    func testBasicConvByHand() throws {
        // The ONNX spec's example: 5×5 ramp, 3×3 ones.
        let x = Tensor((0..<25).map { Float($0) }, shape: [1, 1, 5, 5])
        let w = Tensor([Float](repeating: 1, count: 9), shape: [1, 1, 3, 3])
        let padded = try SingleOp.run("Conv", inputs: [x, w], attributes: ["pads": .ints([1, 1, 1, 1])])[0]
        XCTAssertEqual(padded.shape, [1, 1, 5, 5])
        XCTAssertEqual(padded.toArray(Float.self), [12, 21, 27, 33, 24, 33, 54, 63, 72, 51, 63, 99, 108, 117, 81,
                                                    93, 144, 153, 162, 111, 72, 111, 117, 123, 84])
        let valid = try SingleOp.run("Conv", inputs: [x, w])[0]
        XCTAssertEqual(valid.toArray(Float.self), [54, 63, 72, 99, 108, 117, 144, 153, 162])
    }

    func testPointwise() throws {
        try check(x: [2, 6, 5, 7], w: [4, 6, 1, 1])
        try check(x: [1, 6, 5, 7], w: [4, 3, 1, 1], bias: false, group: 2)
    }

    func testDepthwise() throws {
        try check(x: [1, 8, 9, 10], w: [8, 1, 3, 3], group: 8, pads: [1, 1, 1, 1])            // MixFFN
        try check(x: [2, 4, 9, 10], w: [8, 1, 3, 3], group: 4, strides: [2, 2], pads: [1, 0, 2, 1])  // multiplier 2
        try check(x: [1, 4, 6, 5], w: [4, 1, 3, 3], group: 4, dilations: [1, 2], pads: [0, 3, 1, 0])    // 3-wide edges
        try check(x: [1, 3, 9, 8], w: [3, 1, 3, 3], group: 3, dilations: [2, 1], pads: [2, 1, 2, 1], threads: 2)   // fused 3×3, DH 2
        try check(x: [1, 2, 4, 2], w: [2, 1, 3, 3], group: 2, pads: [1, 1, 1, 1])                       // narrower than kernel
        try check(x: [1, 3, 11, 12], w: [3, 1, 5, 5], bias: false, group: 3, dilations: [2, 2], pads: [3, 3, 3, 3], threads: 2)
    }

    func testGeneralAndGrouped() throws {
        try check(x: [1, 3, 23, 21], w: [5, 3, 7, 7], strides: [4, 4], pads: [3, 3, 3, 3])    // patch embedding
        try check(x: [2, 4, 9, 8], w: [6, 4, 3, 3], strides: [2, 2], pads: [1, 1, 1, 1], threads: 2)
        try check(x: [1, 4, 16, 16], w: [3, 4, 4, 4], strides: [4, 4])                       // spatial reduction
        try check(x: [1, 4, 6, 8], w: [6, 2, 3, 2], group: 2, strides: [1, 2], dilations: [2, 1], pads: [0, 1, 2, 0])
        try check(x: [1, 2, 7, 5], w: [3, 2, 3, 3], strides: [2, 2], pads: [1, 0, 1, 0])     // asymmetric (onnx case)
    }

    func testTiledIm2col() throws {
        // Tiles of 11 and 5 positions, crossing output rows.
        try ConvTiling.$current.withValue(ConvTiling(columnBudget: 300, minimumTile: 5)) {
            try check(x: [1, 3, 13, 11], w: [4, 3, 3, 3], strides: [1, 2], pads: [1, 1, 1, 1])
            try check(x: [2, 4, 10, 9], w: [4, 2, 2, 3], group: 2, pads: [0, 1, 1, 0], threads: 2)
        }
    }

    func testAutoPad() throws {
        // in 7, k 3, s 2 → out 4, total pad 2 (1/1); in 8 → out 4, total pad 1.
        try check(x: [1, 2, 7, 8], w: [3, 2, 3, 3], strides: [2, 2], autoPad: "SAME_UPPER", expectPads: [1, 0, 1, 1])
        try check(x: [1, 2, 7, 8], w: [3, 2, 3, 3], strides: [2, 2], autoPad: "SAME_LOWER", expectPads: [1, 1, 1, 0])
        try check(x: [1, 2, 7, 8], w: [3, 2, 3, 3], strides: [2, 2], pads: [5, 5, 5, 5], autoPad: "VALID", expectPads: [0, 0, 0, 0])
        try check(x: [1, 2, 5, 5], w: [1, 2, 2, 2], autoPad: "SAME_UPPER", expectPads: [0, 0, 1, 1])
    }

    func testOtherRanksAndTypes() throws {
        try check(x: [2, 3, 17], w: [4, 3, 3], strides: [2], pads: [1, 2])
        try check(x: [1, 4, 9], w: [4, 1, 3], group: 4, dilations: [2], pads: [2, 2])
        try check(x: [1, 2, 5, 4, 6], w: [3, 2, 3, 2, 3], strides: [2, 1, 2], pads: [1, 0, 1, 1, 1, 0])
        try check(x: [1, 4, 4, 5, 3], w: [4, 1, 3, 3, 3], group: 4, pads: [1, 1, 1, 1, 1, 1])
        try check(x: [1, 3, 6, 7], w: [4, 3, 3, 3], pads: [1, 1, 1, 1], type: .double, tolerance: 1e-12)
        try check(x: [1, 3, 6, 7], w: [4, 3, 3, 3], pads: [1, 1, 1, 1], type: .float16, tolerance: 5e-3)
    }

    func testErrors() throws {
        let x = NNTest.tensor([1, 4, 5, 5], seed: 1)
        XCTAssertThrowsError(try SingleOp.run("Conv", inputs: [x, NNTest.tensor([2, 3, 3, 3], seed: 2)])) {
            XCTAssert("\($0)".contains("[1, 4, 5, 5]") && "\($0)".contains("Conv"), "\($0)")
        }
        XCTAssertThrowsError(try SingleOp.run("Conv", inputs: [x, NNTest.tensor([3, 2, 3, 3], seed: 2)], attributes: ["group": .int(2)]))
        XCTAssertThrowsError(try SingleOp.run("Conv", inputs: [x, NNTest.tensor([2, 4, 3, 3], seed: 2), NNTest.tensor([3], seed: 3)]))
        XCTAssertThrowsError(try SingleOp.run("Conv", inputs: [x, NNTest.tensor([2, 4, 7, 7], seed: 2)]))   // empty output
        XCTAssertThrowsError(try SingleOp.run("Conv", inputs: [x, NNTest.tensor([2, 4, 3, 3], seed: 2)],
                                              attributes: ["pads": .ints([1, 1])]))
        XCTAssertThrowsError(try SingleOp.run("Conv", inputs: [x, NNTest.tensor([2, 4, 3, 3], seed: 2)],
                                              attributes: ["kernel_shape": .ints([2, 2])]))
        XCTAssertThrowsError(try SingleOp.run("Conv", inputs: [x, NNTest.tensor([2, 4, 3, 3], seed: 2)],
                                              attributes: ["pads": .ints([1 << 40, 0, 0, 1 << 40])]))
    }

    func testShapeRule() throws {
        let rule = OpRegistry.schema(domain: "", opType: "Conv")!.inferTypes!
        func infer(_ x: [Dim], _ w: [Int], _ attrs: [String: Attribute]) throws -> [Dim]? {
            let node = Node(name: "c", opType: "Conv", inputs: ["x", "w"], outputs: ["y"], attributes: attrs)
            return try rule(TypeInferenceContext(node: node, opset: 17, inputTypes: [TensorType(.float, x), TensorType(.float, known: w)],
                                                 constantInputs: []))[0]?.shape
        }
        let x: [Dim] = [.symbol("N"), .known(32), .symbol("H"), .symbol("W")]
        XCTAssertEqual(try infer(x, [32, 1, 3, 3], ["group": .int(32), "pads": .ints([1, 1, 1, 1])]),
                       [.symbol("N"), .known(32), .symbol("H"), .symbol("W")])
        let s2 = try infer(x, [64, 32, 3, 3], ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])])!
        XCTAssertEqual(s2[1], .known(64))
        XCTAssertNotEqual(s2[2], .symbol("H"))
        XCTAssertEqual(s2[2], s2[2])
        XCTAssertEqual(try infer([.known(1), .known(3), .known(512), .known(512)], [32, 3, 7, 7],
                                 ["strides": .ints([4, 4]), "pads": .ints([3, 3, 3, 3])]),
                       [.known(1), .known(32), .known(128), .known(128)])
        XCTAssertEqual(try infer([.known(1), .known(3), .symbol("H"), .known(9)], [2, 3, 3, 3], ["auto_pad": .string("SAME_UPPER")]),
                       [.known(1), .known(2), .symbol("H"), .known(9)])
    }
}

final class ConvTransposeTests: XCTestCase {
    /// Scatter form of the definition: every input element adds x·w to the outputs its taps reach.
    static func reference(_ x: Tensor, _ w: Tensor, _ b: Tensor?, group: Int, strides: [Int], dilations: [Int],
                          padBegin: [Int], out: [Int]) throws -> [Double] {
        let xv = try x.doubles(), wv = try w.doubles(), bv = try b?.doubles()
        let n = x.shape[0], c = x.shape[1], mg = w.shape[1], m = mg * group, r = x.rank - 2
        let inS = Array(x.shape.dropFirst(2)), k = Array(w.shape.dropFirst(2))
        let inCount = inS.reduce(1, *), taps = k.reduce(1, *), outCount = out.reduce(1, *), cg = c / group
        var y = [Double](repeating: 0, count: n * m * outCount)
        for img in 0..<n { for oc in 0..<m { for p in 0..<outCount { y[(img * m + oc) * outCount + p] = bv?[oc] ?? 0 } } }
        for img in 0..<n { for ci in 0..<c { for i in 0..<inCount { for t in 0..<taps { for j in 0..<mg {
            var ri = i, rt = t, off = 0, mul = 1, inside = true
            for d in stride(from: r - 1, through: 0, by: -1) {
                let ii = ri % inS[d], kk = rt % k[d]
                ri /= inS[d]; rt /= k[d]
                let o = ii * strides[d] - padBegin[d] + kk * dilations[d]
                if o < 0 || o >= out[d] { inside = false }
                off += o * mul; mul *= out[d]
            }
            if inside {
                let oc = (ci / cg) * mg + j
                y[(img * m + oc) * outCount + off] += xv[(img * c + ci) * inCount + i] * wv[(ci * mg + j) * taps + t]
            }
        } } } } }
        return y
    }

    func testByHand() throws {
        let x = Tensor((0..<9).map { Float($0) }, shape: [1, 1, 3, 3])
        let w = Tensor([Float](repeating: 1, count: 18), shape: [1, 2, 3, 3])
        let y = try SingleOp.run("ConvTranspose", inputs: [x, w])[0]
        let plane: [Float] = [0, 1, 3, 3, 2, 3, 8, 15, 12, 7, 9, 21, 36, 27, 15, 9, 20, 33, 24, 13, 6, 13, 21, 15, 8]
        XCTAssertEqual(y.shape, [1, 2, 5, 5])
        XCTAssertEqual(y.toArray(Float.self), plane + plane)
    }

    func check(x xs: [Int], w ws: [Int], group: Int = 1, strides: [Int]? = nil, dilations: [Int]? = nil, pads: [Int]? = nil,
               extra: [String: Attribute] = [:], expectPadBegin: [Int]? = nil, expectOut: [Int],
               file: StaticString = #filePath, line: UInt = #line) throws {
        let r = xs.count - 2
        let x = NNTest.tensor(xs, seed: 51), w = NNTest.tensor(ws, seed: 52), b = NNTest.tensor([ws[1] * group], seed: 53)
        var attrs = extra
        attrs["group"] = .int(group)
        if let strides { attrs["strides"] = .ints(strides) }
        if let dilations { attrs["dilations"] = .ints(dilations) }
        if let pads { attrs["pads"] = .ints(pads) }
        let y = try SingleOp.run("ConvTranspose", inputs: [x, w, b], attributes: attrs, context: ExecutionContext(threads: 2))[0]
        let e = try Self.reference(x, w, b, group: group, strides: strides ?? Array(repeating: 1, count: r),
                                   dilations: dilations ?? Array(repeating: 1, count: r),
                                   padBegin: expectPadBegin ?? pads.map { Array($0.prefix(r)) } ?? Array(repeating: 0, count: r),
                                   out: expectOut)
        try NNTest.assertClose(y, e, shape: [xs[0], ws[1] * group] + expectOut, file: file, line: line)
    }

    func testVariants() throws {
        // out = s(in−1) + dk − pads (+ output_padding)
        try check(x: [2, 4, 5, 6], w: [4, 3, 3, 3], strides: [2, 2], pads: [1, 1, 1, 1], expectOut: [9, 11])
        try check(x: [1, 4, 5, 6], w: [4, 2, 3, 2], group: 2, strides: [2, 3], dilations: [2, 1], pads: [0, 1, 2, 0],
                  expectOut: [11, 16])
        try check(x: [1, 3, 4, 4], w: [3, 2, 2, 2], strides: [2, 2], extra: ["output_padding": .ints([1, 0])], expectOut: [9, 8])
        try check(x: [1, 2, 4, 4], w: [2, 2, 3, 3], strides: [2, 2], extra: ["output_shape": .ints([8, 7])],
                  expectPadBegin: [1, 1], expectOut: [8, 7])   // full 9: totals 1 and 2, extra at the start
        try check(x: [1, 2, 4, 4], w: [2, 2, 3, 3], strides: [2, 2], extra: ["auto_pad": .string("SAME_UPPER")],
                  expectPadBegin: [0, 0], expectOut: [8, 8])   // total 1, extra at the end
        try check(x: [1, 2, 9], w: [2, 3, 4], strides: [3], pads: [1, 2], expectOut: [25])
        try check(x: [1, 2, 3, 4, 3], w: [2, 2, 2, 3, 2], strides: [2, 1, 2], pads: [0, 1, 1, 1, 0, 0], expectOut: [5, 5, 5])
    }

    func testErrorsAndShapeRule() throws {
        XCTAssertThrowsError(try SingleOp.run("ConvTranspose", inputs: [NNTest.tensor([1, 3, 4, 4], seed: 1), NNTest.tensor([2, 2, 3, 3], seed: 2)]))
        let node = Node(name: "ct", opType: "ConvTranspose", inputs: ["x", "w"], outputs: ["y"],
                        attributes: ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1]), "output_padding": .ints([1, 1])])
        let t = try OpRegistry.schema(domain: "", opType: "ConvTranspose")!.inferTypes!(
            TypeInferenceContext(node: node, opset: 17, inputTypes: [TensorType(.float, known: [1, 8, 16, 16]),
                                                                     TensorType(.float, known: [8, 4, 3, 3])], constantInputs: []))
        XCTAssertEqual(t[0]?.knownShape, [1, 4, 32, 32])
    }
}
