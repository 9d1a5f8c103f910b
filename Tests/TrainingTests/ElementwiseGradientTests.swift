import Foundation
import XCTest
import GraphIR
@testable import Training
@testable import Runtime

/// Gradient rules of the elementwise family: finite-difference checks for every rule (several
/// broadcasting patterns), and exact values at the kinks where PyTorch picks a convention
/// (expected values from torch 2.15 autograd, written down by hand).
final class ElementwiseGradientTests: XCTestCase {

    // MARK: - Helpers

    /// Deterministic values in [lo, hi]; with `awayFrom`, none closer than `gap` to that point (so a
    /// finite-difference step never crosses a kink).
    func values(_ shape: [Int], _ lo: Float = -2, _ hi: Float = 2, seed: UInt64 = 1,
                awayFrom kink: Float? = nil, gap: Float = 0.1) -> Tensor {
        var s = seed &* 0x9E3779B97F4A7C15 | 1
        let n = shape.reduce(1, *)
        var v: [Float] = []
        while v.count < n {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            let x = lo + (hi - lo) * Float(s % 10_000) / 10_000
            if let k = kink, abs(x - k) < gap { continue }
            v.append(x)
        }
        return Tensor(v, shape: shape)
    }

    /// Broadcasting patterns for binary ops: [2,3,4]+[4], [2,1,4]·[3,1], scalar·[2,3], equal shapes.
    let patterns: [([Int], [Int])] = [([2, 3, 4], [4]), ([2, 1, 4], [3, 1]), ([], [2, 3]), ([2, 3], [])]

    func checkBinary(_ op: String, opset: Int = 17, aRange: (Float, Float) = (-2, 2), bRange: (Float, Float) = (-2, 2),
                     bAwayFromZero: Bool = false, file: StaticString = #filePath, line: UInt = #line) {
        for (k, (sa, sb)) in patterns.enumerated() {
            let a = values(sa, aRange.0, aRange.1, seed: UInt64(10 + k))
            let b = values(sb, bRange.0, bRange.1, seed: UInt64(20 + k), awayFrom: bAwayFromZero ? 0 : nil, gap: 0.4)
            XCTAssertNoThrow(try GradientCheck.check(op, inputs: [a, b], opset: opset, differentiable: [0, 1]),
                             "\(op) \(sa) with \(sb)", file: file, line: line)
        }
    }

    func checkUnary(_ op: String, _ x: Tensor, attributes: [String: Attribute] = [:], opset: Int = 17,
                    file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNoThrow(try GradientCheck.check(op, inputs: [x], attributes: attributes, opset: opset, differentiable: [0]),
                         "\(op) \(attributes)", file: file, line: line)
    }

    /// Analytic gradients of L = Σ op(inputs)·dY for the inputs listed in `differentiable`
    /// (the others are constants), so dL/d input = the vector-Jacobian product with dY.
    func gradients(_ op: String, _ inputs: [Tensor?], attributes: [String: Attribute] = [:], opset: Int = 17,
                   differentiable: [Int], dY: Tensor) throws -> [Tensor] {
        try GradientCheck.vectorJacobianProducts(op, inputs: inputs, attributes: attributes, opset: opset,
                                                 differentiable: differentiable, dY: dY)
    }

    func floats(_ t: Tensor) -> [Float] { Array(UnsafeBufferPointer(start: t.pointer(Float.self), count: t.count)) }

    // MARK: - Binary arithmetic

    func testAdd() { checkBinary("Add") }
    func testSub() { checkBinary("Sub") }
    func testMul() { checkBinary("Mul") }
    func testDiv() { checkBinary("Div", bAwayFromZero: true) }
    func testPow() { checkBinary("Pow", aRange: (0.5, 2), bRange: (-1.5, 2.5)) }

