import XCTest
import GraphIR
@testable import Runtime

final class LinearAlgebraTests: XCTestCase {
    /// numpy-semantics MatMul reference: promotes 1-D operands, broadcasts batch dims, Double sums.
    static func referenceMatMul(_ a: [Double], _ sa0: [Int], _ b: [Double], _ sb0: [Int]) -> ([Double], [Int]) {
        let sa = sa0.count == 1 ? [1] + sa0 : sa0, sb = sb0.count == 1 ? sb0 + [1] : sb0
        let m = sa[sa.count - 2], k = sa[sa.count - 1], n = sb[sb.count - 1]
        let ba = Array(sa.dropLast(2)), bb = Array(sb.dropLast(2))
        let r = max(ba.count, bb.count)
        let pa = Array(repeating: 1, count: r - ba.count) + ba, pb = Array(repeating: 1, count: r - bb.count) + bb
        let batch = (0..<r).map { max(pa[$0], pb[$0]) }
        var out: [Double] = []
        let total = batch.reduce(1, *)
        for flat in 0..<total {
            var rem = flat, ia = 0, ib = 0, mulA = 1, mulB = 1
            for d in stride(from: r - 1, through: 0, by: -1) {
                let i = rem % batch[d]; rem /= batch[d]
                ia += (pa[d] == 1 ? 0 : i) * mulA; mulA *= pa[d]
                ib += (pb[d] == 1 ? 0 : i) * mulB; mulB *= pb[d]
            }
            for i in 0..<m { for j in 0..<n {
                var s = 0.0
                for l in 0..<k { s += a[ia * m * k + i * k + l] * b[ib * k * n + l * n + j] }
                out.append(s)
            } }
        }
        var shape = batch
        if sa0.count > 1 { shape.append(m) }
        if sb0.count > 1 { shape.append(n) }
        return (out, shape)
    }

    func checkMatMul(_ sa: [Int], _ sb: [Int], file: StaticString = #filePath, line: UInt = #line) throws {
        let a = NNTest.tensor(sa, seed: 1), b = NNTest.tensor(sb, seed: 2)
        let y = try SingleOp.run("MatMul", inputs: [a, b])[0]
        let (e, shape) = Self.referenceMatMul(try a.doubles(), sa, try b.doubles(), sb)
        try NNTest.assertClose(y, e, shape: shape, file: file, line: line)
    }

    func testMatMulByHand() throws {
        let a = Tensor([Float](arrayLiteral: 1, 2, 3, 4, 5, 6), shape: [2, 3])
        let b = Tensor([Float](arrayLiteral: 7, 8, 9, 10, 11, 12), shape: [3, 2])
        let y = try SingleOp.run("MatMul", inputs: [a, b])[0]
        XCTAssertEqual(y.shape, [2, 2])
        XCTAssertEqual(y.toArray(Float.self), [58, 64, 139, 154])
    }

    func testMatMulShapes() throws {
        try checkMatMul([4], [4])              // → scalar
        try checkMatMul([3], [2, 3, 5])        // 1-D × 3-D
        try checkMatMul([2, 3, 4], [4])        // 3-D × 1-D
        try checkMatMul([2, 3, 4], [4, 5])     // batch folded into M
        try checkMatMul([2, 3, 5, 4], [2, 3, 4, 6])  // [B,H,N,d] × [B,H,d,M]
        try checkMatMul([2, 1, 3, 4], [3, 4, 5])     // broadcast batch both ways
        try checkMatMul([3, 4], [2, 4, 5])           // shared A, batched B
        try checkMatMul([1, 3, 4], [2, 1, 4, 2])
        try checkMatMul([2, 0, 4], [4, 3])           // empty M
        try checkMatMul([2, 3, 0], [0, 3])           // empty K → zeros
    }

    func testMatMulOtherTypes() throws {
        let a = Tensor([Double](arrayLiteral: 1, 2, 3, 4, 5, 6), shape: [2, 3])
        let b = Tensor([Double](arrayLiteral: 7, 8, 9, 10, 11, 12), shape: [3, 2])
        XCTAssertEqual(try SingleOp.run("MatMul", inputs: [a, b])[0].toArray(Double.self), [58, 64, 139, 154])
        let ai = Tensor([Int32](arrayLiteral: 1, 2, 3, 4, 5, 6), shape: [2, 3])
        let bi = Tensor([Int32](arrayLiteral: 7, 8, 9, 10, 11, 12), shape: [3, 2])
        XCTAssertEqual(try SingleOp.run("MatMul", inputs: [ai, bi])[0].toArray(Int32.self), [58, 64, 139, 154])
        let al = Tensor([Int64](arrayLiteral: 1, 2, 3, 4, 5, 6), shape: [1, 2, 3])
        let bl = Tensor([Int64](arrayLiteral: 7, 8, 9, 10, 11, 12, -7, -8, -9, -10, -11, -12), shape: [2, 3, 2])
        let yl = try SingleOp.run("MatMul", inputs: [al, bl])[0]
        XCTAssertEqual(yl.shape, [2, 2, 2])
        XCTAssertEqual(yl.toArray(Int64.self), [58, 64, 139, 154, -58, -64, -139, -154])
        let ah = Tensor([Float16](arrayLiteral: 1, 2, 3, 4, 5, 6), shape: [2, 3])
        let bh = Tensor([Float16](arrayLiteral: 7, 8, 9, 10, 11, 12), shape: [3, 2])
        XCTAssertEqual(try SingleOp.run("MatMul", inputs: [ah, bh])[0].toArray(Float16.self), [58, 64, 139, 154])
    }

