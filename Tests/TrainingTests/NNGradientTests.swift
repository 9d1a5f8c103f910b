import Foundation
import XCTest
import GraphIR
@testable import Runtime
@testable import Training

/// Gradient rules and kernels of MatMul, Gemm, Conv and the pools: a finite-difference check per rule
/// and per fast path of the kernels (small shapes: debug builds are slow).
final class NNGradientTests: XCTestCase {

    // MARK: helpers

    /// Deterministic values in [-1, 1).
    func random(_ shape: [Int], seed: UInt64) -> Tensor {
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        let n = shape.reduce(1, *)
        var v = [Float](repeating: 0, count: n)
        for i in 0..<n {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            v[i] = Float(s % 20001) / 10000 - 1
        }
        return Tensor(v, shape: shape)
    }

    /// Finite-difference check of one op's rule. Through `GradientCheck` when the loss it builds
    /// (Mul, ReduceSum) is differentiable on this branch; always also directly: the rule called with
    /// dL/dy = w (fixed random weights), compared with central differences of L = Σ y·w.
    func check(_ op: String, _ inputs: [Tensor?], _ attributes: [String: Attribute] = [:], opset: Int = 17,
               differentiable: [Int], file: StaticString = #filePath, line: UInt = #line) {
        do {
            if OpRegistry.schema(domain: "", opType: "Mul")?.gradient != nil,
               OpRegistry.schema(domain: "", opType: "ReduceSum")?.gradient != nil {
                try GradientCheck.check(op, inputs: inputs, attributes: attributes, opset: opset, differentiable: differentiable)
            }
            try directCheck(op, inputs, attributes, opset: opset, differentiable: differentiable)
        } catch {
            XCTFail("\(op) \(inputs.map { $0?.shape ?? [] }) \(attributes): \(error)", file: file, line: line)
        }
    }

    /// The rule called directly with dL/dy = w (fixed random weights), compared with central
    /// differences of L = Σ y·w: every element of inputs up to 160 elements, else 160 spread-out ones.
    func directCheck(_ op: String, _ inputs: [Tensor?], _ attributes: [String: Attribute], opset: Int,
                     differentiable: [Int]) throws {
        try GradientCheck.checkRule(op, inputs: inputs, attributes: attributes, opset: opset, differentiable: differentiable,
                                    weightSeed: 99, samples: 160, epsilon: 1e-2, tolerance: 1e-2)
    }

    // MARK: MatMul

    func testMatMul2D() { check("MatMul", [random([3, 4], seed: 1), random([4, 5], seed: 2)], differentiable: [0, 1]) }
    func testMatMulVectorLeft() { check("MatMul", [random([4], seed: 1), random([4, 5], seed: 2)], differentiable: [0, 1]) }
    func testMatMulVectorRight() { check("MatMul", [random([3, 4], seed: 1), random([4], seed: 2)], differentiable: [0, 1]) }
    func testMatMulVectors() { check("MatMul", [random([4], seed: 1), random([4], seed: 2)], differentiable: [0, 1]) }
    func testMatMulVectorBatched() {
        check("MatMul", [random([4], seed: 1), random([2, 4, 3], seed: 2)], differentiable: [0, 1])
        check("MatMul", [random([2, 3, 4], seed: 1), random([4], seed: 2)], differentiable: [0, 1])
    }
    func testMatMulBatched() { check("MatMul", [random([2, 3, 4], seed: 1), random([2, 4, 5], seed: 2)], differentiable: [0, 1]) }
    /// [B,N,C]×[C,K]: dA folds the batch into M, dW is one GEMM over the folded batch.
    func testMatMulSharedWeight() {
        check("MatMul", [random([2, 3, 4], seed: 1), random([4, 5], seed: 2)], differentiable: [0, 1])
        check("MatMul", [random([2, 2, 3, 4], seed: 1), random([4, 5], seed: 2)], differentiable: [0, 1])
    }
    func testMatMulSharedLeft() { check("MatMul", [random([3, 4], seed: 1), random([2, 4, 5], seed: 2)], differentiable: [0, 1]) }
    func testMatMulBroadcastBatch() {
        check("MatMul", [random([2, 1, 3, 4], seed: 1), random([1, 3, 4, 2], seed: 2)], differentiable: [0, 1])
        check("MatMul", [random([3, 2, 4], seed: 1), random([2, 3, 1, 4, 2], seed: 2)], differentiable: [0, 1])
    }
    /// Attention products [B,H,N,d]×[B,H,d,M] and [B,H,N,M]×[B,H,M,d].
    func testMatMulAttention() {
        check("MatMul", [random([2, 2, 5, 3], seed: 1), random([2, 2, 3, 4], seed: 2)], differentiable: [0, 1])
        check("MatMul", [random([1, 2, 5, 4], seed: 3), random([1, 2, 4, 3], seed: 4)], differentiable: [0])
    }

