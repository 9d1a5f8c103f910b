import XCTest
import GraphIR
@testable import Runtime

final class PoolingTests: XCTestCase {
    /// 2-D pooling from the definition. Average divides by the taps inside the input, or with
    /// count_include_pad by the taps inside the padded input (PyTorch semantics).
    static func reference2D(_ x: [Float], n: Int, c: Int, h: Int, w: Int, k: [Int], s: [Int], d: [Int], pads: [Int],
                            out: [Int], average: Bool, includePad: Bool = false) -> [Double] {
        var y: [Double] = []
        for plane in 0..<(n * c) { for oh in 0..<out[0] { for ow in 0..<out[1] {
            var sum = 0.0, best = -Double.infinity, inside = 0, padded = 0
            for i in 0..<k[0] { for j in 0..<k[1] {
                let ih = oh * s[0] - pads[0] + i * d[0], iw = ow * s[1] - pads[1] + j * d[1]
                if ih < h + pads[2] && iw < w + pads[3] { padded += 1 }
                guard ih >= 0, ih < h, iw >= 0, iw < w else { continue }
                let v = Double(x[plane * h * w + ih * w + iw])
                sum += v; best = max(best, v); inside += 1
            } }
            y.append(average ? sum / Double(includePad ? padded : inside) : best)
        } } }
        return y
    }

    func testGlobalPools() throws {
        for shape in [[2, 3, 4, 5], [1, 2, 7], [1, 2, 2, 3, 2]] {
            let x = NNTest.tensor(shape, seed: 21)
            let v = try x.doubles(), size = shape.dropFirst(2).reduce(1, *)
            let outShape = Array(shape.prefix(2)) + Array(repeating: 1, count: shape.count - 2)
            let avg = try SingleOp.run("GlobalAveragePool", inputs: [x])[0]
            let mx = try SingleOp.run("GlobalMaxPool", inputs: [x], context: ExecutionContext(threads: 2))[0]
            let planes = (0..<(shape[0] * shape[1])).map { Array(v[$0 * size..<($0 + 1) * size]) }
            try NNTest.assertClose(avg, planes.map { $0.reduce(0, +) / Double(size) }, shape: outShape)
            try NNTest.assertClose(mx, planes.map { $0.max()! }, shape: outShape)
        }
        let xd = Tensor([Double](arrayLiteral: 1, 2, 3, 6), shape: [1, 1, 2, 2])
        XCTAssertEqual(try SingleOp.run("GlobalAveragePool", inputs: [xd])[0].toArray(Double.self), [3])
        XCTAssertThrowsError(try SingleOp.run("GlobalAveragePool", inputs: [NNTest.tensor([2, 3], seed: 1)]))
    }