    func testPowSquareConstantExponent() throws {
        // Decomposed LayerNorm: Pow(x, 2) with a constant exponent (float and int64).
        let x = values([2, 3, 4])
        try GradientCheck.check("Pow", inputs: [x, Tensor([Float(2)], shape: [])], differentiable: [0])
        try GradientCheck.check("Pow", inputs: [x, Tensor([Int64(3)], shape: [])], differentiable: [0])
        let g = try gradients("Pow", [Tensor([Float(3), -1, 0], shape: [3]), Tensor([Float(2)], shape: [])],
                              differentiable: [0], dY: Tensor([Float(1), 2, 5], shape: [3]))
        XCTAssertEqual(floats(g[0]), [6, -4, 0])
    }

    func testPowSpecialValues() throws {
        // torch.pow: exponent 0 → base gradient 0; base 0 with exponent ≥ 0 → exponent gradient 0.
        let a = Tensor([Float(0), 0, 2, 2], shape: [4]), b = Tensor([Float(0), 2, 3, 0], shape: [4])
        let g = try gradients("Pow", [a, b], differentiable: [0, 1], dY: Tensor([Float](repeating: 1, count: 4), shape: [4]))
        XCTAssertEqual(floats(g[0]), [0, 0, 12, 0])
        let e = floats(g[1])
        XCTAssertEqual(e[0], 0); XCTAssertEqual(e[1], 0)
        XCTAssertEqual(e[2], 8 * logf(2), accuracy: 1e-5)
        XCTAssertEqual(e[3], logf(2), accuracy: 1e-6)
    }

    func testSameInputTwice() throws {
        // Mul(x, x): both contributions are summed (2·x·dY).
        var graph = Graph(name: "square")
        graph.inputs = [ValueInfo(name: "x", type: TensorType(.float, known: [3]))]
        graph.nodes = [Node(name: "m", opType: "Mul", inputs: ["x", "x"], outputs: ["y"]),
                       Node(name: "s", opType: "ReduceSum", inputs: ["y"], outputs: ["l"], attributes: ["keepdims": .int(0)])]
        graph.outputs = [ValueInfo(name: "l", type: TensorType(.float, []))]
        let gg = try Autodiff.differentiate(graph, opset: 17, loss: "l", parameters: ["x"])
        let s = try Session(model: Model(graph: gg.graph, opsetImports: ["": 17]), options: SessionOptions(threads: 1))
        let out = try s.run(["x": Tensor([Float(1), -2, 3], shape: [3])])
        XCTAssertEqual(floats(out[gg.gradients[0].gradient]!), [2, -4, 6])
    }

    // MARK: - Variadic

    func testMaxMin() throws {
        // Values on two interleaved grids (x.x5 and x.x0), so no finite-difference step crosses a tie.
        func grid(_ t: Tensor, _ offset: Float) -> Tensor {
            Tensor(floats(t).map { ($0 * 10).rounded() / 10 + offset }, shape: t.shape)
        }
        for op in ["Max", "Min"] {
            for (k, (sa, sb)) in patterns.enumerated() {
                let a = grid(values(sa, seed: UInt64(10 + k)), 0.05), b = grid(values(sb, seed: UInt64(20 + k)), 0)
                XCTAssertNoThrow(try GradientCheck.check(op, inputs: [a, b], differentiable: [0, 1]), "\(op) \(sa) with \(sb)")
            }
            // Three inputs with broadcasting: the fold's intermediate is recomputed.
            try GradientCheck.check(op, inputs: [grid(values([2, 3], seed: 1), 0), grid(values([3], seed: 2), 0.03),
                                                 grid(values([2, 1], seed: 3), 0.06)],
                                    differentiable: [0, 1, 2])
            try GradientCheck.check(op, inputs: [values([2, 3], seed: 4)], differentiable: [0])
        }
    }