    func testMatMulErrors() throws {
        XCTAssertThrowsError(try SingleOp.run("MatMul", inputs: [NNTest.tensor([2, 3], seed: 1), NNTest.tensor([4, 2], seed: 2)])) {
            XCTAssert("\($0)".contains("[2, 3]"), "\($0)")
        }
        XCTAssertThrowsError(try SingleOp.run("MatMul", inputs: [NNTest.tensor([2, 2, 3], seed: 1), NNTest.tensor([3, 3, 2], seed: 2)]))
        XCTAssertThrowsError(try SingleOp.run("MatMul", inputs: [NNTest.tensor([2, 3], seed: 1), Tensor(scalar: Float(1))]))
    }

    func testMatMulShapeRule() throws {
        let node = Node(name: "mm", opType: "MatMul", inputs: ["a", "b"], outputs: ["y"])
        let rule = OpRegistry.schema(domain: "", opType: "MatMul")!.inferTypes!
        func infer(_ a: [Dim], _ b: [Dim]) throws -> [Dim]? {
            try rule(TypeInferenceContext(node: node, opset: 17, inputTypes: [TensorType(.float, a), TensorType(.float, b)],
                                          constantInputs: []))[0]?.shape
        }
        XCTAssertEqual(try infer([.symbol("B"), .symbol("N"), .known(32)], [.known(32), .known(64)]),
                       [.symbol("B"), .symbol("N"), .known(64)])
        XCTAssertEqual(try infer([.symbol("B"), .known(1), .symbol("N"), .known(32)], [.known(2), .known(32), .symbol("M")]),
                       [.symbol("B"), .known(2), .symbol("N"), .symbol("M")])
        XCTAssertEqual(try infer([.known(5)], [.known(5)]), [])
        XCTAssertEqual(try infer([.known(3), .known(5)], [.known(5)]), [.known(3)])
        XCTAssertThrowsError(try infer([.known(3), .known(5)], [.known(4), .known(2)]))
    }

    // MARK: Gemm

    /// Y = alpha·op(A)·op(B) + beta·C with C broadcast to [M, N].
    static func referenceGemm(_ a: Tensor, _ b: Tensor, _ c: Tensor?, alpha: Double, beta: Double,
                              transA: Bool, transB: Bool) throws -> [Double] {
        let av = try a.doubles(), bv = try b.doubles()
        let m = transA ? a.shape[1] : a.shape[0], k = transA ? a.shape[0] : a.shape[1]
        let n = transB ? b.shape[0] : b.shape[1]
        let cs = c.map { Array(repeating: 1, count: 2 - $0.rank) + $0.shape }
        let cv = try c?.doubles()
        var out: [Double] = []
        for i in 0..<m { for j in 0..<n {
            var s = 0.0
            for l in 0..<k {
                s += av[transA ? l * m + i : i * k + l] * bv[transB ? j * k + l : l * n + j]
            }
            var v = alpha * s
            if let cv, let cs { v += beta * cv[(cs[0] == 1 ? 0 : i) * cs[1] + (cs[1] == 1 ? 0 : j)] }
            out.append(v)
        } }
        return out
    }

    func testGemmVariants() throws {
        let (m, k, n) = (3, 5, 4)
        for transA in [false, true] { for transB in [false, true] {
            for cShape in [nil, [], [n], [1, n], [m, 1], [m, n], [1, 1]] as [[Int]?] {
                let a = NNTest.tensor(transA ? [k, m] : [m, k], seed: 3)
                let b = NNTest.tensor(transB ? [n, k] : [k, n], seed: 4)
                let c = cShape.map { NNTest.tensor($0, seed: 5) }
                let attrs: [String: Attribute] = ["alpha": .float(0.5), "beta": .float(2), "transA": .int(transA ? 1 : 0),
                                                  "transB": .int(transB ? 1 : 0)]
                let y = try SingleOp.run("Gemm", inputs: c == nil ? [a, b] : [a, b, c], attributes: attrs)[0]
                let e = try Self.referenceGemm(a, b, c, alpha: 0.5, beta: 2, transA: transA, transB: transB)
                try NNTest.assertClose(y, e, shape: [m, n])
            }
        } }
    }

    func testGemmDefaultsAndTypes() throws {
        let a = Tensor([Int32](arrayLiteral: 1, 2, 3, 4, 5, 6), shape: [2, 3])
        let b = Tensor([Int32](arrayLiteral: 7, 8, 9, 10, 11, 12), shape: [3, 2])
        let c = Tensor([Int32](arrayLiteral: 100, 200), shape: [2])
        XCTAssertEqual(try SingleOp.run("Gemm", inputs: [a, b, c])[0].toArray(Int32.self), [158, 264, 239, 354])
        let ad = Tensor([Double](arrayLiteral: 1, 2, 3, 4, 5, 6), shape: [3, 2])
        let bd = Tensor([Double](arrayLiteral: 1, 0, 0, 1), shape: [2, 2])
        let yd = try SingleOp.run("Gemm", inputs: [ad, bd, Tensor(scalar: 1.0)], attributes: ["beta": .float(0.5)])[0]
        XCTAssertEqual(yd.toArray(Double.self), [1.5, 2.5, 3.5, 4.5, 5.5, 6.5])
        XCTAssertThrowsError(try SingleOp.run("Gemm", inputs: [NNTest.tensor([2, 3], seed: 1), NNTest.tensor([3, 4], seed: 1),
                                                              NNTest.tensor([3], seed: 1)]))
    }
}
