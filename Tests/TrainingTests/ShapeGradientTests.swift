import Foundation
import XCTest
import GraphIR
@testable import Runtime
@testable import Training

/// Gradient rules of the shape / data-movement family: a finite-difference check per rule and per
/// important attribute combination (negative axes, negative steps, clamping, duplicate and negative
/// gather indices, opset 11 vs 13 forms of Squeeze/Unsqueeze/Split), plus Autodiff through integer
/// shape arithmetic.
final class ShapeGradientTests: XCTestCase {

    // MARK: helpers

    func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        let n = shape.reduce(1, *)
        var v = [Float](repeating: 0, count: n)
        for i in 0..<n {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            v[i] = (Float(s % 20001) / 10000 - 1) * scale
        }
        return Tensor(v, shape: shape)
    }

    func ints(_ v: [Int]) -> Tensor { Tensor(v.map { Int64($0) }, shape: [v.count]) }

    /// Finite-difference check of one rule. Calls the rule with a fixed upstream gradient dL/dy = w
    /// (outputs in `withoutGradient` get none), builds the backward graph, runs it, and compares with
    /// central differences of L = Σ y·w. When the loss GradientCheck builds (Mul, ReduceSum, Sum) is
    /// differentiable, runs GradientCheck (the whole Autodiff path) too.
    func check(_ op: String, _ inputs: [Tensor?], _ attributes: [String: Attribute] = [:], opset: Int = 17,
               outputCount: Int = 1, differentiable: [Int] = [0], withoutGradient: Set<Int> = [],
               tolerance: Double = 1e-2, file: StaticString = #filePath, line: UInt = #line) {
        do {
            // GradientCheck differentiates float32 outputs only.
            if withoutGradient.isEmpty, differentiable.allSatisfy({ inputs[$0]?.dataType == .float }), OpRegistry.schema(domain: "", opType: "Mul")?.gradient != nil,
               OpRegistry.schema(domain: "", opType: "Sum")?.gradient != nil {
                try GradientCheck.check(op, inputs: inputs, attributes: attributes, opset: opset, outputCount: outputCount,
                                        differentiable: differentiable, tolerance: 2e-2)
            }
            // These ops are linear: the gradient is a sum of a few weights, so the error is rounding only.
            try GradientCheck.checkRule(op, inputs: inputs, attributes: attributes, opset: opset, outputCount: outputCount,
                                        differentiable: differentiable, withoutGradient: withoutGradient, samples: 80,
                                        tolerance: tolerance, errorScale: .unit, oneGradientPerInput: true)
        } catch {
            XCTFail("\(op) \(attributes) opset \(opset): \(error)", file: file, line: line)
        }
    }

    // MARK: views

    func testReshapeFlattenGradients() {
        let x = random([2, 3, 4], seed: 1)
        check("Reshape", [x, ints([4, -1])], opset: 13)
        check("Reshape", [x, ints([0, 12])], opset: 14)
        check("Reshape", [x, ints([2, 0, 2, 2])], ["allowzero": .int(0)], opset: 17)
        check("Flatten", [x], opset: 11)
        check("Flatten", [x], ["axis": .int(-1)], opset: 13)
        check("Flatten", [x], ["axis": .int(0)], opset: 13)
        let xd = Tensor(try! x.doubles(), shape: x.shape)
        check("Reshape", [xd, ints([-1])], opset: 17)
    }

    func testSqueezeUnsqueezeGradients() {
        let x = random([3, 1, 4, 1], seed: 2)
        check("Squeeze", [x], ["axes": .ints([1, -1])], opset: 11)
        check("Squeeze", [x], opset: 11)
        check("Squeeze", [x, ints([-3])], opset: 13)
        check("Squeeze", [x], opset: 13)
        let y = random([3, 4], seed: 3)
        check("Unsqueeze", [y], ["axes": .ints([0, -1])], opset: 11)
        check("Unsqueeze", [y, ints([1, -1])], opset: 13)
        check("Unsqueeze", [y, ints([-3])], opset: 18)
    }

    func testIdentityDropoutGradients() {
        let x = random([3, 5], seed: 4)
        check("Identity", [x])
        check("Dropout", [x], ["ratio": .float(0.3)], opset: 11)
        check("Dropout", [x], opset: 13)
        check("Dropout", [x], opset: 13, outputCount: 2)
        check("Dropout", [x, Tensor(scalar: Float(0.4)), Tensor([false], shape: [])], opset: 13, outputCount: 2)
        // Training mode: the mask output, or (without one) the mask regenerated from the seed.
        check("Dropout", [x, Tensor(scalar: Float(0.4)), Tensor([true], shape: [])], ["seed": .int(3)], opset: 13, outputCount: 2)
        check("Dropout", [x, Tensor(scalar: Float(0.25)), Tensor([true], shape: [])], ["seed": .int(5)], opset: 17)
        check("Dropout", [x, nil, Tensor([true], shape: [])], ["seed": .int(7)], opset: 12)
        let xd = Tensor(try! x.doubles(), shape: x.shape)
        check("Dropout", [xd, Tensor(scalar: 0.5), Tensor([true], shape: [])], ["seed": .int(9)], opset: 13, outputCount: 2)
    }

    func testDropoutGradientWithoutMaskOrSeedIsUnsupported() throws {
        // Training mode, no mask output, no seed: the mask cannot be recovered.
        let x = random([2, 3], seed: 5)
        XCTAssertThrowsError(try GradientCheck.checkRule("Dropout", inputs: [x, Tensor(scalar: Float(0.5)), Tensor([true], shape: [])],
                                                         opset: 13, differentiable: [0], samples: 80, tolerance: 1e-2, errorScale: .unit))
    }

    // MARK: transpose and block rearrangements

    func testTransposeGradients() {
        let x = random([2, 3, 4], seed: 6)
        check("Transpose", [x], ["perm": .ints([2, 0, 1])])
        check("Transpose", [x], ["perm": .ints([1, 2, 0])])
        check("Transpose", [x])
        check("Transpose", [random([2, 3, 2, 2], seed: 7)], ["perm": .ints([0, 2, 3, 1])])
    }

    func testDepthToSpaceGradients() {
        let x = random([1, 8, 2, 3], seed: 8)
        check("DepthToSpace", [x], ["blocksize": .int(2)], opset: 11)
        check("DepthToSpace", [x], ["blocksize": .int(2), "mode": .string("DCR")], opset: 13)
        check("DepthToSpace", [x], ["blocksize": .int(2), "mode": .string("CRD")], opset: 13)
        check("SpaceToDepth", [random([2, 2, 4, 2], seed: 9)], ["blocksize": .int(2)], opset: 13)
    }

    // MARK: concat / split

    func testConcatGradients() {
        let a = random([2, 3, 4], seed: 10), b = random([2, 1, 4], seed: 11), c = random([2, 2, 4], seed: 12)
        check("Concat", [a, b, c], ["axis": .int(1)], differentiable: [0, 1, 2])
        check("Concat", [a, b, c], ["axis": .int(-2)], differentiable: [0, 2])   // b is a constant
        check("Concat", [a, random([1, 3, 4], seed: 13)], ["axis": .int(0)], differentiable: [0, 1])
        check("Concat", [a, random([2, 3, 2], seed: 14)], ["axis": .int(-1)], differentiable: [1])
        check("Concat", [a], ["axis": .int(2)], opset: 11)
        // Many short rows (outer ≥ 4 × threads): the row-parallel copy.
        check("Concat", [random([3, 4, 5], seed: 31), random([3, 4, 2], seed: 32)], ["axis": .int(2)], differentiable: [0, 1])
    }

    func testSplitGradients() {
        let x = random([2, 6, 3], seed: 15)
        // opset 11: split attribute; 13: split input; 18: num_outputs; equal parts without either.
        check("Split", [x], ["axis": .int(1), "split": .ints([1, 2, 3])], opset: 11, outputCount: 3)
        check("Split", [x, ints([4, 2])], ["axis": .int(-2)], opset: 13, outputCount: 2)
        check("Split", [x], ["axis": .int(1)], opset: 13, outputCount: 3)
        check("Split", [random([2, 7, 3], seed: 16)], ["axis": .int(1), "num_outputs": .int(3)], opset: 18, outputCount: 3)
        check("Split", [x], ["axis": .int(-1)], opset: 11, outputCount: 3)
        // Outputs without a gradient contribute zeros.
        check("Split", [x, ints([1, 2, 3])], ["axis": .int(1)], opset: 13, outputCount: 3, withoutGradient: [0, 2])
        check("Split", [x], ["axis": .int(2), "split": .ints([2, 1])], opset: 11, outputCount: 2, withoutGradient: [1])
    }

    // MARK: slice

    func testSliceGradients() {
        let x = random([4, 5, 6], seed: 17)
        check("Slice", [x, ints([1]), ints([3])], opset: 11)
        check("Slice", [x, ints([0, 1]), ints([2, 5]), ints([0, 2])], opset: 13)
        // Negative axes, negative starts/ends, steps > 1.
        check("Slice", [x, ints([-4, 1]), ints([-1, 100]), ints([-1, -2]), ints([2, 2])], opset: 13)
        // Negative steps, clamping out-of-range starts/ends.
        check("Slice", [x, ints([100]), ints([-100]), ints([1]), ints([-2])], opset: 13)
        check("Slice", [x, ints([-1, 4]), ints([0, -100]), ints([2, 0]), ints([-1, -3])], opset: 17)
        check("Slice", [x, ints([Int(Int64.max)]), ints([Int(Int64.min)]), ints([0]), ints([-1])], opset: 13)
        // Empty slice: gradient of zeros.
        check("Slice", [x, ints([3]), ints([1]), ints([1])], opset: 13)
        // Whole tensor.
        check("Slice", [x, ints([0]), ints([Int(Int64.max)]), ints([0])], opset: 13)
        // A sliced axis of size 1 and an inner contiguous run.
        check("Slice", [x, ints([2]), ints([3]), ints([0])], opset: 13)
    }

    // MARK: gather

    func testGatherGradients() {
        let x = random([5, 3], seed: 18)
        // Duplicate and negative indices accumulate.
        check("Gather", [x, Tensor([Int64(1), 3, -4, 1, 4], shape: [5])], opset: 13)
        check("Gather", [x, Tensor([Int64(0), -1, 0, 2], shape: [2, 2])], ["axis": .int(0)], opset: 11)
        check("Gather", [x, Tensor([Int32(2), 2, -1], shape: [3])], ["axis": .int(-1)], opset: 13)
        let x3 = random([2, 4, 3], seed: 19)
        check("Gather", [x3, Tensor(scalar: Int64(-2))], ["axis": .int(1)], opset: 13)
        check("Gather", [x3, Tensor([Int64(3), 0, 3], shape: [3, 1])], ["axis": .int(1)], opset: 13)
        let xd = Tensor(try! x3.doubles(), shape: x3.shape)
        check("Gather", [xd, Tensor([Int64(1), 1], shape: [2])], ["axis": .int(2)], opset: 13)
    }

    func testGatherGradLargeInnerIsParallelSafe() throws {
        // inner > 4096 splits into chunks; duplicates must still accumulate exactly.
        let dy = random([2, 3, 5000], seed: 20)
        let idx = Tensor([Int64(1), -2, 1], shape: [3])
        let out = try SingleOp.run("GatherGrad", domain: trainingDomain, inputs: [dy, idx, ints([2, 2, 5000])],
                                   attributes: ["axis": .int(1)], opset: 17,
                                   context: ExecutionContext(threads: 2))[0]
        XCTAssertEqual(out.shape, [2, 2, 5000])
        let g = dy.pointer(Float.self), o = out.pointer(Float.self)
        for b in 0..<2 {
            for i in stride(from: 0, to: 5000, by: 37) {
                let row0 = g[(b * 3 + 1) * 5000 + i]
                let row1 = g[(b * 3 + 0) * 5000 + i] + g[(b * 3 + 2) * 5000 + i]
                XCTAssertEqual(o[(b * 2 + 0) * 5000 + i], row0)
                XCTAssertEqual(o[(b * 2 + 1) * 5000 + i], row1, accuracy: 1e-6)
            }
        }
    }

    // MARK: expand / tile / pad

    func testExpandTileGradients() {
        check("Expand", [random([3, 1], seed: 21), ints([2, 3, 4])], opset: 13)
        check("Expand", [random([2, 1, 4], seed: 22), ints([3, 4])], opset: 13)
        check("Expand", [random([2, 3], seed: 23), ints([2, 3])], opset: 13)
        check("Tile", [random([2, 3], seed: 24), ints([2, 3])], opset: 13)
        check("Tile", [random([2, 1, 3], seed: 25), ints([1, 4, 1])], opset: 13)
        check("Tile", [random([2, 3], seed: 26), ints([1, 1])], opset: 13)
    }

    func testPadGradients() {
        let x = random([2, 3, 4], seed: 27)
        check("Pad", [x, ints([0, 1, 2, 0, 2, 1])], opset: 13)
        check("Pad", [x, ints([0, 1, 2, 0, 2, 1]), Tensor(scalar: Float(1.5))], opset: 13)
        // Negative pads crop.
        check("Pad", [x, ints([0, -1, 1, 0, 1, -2])], opset: 13)
        check("Pad", [x, ints([0, 2, 3, 0, 1, 2])], ["mode": .string("reflect")], opset: 13)
        check("Pad", [x, ints([1, 2, 3, 0, 1, 4])], ["mode": .string("edge")], opset: 11)
        check("Pad", [x, ints([0, 4, 5, 0, 2, 1])], ["mode": .string("wrap")], opset: 19)
        // axes input (opset 18).
        check("Pad", [x, ints([1, 2, 0, 3]), nil, ints([-1, 0])], opset: 18)
        check("Pad", [x, ints([2, 3]), nil, ints([2])], ["mode": .string("reflect")], opset: 18)
    }

    // MARK: generators and the integer path

    func testGeneratorRulesReturnNoGradient() throws {
        for op in ["Shape", "Size", "ConstantOfShape", "Range"] {
            let schema = try XCTUnwrap(OpRegistry.schema(domain: "", opType: op))
            XCTAssertNotNil(schema.gradient, op)
        }
    }

    /// Shape arithmetic on a parameter (Shape → Cast → Gather → Unsqueeze → Concat → Reshape, Size →
    /// Range → Gather indices, ConstantOfShape) lies on the path to the loss but only through integer
    /// tensors or fills: Autodiff must not ask ops there for gradients (Cast has no rule: asking it
    /// would throw), and the parameter gradient is exact.
    func testAutodiffThroughIntegerShapeArithmetic() throws {
        var graph = Graph(name: "integer-path")
        graph.inputs = [ValueInfo(name: "x", type: TensorType(.float, known: [2, 3, 4]))]
        let b = GraphBuilder(graph: graph, prefix: "f")
        let shape = b.add1("Shape", ["x"])
        let cast = b.add1("Cast", [shape], attributes: ["to": .int(Int(DataType.int64.rawValue))])
        let first = b.add1("Gather", [cast, b.constant(Tensor(scalar: Int64(0)))], attributes: ["axis": .int(0)])
        let unsq = b.add1("Unsqueeze", [first, b.int64s([0])])
        let target = b.add1("Concat", [unsq, b.int64s([-1])], attributes: ["axis": .int(0)])
        let flat = b.add1("Reshape", ["x", target])                             // [2, 12]
        let size = b.add1("Size", ["x"])
        let half = b.add1("Div", [size, b.constant(Tensor(scalar: Int64(4)))])  // 6
        let idx = b.add1("Range", [b.constant(Tensor(scalar: Int64(0))), half, b.constant(Tensor(scalar: Int64(2)))])  // 0, 2, 4
        let picked = b.add1("Gather", [flat, idx], attributes: ["axis": .int(1)])   // [2, 3]
        let zeros = b.add1("ConstantOfShape", [b.add1("Shape", [picked])])          // float zeros [2, 3]
        let joined = b.add1("Concat", [picked, zeros], attributes: ["axis": .int(0)])  // [4, 3]
        let loss = b.add1("ReduceSum", [joined], attributes: ["keepdims": .int(0)])
        var g = b.graph
        g.outputs = [ValueInfo(name: loss, type: TensorType(.float, []))]
        let gg = try Autodiff.differentiate(g, opset: 17, loss: loss, parameters: ["x"])
        let session = try Session(model: Model(graph: gg.graph, opsetImports: ["": 17]))
        let x = random([2, 3, 4], seed: 28)
        let out = try session.run(["x": x])
        let grad = try out[gg.gradients[0].gradient]!.doubles()
        var expected = [Double](repeating: 0, count: 24)
        for r in 0..<2 { for c in [0, 2, 4] { expected[r * 12 + c] = 1 } }
        XCTAssertEqual(grad, expected)
        let xs = try x.doubles()
        var sum = 0.0
        for r in 0..<2 { for c in [0, 2, 4] { sum += xs[r * 12 + c] } }
        XCTAssertEqual(try out[loss]!.doubles()[0], sum, accuracy: 1e-5)
    }

    // MARK: SegFormer-like float32 shapes through the hot rules

    func testTransposeReshapeConcatBackwardOnLargerTensors() throws {
        // [N, C, H, W] → [N, HW, C] (the SegFormer patch-embedding path) and a channel Concat.
        let x = random([2, 8, 16, 16], seed: 29)
        check("Transpose", [x.reshaped([2, 8, 256])], ["perm": .ints([0, 2, 1])])
        check("Concat", [x, random([2, 4, 16, 16], seed: 30)], ["axis": .int(1)], differentiable: [0, 1])
    }
}