    func testMaxMinTies() throws {
        // torch.maximum/minimum: a tie gives each side half; NaN gives both sides the full gradient.
        let a = Tensor([Float(1), 2, 3, .nan], shape: [4]), b = Tensor([Float(1), 3, 2, 1], shape: [4])
        let ones = Tensor([Float](repeating: 1, count: 4), shape: [4])
        let gmax = try gradients("Max", [a, b], differentiable: [0, 1], dY: ones)
        XCTAssertEqual(floats(gmax[0]), [0.5, 0, 1, 1])
        XCTAssertEqual(floats(gmax[1]), [0.5, 1, 0, 1])
        let gmin = try gradients("Min", [a, b], differentiable: [0, 1], dY: ones)
        XCTAssertEqual(floats(gmin[0]), [0.5, 1, 0, 1])
        XCTAssertEqual(floats(gmin[1]), [0.5, 0, 1, 1])
        // Broadcast tie: b = [1] ties with two elements of a.
        let g = try gradients("Max", [Tensor([Float(1), 1, 0], shape: [3]), Tensor([Float(1)], shape: [1])],
                              differentiable: [0, 1], dY: Tensor([Float(2), 4, 8], shape: [3]))
        XCTAssertEqual(floats(g[0]), [1, 2, 0])
        XCTAssertEqual(floats(g[1]), [1 + 2 + 8])
    }

    func testSumMean() throws {
        for op in ["Sum", "Mean"] {
            try GradientCheck.check(op, inputs: [values([2, 3, 4], seed: 1), values([4], seed: 2), values([3, 1], seed: 3)],
                                    differentiable: [0, 1, 2])
            try GradientCheck.check(op, inputs: [values([2, 3], seed: 4)], differentiable: [0])
        }
    }

    func testWhere() throws {
        let c = Tensor([true, false, false, true, true, false], shape: [2, 3])
        try GradientCheck.check("Where", inputs: [c, values([2, 3], seed: 1), values([2, 3], seed: 2)], differentiable: [1, 2])
        // Broadcasting: condition [2,3], X [3], Y scalar.
        try GradientCheck.check("Where", inputs: [c, values([3], seed: 3), values([], seed: 4)], differentiable: [1, 2])
        try GradientCheck.check("Where", inputs: [Tensor([true, false], shape: [2, 1]), values([2, 1, 3], seed: 5), values([1, 3], seed: 6)],
                                differentiable: [1, 2])
        let g = try gradients("Where", [c, Tensor([Float(1), 2, 3], shape: [3]), Tensor([Float(0)], shape: [])],
                              differentiable: [1, 2], dY: Tensor([Float(1), 2, 4, 8, 16, 32], shape: [2, 3]))
        XCTAssertEqual(floats(g[0]), [1 + 8, 16, 0])
        XCTAssertEqual(floats(g[1]), [2 + 4 + 32])
    }

    // MARK: - Unary

    func testSmoothUnary() {
        let x = values([2, 3, 4])
        for op in ["Neg", "Exp", "Erf", "Sigmoid", "Tanh", "Softplus"] { checkUnary(op, x) }
        checkUnary("Sqrt", values([2, 3, 4], 0.2, 3))
        checkUnary("Log", values([2, 3, 4], 0.2, 3))
        checkUnary("Reciprocal", values([2, 3, 4], awayFrom: 0, gap: 0.4))
        checkUnary("Softplus", values([2, 3], 15, 30))
    }

    func testMoreActivations() throws {
        let x = values([2, 3, 4], -4, 4, awayFrom: 3, gap: 0.2)
        let hx = Tensor(floats(x).map { abs($0 + 3) < 0.2 ? $0 + 0.5 : $0 }, shape: x.shape)
        checkUnary("HardSwish", hx, opset: 14)
        checkUnary("Softsign", values([2, 3, 4], awayFrom: 0))
        checkUnary("Mish", values([2, 3, 4], -4, 4), opset: 18)
        checkUnary("ThresholdedRelu", values([2, 3, 4], awayFrom: 1), attributes: ["alpha": .float(1)])
        checkUnary("Sin", values([2, 3, 4]))
        checkUnary("Cos", values([2, 3, 4]))
        let px = values([2, 3, 4], awayFrom: 0)
        try GradientCheck.check("PRelu", inputs: [px, values([4], 0.1, 0.5, seed: 3)], differentiable: [0, 1])
        try GradientCheck.check("PRelu", inputs: [px, values([3, 1], 0.1, 0.5, seed: 4)], differentiable: [0, 1])
        try GradientCheck.check("PRelu", inputs: [px, values([], 0.1, 0.5, seed: 5)], differentiable: [0, 1])
        // PyTorch: at 0 the input gets slope · grad, the slope gets 0 · grad.
        let g = try gradients("PRelu", [Tensor([Float(-2), 0, 3], shape: [3]), Tensor([Float(0.25)], shape: [1])],
                              differentiable: [0, 1], dY: Tensor([Float(1), 2, 4], shape: [3]))
        XCTAssertEqual(floats(g[0]), [0.25, 0.5, 4])
        XCTAssertEqual(floats(g[1]), [-2])
    }