    func testMatMulTransposedKernel() throws {
        // Σ over the batch of Aᵀ·B equals the folded GEMM; compare with a per-batch reference.
        let a = random([3, 4, 2], seed: 5), b = random([3, 4, 5], seed: 6)
        let y = try SingleOp.run("MatMulTransposed", domain: trainingDomain,
                                 inputs: [a, b, Tensor([Int64(2), 5], shape: [2])], attributes: ["transA": .int(1)])[0]
        XCTAssertEqual(y.shape, [2, 5])
        let pa = a.pointer(Float.self), pb = b.pointer(Float.self), py = y.pointer(Float.self)
        for i in 0..<2 { for j in 0..<5 {
            var s: Float = 0
            for bt in 0..<3 { for l in 0..<4 { s += pa[bt * 8 + l * 2 + i] * pb[bt * 20 + l * 5 + j] } }
            XCTAssertEqual(py[i * 5 + j], s, accuracy: 1e-5)
        } }
        XCTAssertThrowsError(try SingleOp.run("MatMulTransposed", domain: trainingDomain,
                                              inputs: [a, b, Tensor([Int64(3), 5], shape: [2])], attributes: ["transA": .int(1)]))
    }

    // MARK: Gemm

    func testGemm() {
        for (ta, tb) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let a = ta == 1 ? random([4, 3], seed: 1) : random([3, 4], seed: 1)
            let b = tb == 1 ? random([5, 4], seed: 2) : random([4, 5], seed: 2)
            let attrs: [String: Attribute] = ["transA": .int(ta), "transB": .int(tb), "alpha": .float(0.7), "beta": .float(1.3)]
            check("Gemm", [a, b, random([5], seed: 3)], attrs, differentiable: [0, 1, 2])
            check("Gemm", [a, b], attrs, differentiable: [0, 1])
        }
        check("Gemm", [random([3, 4], seed: 1), random([4, 5], seed: 2), random([3, 1], seed: 3)], differentiable: [0, 1, 2])
        check("Gemm", [random([3, 4], seed: 1), random([4, 5], seed: 2), random([3, 5], seed: 3)], differentiable: [0, 1, 2])
        check("Gemm", [random([3, 4], seed: 1), random([4, 5], seed: 2), random([1], seed: 3)], ["beta": .float(0.5)],
              differentiable: [0, 1, 2])
    }

    // MARK: Conv

    func conv(_ x: [Int], _ w: [Int], bias: Bool = true, _ attrs: [String: Attribute] = [:],
              differentiable: [Int]? = nil, file: StaticString = #filePath, line: UInt = #line) {
        var inputs: [Tensor?] = [random(x, seed: 11), random(w, seed: 12)]
        if bias { inputs.append(random([w[0]], seed: 13)) }
        check("Conv", inputs, attrs, differentiable: differentiable ?? (bias ? [0, 1, 2] : [0, 1]), file: file, line: line)
    }

    func testConvPointwise() {
        conv([2, 3, 4, 4], [5, 3, 1, 1])
        conv([1, 4, 3, 3], [6, 2, 1, 1], ["group": .int(2)])
    }
    func testConv3x3Padded() { conv([2, 3, 5, 5], [4, 3, 3, 3], ["pads": .ints([1, 1, 1, 1])]) }
    func testConvStrided() {
        conv([1, 2, 7, 7], [3, 2, 3, 3], ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])])
        conv([1, 3, 9, 9], [4, 3, 7, 7], ["strides": .ints([4, 4]), "pads": .ints([3, 3, 3, 3])])   // patch embedding
        conv([1, 3, 5, 5], [2, 3, 1, 1], ["strides": .ints([2, 2])])                                 // strided 1×1
    }
    /// Spatial reduction: kernel == stride, no overlap.
    func testConvNonOverlapping() { conv([2, 4, 6, 6], [4, 4, 2, 2], ["strides": .ints([2, 2])]) }
    func testConvDilated() { conv([1, 2, 7, 7], [3, 2, 3, 3], ["dilations": .ints([2, 2]), "pads": .ints([2, 2, 2, 2])]) }
    func testConvAsymmetricPads() { conv([1, 2, 5, 6], [3, 2, 3, 2], ["pads": .ints([0, 1, 2, 0])]) }
    func testConvAutoPad() {
        conv([1, 2, 6, 6], [3, 2, 3, 3], ["auto_pad": .string("SAME_UPPER"), "strides": .ints([2, 2])])
        conv([1, 2, 5, 5], [3, 2, 2, 2], ["auto_pad": .string("SAME_LOWER")])
        conv([1, 2, 5, 5], [3, 2, 3, 3], bias: false, ["auto_pad": .string("VALID")])
    }
    func testConvGrouped() { conv([1, 4, 5, 5], [6, 2, 3, 3], ["group": .int(2), "pads": .ints([1, 1, 1, 1])]) }
    /// MixFFN's depthwise 3×3 (stride 1: dX through the rotated-kernel forward), and the scatter path.
    func testConvDepthwise() {
        conv([2, 4, 6, 6], [4, 1, 3, 3], ["group": .int(4), "pads": .ints([1, 1, 1, 1])])
        conv([1, 3, 7, 7], [3, 1, 3, 3], ["group": .int(3), "pads": .ints([1, 1, 1, 1]), "strides": .ints([2, 2])])
        conv([1, 2, 5, 5], [4, 1, 3, 3], ["group": .int(2), "pads": .ints([1, 1, 1, 1])])            // multiplier 2
        conv([1, 2, 6, 5], [2, 1, 3, 3], ["group": .int(2), "pads": .ints([0, 1, 2, 0])])            // asymmetric
        conv([1, 2, 7, 7], [2, 1, 3, 3], ["group": .int(2), "pads": .ints([2, 2, 2, 2]), "dilations": .ints([2, 2])])
        conv([1, 2, 5, 5], [2, 1, 3, 3], ["group": .int(2), "pads": .ints([3, 3, 3, 3])])            // pads beyond the kernel
        conv([1, 2, 5, 5], [2, 1, 5, 5], ["group": .int(2), "pads": .ints([2, 2, 2, 2])])
    }
    func testConv1D() {
        conv([2, 3, 8], [4, 3, 3], ["pads": .ints([1, 1]), "strides": .ints([2])])
        conv([1, 3, 8], [3, 1, 3], ["group": .int(3), "pads": .ints([1, 1])])
        conv([1, 3, 6], [2, 3, 1])
    }
    func testConv3D() { conv([1, 2, 4, 4, 3], [3, 2, 2, 2, 2], ["pads": .ints([1, 0, 0, 0, 1, 1])]) }
    func testConvOnlyWeight() { conv([1, 3, 5, 5], [2, 3, 3, 3], differentiable: [1, 2]) }

    /// The GEMM paths with tiny column tiles (several tiles per image, tiles splitting output rows).
    func testConvTiled() {
        ConvTiling.$current.withValue(ConvTiling(columnBudget: 40, minimumTile: 3, gradWeightColumnFactor: 1)) {
            conv([2, 2, 7, 6], [3, 2, 3, 3], ["pads": .ints([1, 1, 1, 1]), "strides": .ints([2, 1])])
            conv([1, 2, 6, 6], [2, 2, 2, 2], ["strides": .ints([2, 2])])
        }
    }

    /// The kernels against a plain-loop reference on a non-trivial shape (every element).
    func testConvGradKernelsMatchReference() throws {
        for (x, w, attrs) in [([2, 4, 7, 6], [6, 2, 3, 3], ["group": Attribute.int(2), "pads": .ints([1, 0, 2, 1]), "strides": .ints([2, 1])]),
                              ([2, 3, 6, 6], [3, 1, 3, 3], ["group": Attribute.int(3), "pads": .ints([1, 1, 1, 1])]),
                              ([1, 4, 5, 5], [3, 4, 1, 1], [:])] {
            let xt = random(x, seed: 21), wt = random(w, seed: 22)
            let y = try SingleOp.run("Conv", inputs: [xt, wt], attributes: attrs)[0]
            let dy = random(y.shape, seed: 23)
            let dx = try SingleOp.run("ConvGradInput", domain: trainingDomain,
                                      inputs: [dy, wt, Tensor(x.map { Int64($0) }, shape: [4])], attributes: attrs)[0]
            let dw = try SingleOp.run("ConvGradWeight", domain: trainingDomain,
                                      inputs: [dy, xt, Tensor(w.map { Int64($0) }, shape: [4])], attributes: attrs)[0]
            // Reference: scatter every product of the forward loop.
            let group = (attrs["group"].flatMap { if case .int(let g) = $0 { return g } else { return nil } }) ?? 1
            let strides = (attrs["strides"].flatMap { if case .ints(let v) = $0 { return v } else { return nil } }) ?? [1, 1]
            let pads = (attrs["pads"].flatMap { if case .ints(let v) = $0 { return v } else { return nil } }) ?? [0, 0, 0, 0]
            var rdx = [Double](repeating: 0, count: xt.count), rdw = [Double](repeating: 0, count: wt.count)
            let px = xt.pointer(Float.self), pw = wt.pointer(Float.self), pdy = dy.pointer(Float.self)
            let (n, c, h, wd) = (x[0], x[1], x[2], x[3]), (m, cg, kh, kw) = (w[0], w[1], w[2], w[3])
            let (oh, ow) = (y.shape[2], y.shape[3]), mg = m / group
            for i in 0..<n { for o in 0..<m { for r in 0..<oh { for q in 0..<ow {
                let g = Double(pdy[((i * m + o) * oh + r) * ow + q])
                for ci in 0..<cg { for a in 0..<kh { for b in 0..<kw {
                    let ih = r * strides[0] - pads[0] + a, iw = q * strides[1] - pads[1] + b
                    guard ih >= 0, ih < h, iw >= 0, iw < wd else { continue }
                    let ch = (o / mg) * cg + ci
                    let xi = ((i * c + ch) * h + ih) * wd + iw, wi = ((o * cg + ci) * kh + a) * kw + b
                    rdx[xi] += g * Double(pw[wi]); rdw[wi] += g * Double(px[xi])
                } } }
            } } } }
            let gdx = try dx.doubles(), gdw = try dw.doubles()
            for i in 0..<rdx.count { XCTAssertEqual(gdx[i], rdx[i], accuracy: 1e-4, "dX[\(i)] \(x) \(w)") }
            for i in 0..<rdw.count { XCTAssertEqual(gdw[i], rdw[i], accuracy: 1e-4, "dW[\(i)] \(x) \(w)") }
        }
    }

    func testConvGradRejectsBadShapes() {
        let dy = random([1, 2, 3, 3], seed: 1), w = random([2, 3, 3, 3], seed: 2)
        XCTAssertThrowsError(try SingleOp.run("ConvGradInput", domain: trainingDomain,
                                              inputs: [dy, w, Tensor([Int64(1), 3, 6, 6], shape: [4])]))
        XCTAssertThrowsError(try SingleOp.run("ConvGradInput", domain: trainingDomain,
                                              inputs: [dy, w, Tensor([Int64(1), 3, -5, 5], shape: [4])]))
        XCTAssertThrowsError(try SingleOp.run("ConvGradWeight", domain: trainingDomain,
                                              inputs: [dy, random([1, 3, 5, 5], seed: 3), Tensor([Int64(2), 4, 3, 3], shape: [4])]))
    }
}