    func testMaxPoolByHand() throws {
        let x = Tensor((0..<16).map { Float(($0 * 7) % 16) }, shape: [1, 1, 4, 4])
        // rows: [0 7 14 5] [12 3 10 1] [8 15 6 13] [4 11 2 9]
        let r = try SingleOp.run("MaxPool", inputs: [x], attributes: ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])],
                                 outputCount: 2)
        XCTAssertEqual(r[0].shape, [1, 1, 2, 2])
        XCTAssertEqual(r[0].toArray(Float.self), [12, 14, 15, 13])
        XCTAssertEqual(r[1].toArray(Int64.self), [4, 2, 9, 11])
        let col = try SingleOp.run("MaxPool", inputs: [x], attributes: ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2]),
                                                                      "storage_order": .int(1)], outputCount: 2)
        XCTAssertEqual(col[1].toArray(Int64.self), [1, 8, 6, 14])   // 13 at (h 2, w 3) → 3·4 + 2
        // ceil_mode: 4×4, k 3, s 2 → ceil((4−3)/2)+1 = 2 (floor gives 1).
        let ceil = try SingleOp.run("MaxPool", inputs: [x], attributes: ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]),
                                                                       "ceil_mode": .int(1)])[0]
        XCTAssertEqual(ceil.shape, [1, 1, 2, 2])
        XCTAssertEqual(ceil.toArray(Float.self), [15, 14, 15, 13])
    }

    func testAveragePoolByHand() throws {
        let x = Tensor((1...9).map { Float($0) }, shape: [1, 1, 3, 3])
        let attrs: [String: Attribute] = ["kernel_shape": .ints([2, 2]), "pads": .ints([1, 1, 1, 1]), "strides": .ints([2, 2])]
        XCTAssertEqual(try SingleOp.run("AveragePool", inputs: [x], attributes: attrs)[0].toArray(Float.self), [1, 2.5, 5.5, 7])
        var inc = attrs; inc["count_include_pad"] = .int(1)
        XCTAssertEqual(try SingleOp.run("AveragePool", inputs: [x], attributes: inc)[0].toArray(Float.self), [0.25, 1.25, 2.75, 7])
    }

    func testPoolsAgainstReference() throws {
        let cases: [(h: Int, w: Int, k: [Int], s: [Int], d: [Int], pads: [Int], ceil: Bool)] = [
            (7, 8, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], false),
            (9, 7, [3, 2], [2, 3], [1, 1], [1, 0, 2, 1], false),
            (9, 9, [3, 3], [2, 2], [2, 1], [0, 0, 0, 0], false),
            (8, 7, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], true),
        ]
        for cs in cases {
            let xt = NNTest.tensor([2, 3, cs.h, cs.w], seed: 31)
            var out: [Int] = []
            for i in 0..<2 {
                let span = [cs.h, cs.w][i] + cs.pads[i] + cs.pads[i + 2] - (cs.k[i] - 1) * cs.d[i] - 1
                var o = (cs.ceil ? (span + cs.s[i] - 1) / cs.s[i] : span / cs.s[i]) + 1
                if cs.ceil && (o - 1) * cs.s[i] >= [cs.h, cs.w][i] + cs.pads[i] { o -= 1 }
                out.append(o)
            }
            var attrs: [String: Attribute] = ["kernel_shape": .ints(cs.k), "strides": .ints(cs.s), "pads": .ints(cs.pads),
                                              "ceil_mode": .int(cs.ceil ? 1 : 0)]
            let xv = xt.toArray(Float.self)
            for average in [true, false] { for include in average ? [false, true] : [false] {
                if !average { attrs["dilations"] = .ints(cs.d) } else if cs.d != [1, 1] { continue }
                attrs["count_include_pad"] = .int(include ? 1 : 0)
                let y = try SingleOp.run(average ? "AveragePool" : "MaxPool", inputs: [xt], attributes: attrs,
                                         opset: 19, context: ExecutionContext(threads: 2))[0]
                let e = Self.reference2D(xv, n: 2, c: 3, h: cs.h, w: cs.w, k: cs.k, s: cs.s, d: cs.d, pads: cs.pads,
                                         out: out, average: average, includePad: include)
                try NNTest.assertClose(y, e, shape: [2, 3] + out)
            } }
        }
    }

    func testAutoPadAndOtherRanks() throws {
        let x = NNTest.tensor([1, 2, 5, 6], seed: 41)
        // SAME_UPPER, k 3, s 2: out 3×3, pads h total 2 → 1/1, w total 1 → 0/1.
        let y = try SingleOp.run("AveragePool", inputs: [x], attributes: ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]),
                                                                        "auto_pad": .string("SAME_UPPER")])[0]
        let e = Self.reference2D(x.toArray(Float.self), n: 1, c: 2, h: 5, w: 6, k: [3, 3], s: [2, 2], d: [1, 1],
                                 pads: [1, 0, 1, 1], out: [3, 3], average: true)
        try NNTest.assertClose(y, e, shape: [1, 2, 3, 3])
        // 1-D max pool as 2-D with height 1.
        let x1 = NNTest.tensor([1, 2, 9], seed: 42)
        let y1 = try SingleOp.run("MaxPool", inputs: [x1], attributes: ["kernel_shape": .ints([3]), "strides": .ints([2])])[0]
        let e1 = Self.reference2D(x1.toArray(Float.self), n: 1, c: 2, h: 1, w: 9, k: [1, 3], s: [1, 2], d: [1, 1],
                                  pads: [0, 0, 0, 0], out: [1, 4], average: false)
        try NNTest.assertClose(y1, e1, shape: [1, 2, 4])
        let xi = Tensor([Int8](arrayLiteral: 1, -5, 3, 7, -2, 0), shape: [1, 1, 6])
        XCTAssertEqual(try SingleOp.run("MaxPool", inputs: [xi], attributes: ["kernel_shape": .ints([2]), "strides": .ints([2])])[0]
                        .toArray(Int8.self), [1, 7, 0])
        XCTAssertThrowsError(try SingleOp.run("MaxPool", inputs: [x], attributes: ["kernel_shape": .ints([3])]))
        XCTAssertThrowsError(try SingleOp.run("AveragePool", inputs: [x], attributes: [:]))
    }

    func testShapeRules() throws {
        let x = TensorType(.float, [.symbol("N"), .known(8), .symbol("H"), .known(10)])
        func infer(_ op: String, _ attrs: [String: Attribute]) throws -> [Dim]? {
            let node = Node(name: "p", opType: op, inputs: ["x"], outputs: ["y"], attributes: attrs)
            return try OpRegistry.schema(domain: "", opType: op)!.inferTypes!(
                TypeInferenceContext(node: node, opset: 17, inputTypes: [x], constantInputs: []))[0]?.shape
        }
        XCTAssertEqual(try infer("GlobalAveragePool", [:]), [.symbol("N"), .known(8), .known(1), .known(1)])
        XCTAssertEqual(try infer("MaxPool", ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1])]),
                       [.symbol("N"), .known(8), .symbol("H"), .known(10)])
        let s2 = try infer("AveragePool", ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2]), "ceil_mode": .int(1)])!
        XCTAssertEqual(s2[3], .known(5))
        XCTAssertNotEqual(s2[2], .symbol("H"))
    }
}