    func testGelu() {
        let x = values([2, 3, 4], -4, 4)
        checkUnary("Gelu", x, opset: 20)
        checkUnary("Gelu", x, attributes: ["approximate": .string("tanh")], opset: 20)
    }

    func testPiecewiseUnary() {
        let x = values([2, 3, 4], awayFrom: 0)
        checkUnary("Relu", x)
        checkUnary("Abs", x)
        checkUnary("LeakyRelu", x, attributes: ["alpha": .float(0.1)])
        checkUnary("LeakyRelu", x)
        checkUnary("Elu", x, attributes: ["alpha": .float(0.5)])
        checkUnary("Selu", x)
        let h = values([2, 3, 4], -4, 4, awayFrom: 2.5, gap: 0.2)
        let hx = Tensor(floats(h).map { abs($0 + 2.5) < 0.2 ? $0 + 0.5 : $0 }, shape: h.shape)
        checkUnary("HardSigmoid", hx, attributes: ["alpha": .float(0.2), "beta": .float(0.5)])
    }

    func testKinksMatchPyTorch() throws {
        let x = Tensor([Float(-1), 0, 2], shape: [3]), ones = Tensor([Float(1), 1, 1], shape: [3])
        XCTAssertEqual(floats(try gradients("Relu", [x], differentiable: [0], dY: ones)[0]), [0, 0, 1])
        XCTAssertEqual(floats(try gradients("Abs", [x], differentiable: [0], dY: ones)[0]), [-1, 0, 1])
        XCTAssertEqual(floats(try gradients("LeakyRelu", [x], attributes: ["alpha": .float(0.1)], differentiable: [0], dY: ones)[0]),
                       [0.1, 0.1, 1])
        let elu = floats(try gradients("Elu", [x], attributes: ["alpha": .float(0.5)], differentiable: [0], dY: ones)[0])
        XCTAssertEqual(elu[0], 0.5 * expf(-1), accuracy: 1e-7); XCTAssertEqual(elu[1], 0.5); XCTAssertEqual(elu[2], 1)
        let selu = floats(try gradients("Selu", [x], differentiable: [0], dY: ones)[0])
        XCTAssertEqual(selu[1], 1.7580993, accuracy: 1e-6); XCTAssertEqual(selu[2], 1.0507010, accuracy: 1e-6)
        let hs = floats(try gradients("HardSigmoid", [Tensor([Float(-3), 0, 3], shape: [3])],
                                      attributes: ["alpha": .float(1.0 / 6), "beta": .float(0.5)], differentiable: [0], dY: ones)[0])
        XCTAssertEqual(hs[0], 0); XCTAssertEqual(hs[1], 1.0 / 6, accuracy: 1e-7); XCTAssertEqual(hs[2], 0)
        XCTAssertEqual(floats(try gradients("Sqrt", [Tensor([Float(0), 4], shape: [2])], differentiable: [0],
                                            dY: Tensor([Float(1), 1], shape: [2]))[0]), [.infinity, 0.25])
        for op in ["Sign", "Floor", "Ceil", "Round"] {
            XCTAssertEqual(floats(try gradients(op, [x], differentiable: [0], dY: ones)[0]), [0, 0, 0], op)
        }
    }