extension NNGradientTests {
    // MARK: ConvTranspose

    func testConvTranspose() {
        check("ConvTranspose", [random([1, 3, 4, 4], seed: 1), random([3, 2, 3, 3], seed: 2), random([2], seed: 3)],
              ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1]), "output_padding": .ints([1, 1])], differentiable: [0, 1, 2])
        check("ConvTranspose", [random([2, 4, 3, 3], seed: 1), random([4, 1, 2, 2], seed: 2)],
              ["group": .int(2), "strides": .ints([2, 2])], differentiable: [0, 1])
        check("ConvTranspose", [random([1, 2, 5], seed: 1), random([2, 3, 3], seed: 2)],
              ["dilations": .ints([2]), "pads": .ints([1, 0])], differentiable: [0, 1])
    }

    // MARK: pools

    func testGlobalPools() {
        check("GlobalAveragePool", [random([2, 3, 4, 5], seed: 1)], differentiable: [0])
        check("GlobalMaxPool", [random([2, 3, 4, 5], seed: 1)], differentiable: [0])
        check("GlobalAveragePool", [random([1, 2, 3, 2, 2], seed: 2)], differentiable: [0])
    }

    func testAveragePool() {
        check("AveragePool", [random([1, 2, 5, 5], seed: 1)], ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]),
                                                               "pads": .ints([1, 1, 1, 1])], differentiable: [0])
        check("AveragePool", [random([1, 2, 5, 5], seed: 1)], ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1]),
                                                               "count_include_pad": .int(1)], differentiable: [0])
        check("AveragePool", [random([1, 2, 6, 6], seed: 1)], ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2]),
                                                               "ceil_mode": .int(1)], differentiable: [0])
        check("AveragePool", [random([2, 2, 7], seed: 1)], ["kernel_shape": .ints([3]), "strides": .ints([2])], differentiable: [0])
    }

    func testMaxPool() {
        // Distinct values, so a finite-difference step never changes which element is the maximum.
        func distinct(_ shape: [Int]) -> Tensor {
            let n = shape.reduce(1, *)
            return Tensor((0..<n).map { Float(($0 * 37) % n) / Float(n) * 4 - 2 }, shape: shape)
        }
        for attrs: [String: Attribute] in [["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])],
                                           ["kernel_shape": .ints([2, 2]), "dilations": .ints([2, 2])],
                                           ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2]), "ceil_mode": .int(1)]] {
            directCheckMax(distinct([1, 2, 7, 7]), attrs)
        }
    }

    /// Max pooling with a step smaller than the gap between values (default 1e-2 could swap maxima).
    func directCheckMax(_ x: Tensor, _ attrs: [String: Attribute], file: StaticString = #filePath, line: UInt = #line) {
        do { try directCheck("MaxPool", [x], attrs, opset: 17, differentiable: [0]) } catch {
            XCTFail("MaxPool \(attrs): \(error)", file: file, line: line)
        }
    }
}