    func testErfAndGeluValues() throws {
        let x = Tensor([Float(-1), 0, 0.5], shape: [3]), dy = Tensor([Float(1), 2, 3], shape: [3])
        let e = floats(try gradients("Erf", [x], differentiable: [0], dY: dy)[0])
        for (i, v) in [Float(-1), 0, 0.5].enumerated() {
            XCTAssertEqual(e[i], Float(2 / Double.pi.squareRoot() * exp(-Double(v * v))) * [1, 2, 3][i], accuracy: 1e-6)
        }
        let g = floats(try gradients("Gelu", [x], opset: 20, differentiable: [0], dY: dy)[0])
        for (i, v) in [-1.0, 0, 0.5].enumerated() {
            let want = (0.5 * (1 + erf(v / 2.0.squareRoot())) + v * exp(-v * v / 2) / (2 * Double.pi).squareRoot()) * [1, 2, 3][i]
            XCTAssertEqual(Double(g[i]), want, accuracy: 1e-6)
        }
    }

    // MARK: - Clip

    func testClip() throws {
        let x = values([2, 3, 4], -3, 3, awayFrom: 1, gap: 0.15)
        let x2 = values([2, 3, 4], -3, 3, seed: 9, awayFrom: -1, gap: 0.15)
        let lo = Tensor([Float(-1)], shape: []), hi = Tensor([Float(1)], shape: [])
        // Constant bounds (opset 11+ inputs, opset 6 attributes), one bound absent.
        try GradientCheck.check("Clip", inputs: [x, lo, hi], opset: 13, differentiable: [0])
        try GradientCheck.check("Clip", inputs: [x, nil, hi], opset: 13, differentiable: [0])
        try GradientCheck.check("Clip", inputs: [x2, lo], opset: 13, differentiable: [0])
        // Trainable bounds.
        let xx = values([2, 3, 4], -3, 3, seed: 5, awayFrom: 1, gap: 0.15)
        let clean = Tensor(floats(xx).map { abs($0 + 1) < 0.15 ? $0 + 0.3 : $0 }, shape: [2, 3, 4])
        try GradientCheck.check("Clip", inputs: [clean, lo, hi], opset: 13, differentiable: [0, 1, 2])
    }

    func testClipBoundsMatchPyTorch() throws {
        let x = Tensor([Float(-1), 0, 0.5, 1, 2], shape: [5]), ones = Tensor([Float](repeating: 1, count: 5), shape: [5])
        let lo = Tensor([Float(0)], shape: []), hi = Tensor([Float(1)], shape: [])
        // torch.clamp(x, 0., 1.): strict inside, nothing at the bounds.
        XCTAssertEqual(floats(try gradients("Clip", [x, lo, hi], opset: 13, differentiable: [0], dY: ones)[0]), [0, 0, 1, 0, 0])
        XCTAssertEqual(floats(try gradients("Clip", [x, lo], opset: 13, differentiable: [0], dY: ones)[0]), [0, 0, 1, 1, 1])
        XCTAssertEqual(floats(try gradients("Clip", [x, nil, hi], opset: 13, differentiable: [0], dY: ones)[0]), [1, 1, 1, 0, 0])
        // Opset < 11 bounds come as attributes (autodiff at opset 10 waits for Shape below opset 11):
        // the rule hands them to ClipGrad, checked here directly.
        let k = try SingleOp.run("ClipGrad", domain: trainingDomain, inputs: [ones, x],
                                 attributes: ["min": .float(0), "max": .float(1)], opset: 10)[0]
        XCTAssertEqual(floats(k), [0, 0, 1, 0, 0])
        let nan = Tensor([Float.nan], shape: [1])
        XCTAssertEqual(floats(try gradients("Clip", [nan, lo, hi], opset: 13, differentiable: [0], dY: Tensor([Float(1)], shape: [1]))[0]), [0])
        // torch.clamp with tensor bounds that need gradients: ties split in halves.
        let g = try gradients("Clip", [x, lo, hi], opset: 13, differentiable: [0, 1, 2], dY: ones)
        XCTAssertEqual(floats(g[0]), [0, 0.5, 1, 0.5, 0])
        XCTAssertEqual(floats(g[1]), [1.5])
        XCTAssertEqual(floats(g[2]), [1.5])
        // min > max: everything goes to max.
        let r = try gradients("Clip", [x, hi, lo], opset: 13, differentiable: [0, 1, 2], dY: ones)
        XCTAssertEqual(floats(r[0]), [0, 0, 0, 0, 0]); XCTAssertEqual(floats(r[1]), [0]); XCTAssertEqual(floats(r[2]), [5])
        let n = try gradients("Clip", [nan, lo, hi], opset: 13, differentiable: [0, 1, 2], dY: Tensor([Float(1)], shape: [1]))
        XCTAssertEqual(floats(n[0]), [1])
    }

    // MARK: - Cast

    func testCast() throws {
        let x = values([2, 3])
        try GradientCheck.check("Cast", inputs: [x], attributes: ["to": .int(Int(DataType.float.rawValue))], differentiable: [0])
        // float → double → float: the gradient comes back as float, unchanged.
        var graph = Graph(name: "casts")
        graph.inputs = [ValueInfo(name: "x", type: TensorType(.float, known: [3]))]
        graph.setInitializer("w", Tensor([Float(1), 2, 3], shape: [3]))
        graph.nodes = [Node(name: "c1", opType: "Cast", inputs: ["x"], outputs: ["d"], attributes: ["to": .int(Int(DataType.double.rawValue))]),
                       Node(name: "c2", opType: "Cast", inputs: ["d"], outputs: ["f"], attributes: ["to": .int(Int(DataType.float.rawValue))]),
                       Node(name: "m", opType: "Mul", inputs: ["f", "w"], outputs: ["y"]),
                       Node(name: "s", opType: "ReduceSum", inputs: ["y"], outputs: ["l"], attributes: ["keepdims": .int(0)])]
        graph.outputs = [ValueInfo(name: "l", type: TensorType(.float, []))]
        let gg = try Autodiff.differentiate(graph, opset: 17, loss: "l", parameters: ["x"])
        let s = try Session(model: Model(graph: gg.graph, opsetImports: ["": 17]), options: SessionOptions(threads: 1))
        let out = try s.run(["x": Tensor([Float(0.5), -2, 3], shape: [3])])
        let g = out[gg.gradients[0].gradient]!
        XCTAssertEqual(g.dataType, .float)
        XCTAssertEqual(floats(g), [1, 2, 3])
        // Through an integer cast nothing flows: the parameter gets a zero gradient.
        var ig = graph
        ig.nodes[0].attributes["to"] = .int(Int(DataType.int64.rawValue))
        let gi = try Autodiff.differentiate(ig, opset: 17, loss: "l", parameters: ["x"])
        let si = try Session(model: Model(graph: gi.graph, opsetImports: ["": 17]), options: SessionOptions(threads: 1))
        XCTAssertEqual(floats(try si.run(["x": Tensor([Float(0.5), -2, 3], shape: [3])])[gi.gradients[0].gradient]!), [0, 0, 0])
    }

    // MARK: - Fused kernels directly

    func testGradientKernelsOnDouble() throws {
        // The training-domain kernels also run on float64 (same formulas).
        let g = Tensor([1.0, 2.0, 3.0], shape: [3]), y = Tensor([0.25, 0.5, -1.0], shape: [3])
        let r = try SingleOp.run("SigmoidGrad", domain: trainingDomain, inputs: [g, y], opset: 17)[0]
        XCTAssertEqual(try r.doubles(), [1 * 0.75 * 0.25, 2 * 0.5 * 0.5, 3 * 2 * -1])
        let m = try SingleOp.run("MaxGrad", domain: trainingDomain, inputs: [g, y, Tensor([0.5], shape: [1])],
                                 attributes: ["input": .int(1)], opset: 17)[0]
        XCTAssertEqual(try m.doubles(), [1, 1, 3])
    }
}
