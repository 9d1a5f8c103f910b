import Foundation
import XCTest
import GraphIR
@testable import Runtime
@testable import Training

/// One table, one small finite-difference case per differentiable op of the registry, so that
/// adding an op forces a decision: give it a gradient rule and a row here, or list it in
/// `notDifferentiableOnPurpose` with the reason. The per-op files (`*GradientTests.swift`) test the
/// attribute combinations and PyTorch's conventions at the kinks; this table only guarantees coverage.
final class GradientCoverageTests: XCTestCase {

    /// One finite-difference check through `GradientCheck.check` (the whole Autodiff path).
    struct Case {
        var op: String
        var domain = ""
        var inputs: [Tensor?]
        var attributes: [String: Attribute] = [:]
        var opset = 17
        var outputCount = 1
        /// Indices of the inputs whose gradient is checked.
        var differentiable = [0]
        /// `GradientCheck.check`'s default; no op here needs a looser one.
        var tolerance = 2e-2

        /// The registry's key of the op (domain-qualified outside ai.onnx).
        var key: String { OpRegistry.key(domain, op) }
    }

    /// Why an ai.onnx op of the registry has no gradient rule (or one that sends nothing back).
    enum Reason: String {
        case integer      // integer outputs (indices, bit shifts)
        case bool         // boolean outputs (predicates, logic)
        case comparison   // boolean outputs of a comparison
        case shape        // the output depends only on the input's shape
        case constant     // fills and generators: no input the output depends on smoothly
        case unneeded     // differentiable in principle, but no SegFormer graph differentiates it yet
    }

    static let notDifferentiableOnPurpose: [String: Reason] = [
        "ArgMax": .integer, "ArgMin": .integer, "BitShift": .integer,
        "IsNaN": .bool, "IsInf": .bool, "Not": .bool, "And": .bool, "Or": .bool, "Xor": .bool,
        "Equal": .comparison, "Greater": .comparison, "Less": .comparison,
        "GreaterOrEqual": .comparison, "LessOrEqual": .comparison,
        "Shape": .shape, "Size": .shape,
        "Constant": .constant, "ConstantOfShape": .constant, "Range": .constant,
        "RandomUniform": .constant, "RandomUniformLike": .constant,
        "Tan": .unneeded, "Asin": .unneeded, "Acos": .unneeded, "Atan": .unneeded,
        "Sinh": .unneeded, "Cosh": .unneeded, "Asinh": .unneeded, "Acosh": .unneeded, "Atanh": .unneeded,
        "Mod": .unneeded, "ReduceProd": .unneeded,
        "GroupNormalization": .unneeded, "MeanVarianceNormalization": .unneeded,
        "InstanceNormalization": .unneeded, "LRN": .unneeded, "Shrink": .unneeded,   // old CNNs' ops (model suites)
    ]

    // MARK: - Inputs

    /// Deterministic values in [lo, hi] (from `GradientCheck.uniformValues`).
    static func values(_ shape: [Int], _ lo: Float = -2, _ hi: Float = 2, seed: UInt64 = 1) -> Tensor {
        let u = GradientCheck.uniformValues(count: shape.reduce(1, *), seed: seed)
        return Tensor(u.map { lo + (hi - lo) * Float($0 + 1) / 2 }, shape: shape)
    }

    /// Values in [-2, 2] moved `gap` away from a kink at `k`, so no finite-difference step crosses it.
    static func values(_ shape: [Int], awayFrom k: Float, gap: Float = 0.2, seed: UInt64 = 1) -> Tensor {
        let v = values(shape, seed: seed).toArray(Float.self)
        return Tensor(v.map { $0 >= k ? $0 + gap : $0 - gap }, shape: shape)
    }

    /// Distinct values spaced 4/n apart in a scrambled order: no finite-difference step changes
    /// which element is a maximum or minimum.
    static func distinct(_ shape: [Int]) -> Tensor {
        let n = shape.reduce(1, *)
        return Tensor((0..<n).map { Float(($0 * 37) % n) / Float(n) * 4 - 2 }, shape: shape)
    }

    static func ints(_ v: [Int]) -> Tensor { Tensor(v.map { Int64($0) }, shape: [v.count]) }

    // MARK: - The table

    static func cases() -> [Case] {
        let x = values([2, 3], seed: 1), y = values([3], seed: 2)
        let awayFromZero = values([2, 3], awayFrom: 0)
        // At least 0.2 from every integer and half-integer: the steps of Floor, Ceil and Round.
        let offGrid = Tensor([Float(-1.7), -0.3, 0.2, 0.8, 1.3, 2.2], shape: [2, 3])
        let smooth = ["Neg", "Exp", "Erf", "Sigmoid", "Tanh", "Softplus", "Sin", "Cos"].map { Case(op: $0, inputs: [x]) }
        let piecewiseConstant = ["Sign", "Floor", "Ceil", "Round"].map { Case(op: $0, inputs: [offGrid]) }
        let binary = ["Add", "Sub", "Mul"].map { Case(op: $0, inputs: [x, y], differentiable: [0, 1]) }
        return smooth + piecewiseConstant + binary + [
            // MARK: unary
            Case(op: "Sqrt", inputs: [values([2, 3], 0.2, 3)]),
            Case(op: "Log", inputs: [values([2, 3], 0.2, 3)]),
            Case(op: "Reciprocal", inputs: [values([2, 3], awayFrom: 0, gap: 0.4)]),
            Case(op: "Relu", inputs: [awayFromZero]),
            Case(op: "Abs", inputs: [awayFromZero]),
            Case(op: "Softsign", inputs: [awayFromZero]),
            Case(op: "LeakyRelu", inputs: [awayFromZero], attributes: ["alpha": .float(0.1)]),
            Case(op: "Elu", inputs: [awayFromZero], attributes: ["alpha": .float(0.5)]),
            Case(op: "Selu", inputs: [awayFromZero]),
            Case(op: "ThresholdedRelu", inputs: [values([2, 3], awayFrom: 1)], attributes: ["alpha": .float(1)]),
            // Both sides of the kinks at ±3 and ±2.5.
            Case(op: "HardSwish", inputs: [Tensor([Float(-3.6), -2.2, -0.7, 0.4, 1.9, 3.5], shape: [2, 3])], opset: 14),
            Case(op: "HardSigmoid", inputs: [Tensor([Float(-3.2), -1.4, -0.3, 0.6, 1.8, 2.9], shape: [2, 3])],
                 attributes: ["alpha": .float(0.2), "beta": .float(0.5)]),
            Case(op: "Mish", inputs: [values([2, 3], -4, 4)], opset: 18),
            Case(op: "Gelu", inputs: [values([2, 3], -3, 3)], opset: 20),
            // Trainable bounds; x at least 0.2 from either bound.
            Case(op: "Clip", inputs: [Tensor([Float(-2.5), -1.3, -0.6, 0.2, 0.8, 1.7], shape: [2, 3]),
                                      Tensor(scalar: Float(-1)), Tensor(scalar: Float(1))],
                 opset: 13, differentiable: [0, 1, 2]),
            Case(op: "Cast", inputs: [x], attributes: ["to": .int(Int(DataType.double.rawValue))]),
            Case(op: "CastLike", inputs: [x, Tensor([0.0], shape: [1])], opset: 15),

            // MARK: binary and variadic
            Case(op: "Div", inputs: [x, values([3], awayFrom: 0, gap: 0.4, seed: 2)], differentiable: [0, 1]),
            Case(op: "Pow", inputs: [values([2, 3], 0.5, 2), values([3], -1.5, 2.5, seed: 2)], differentiable: [0, 1]),
            Case(op: "PRelu", inputs: [awayFromZero, values([3], 0.1, 0.5, seed: 3)], differentiable: [0, 1]),
            // Every pair at least 0.3 apart, each side winning somewhere.
            Case(op: "Max", inputs: [Tensor([Float(-0.85), 0.35, 1.15, -0.45, 0.65, -1.25], shape: [2, 3]),
                                     Tensor([Float(0.1), -0.2, 0.7], shape: [3])], differentiable: [0, 1]),
            Case(op: "Min", inputs: [Tensor([Float(-0.85), 0.35, 1.15, -0.45, 0.65, -1.25], shape: [2, 3]),
                                     Tensor([Float(0.1), -0.2, 0.7], shape: [3])], differentiable: [0, 1]),
            Case(op: "Sum", inputs: [x, y, values([2, 1], seed: 3)], differentiable: [0, 1, 2]),
            Case(op: "Mean", inputs: [x, y, values([2, 1], seed: 3)], differentiable: [0, 1, 2]),
            Case(op: "Where", inputs: [Tensor([true, false, false, true, true, false], shape: [2, 3]), x, y],
                 differentiable: [1, 2]),

            // MARK: shape and data movement
            Case(op: "Identity", inputs: [x]),
            Case(op: "Reshape", inputs: [x, ints([3, -1])], opset: 13),
            Case(op: "Flatten", inputs: [values([2, 3, 2])], opset: 13),
            Case(op: "Squeeze", inputs: [values([3, 1, 2]), ints([1])], opset: 13),
            Case(op: "Unsqueeze", inputs: [x, ints([0])], opset: 13),
            // Training mode: the mask from the seed, identical in every forward run.
            Case(op: "Dropout", inputs: [values([3, 4]), Tensor(scalar: Float(0.4)), Tensor([true], shape: [])],
                 attributes: ["seed": .int(3)], opset: 13, outputCount: 2),
            Case(op: "Transpose", inputs: [values([2, 3, 2])], attributes: ["perm": .ints([2, 0, 1])]),
            Case(op: "DepthToSpace", inputs: [values([1, 4, 2, 2])], attributes: ["blocksize": .int(2)], opset: 13),
            Case(op: "SpaceToDepth", inputs: [values([1, 1, 4, 2])], attributes: ["blocksize": .int(2)], opset: 13),
            Case(op: "Concat", inputs: [x, values([1, 3], seed: 2)], attributes: ["axis": .int(0)], differentiable: [0, 1]),
            Case(op: "Split", inputs: [x, ints([1, 2])], attributes: ["axis": .int(1)], opset: 13, outputCount: 2),
            // Rows 0 and 2, columns 2 and 1 (a negative step).
            Case(op: "Slice", inputs: [values([4, 3]), ints([0, 2]), ints([4, 0]), ints([0, 1]), ints([2, -1])], opset: 13),
            Case(op: "Expand", inputs: [values([3, 1]), ints([2, 3, 2])], opset: 13),
            Case(op: "Tile", inputs: [x, ints([2, 1])], opset: 13),
            Case(op: "Pad", inputs: [x, ints([0, 1, 1, 0])], attributes: ["mode": .string("reflect")], opset: 13),
            // Duplicate and negative indices accumulate.
            Case(op: "Gather", inputs: [values([5, 3]), Tensor([Int64(1), 3, -4, 1], shape: [4])], opset: 13),

            // MARK: linear algebra, convolution, pooling
            Case(op: "MatMul", inputs: [values([2, 2, 3]), values([3, 2], seed: 2)], differentiable: [0, 1]),
            Case(op: "Gemm", inputs: [values([2, 3]), values([2, 3], seed: 2), values([2], seed: 3)],
                 attributes: ["transB": .int(1), "alpha": .float(0.7), "beta": .float(1.3)], differentiable: [0, 1, 2]),
            Case(op: "Conv", inputs: [values([1, 2, 5, 5]), values([3, 2, 3, 3], seed: 2), values([3], seed: 3)],
                 attributes: ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])], differentiable: [0, 1, 2]),
            Case(op: "ConvTranspose", inputs: [values([1, 2, 3, 3]), values([2, 2, 3, 3], seed: 2), values([2], seed: 3)],
                 attributes: ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1]), "output_padding": .ints([1, 1])],
                 differentiable: [0, 1, 2]),
            Case(op: "GlobalAveragePool", inputs: [values([1, 2, 3, 3])]),
            Case(op: "GlobalMaxPool", inputs: [distinct([1, 2, 3, 3])]),
            Case(op: "AveragePool", inputs: [values([1, 2, 5, 5])],
                 attributes: ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])]),
            Case(op: "MaxPool", inputs: [distinct([1, 2, 5, 5])],
                 attributes: ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])]),

            // MARK: normalisation, softmax, loss
            Case(op: "LayerNormalization", inputs: [values([3, 4]), values([4], seed: 2), values([4], seed: 3)],
                 differentiable: [0, 1, 2]),
            // The fused forms the canonicalising passes write below the ops' opsets: the same schemas and rules.
            Case(op: "LayerNormalization", domain: fusedDomain, inputs: [values([3, 4]), values([4], seed: 2), values([4], seed: 3)],
                 opset: 12, differentiable: [0, 1, 2]),
            Case(op: "Gelu", domain: fusedDomain, inputs: [values([2, 3], -3, 3)], opset: 12),
            // The fused attention (Q [2, 5, 3], K [2, 4, 3], V [2, 4, 2]); AttentionGradientTests has the rest.
            Case(op: "Attention", domain: fusedDomain, inputs: [values([2, 5, 3], -2, 2), values([2, 4, 3], -2, 2, seed: 2),
                                                                values([2, 4, 2], seed: 3)],
                 attributes: ["scale": .float(0.6)], differentiable: [0, 1, 2]),
            // MixFFN's depthwise conv over tokens [2, 3·4, 3] with its GELU; TokenDepthwiseConvGradientTests has the rest.
            Case(op: OpType.tokenDepthwiseConv, domain: fusedDomain,
                 inputs: [values([2, 12, 3]), values([3, 1, 3, 3], seed: 2), Tensor([2, 3, 3, 4].map { Int64($0) }, shape: [4]),
                          values([3], seed: 3)],
                 attributes: ["activation": .string(OpType.gelu)], differentiable: [0, 1, 3]),
            // Inference mode: mean and variance are constants.
            Case(op: "BatchNormalization", inputs: [values([2, 3, 2, 2]), values([3], seed: 2), values([3], seed: 3),
                                                    values([3], -0.3, 0.3, seed: 4), values([3], 0.6, 1, seed: 5)],
                 attributes: ["epsilon": .float(1e-3)], opset: 15, differentiable: [0, 1, 2]),
            // Training mode: batch statistics (what a training session runs for it).
            Case(op: "BatchNormTraining", domain: trainingDomain,
                 inputs: [values([2, 3, 2, 2]), values([3], seed: 2), values([3], seed: 3),
                          values([3], -0.3, 0.3, seed: 4), values([3], 0.6, 1, seed: 5)],
                 attributes: ["epsilon": .float(1e-3)], differentiable: [0, 1, 2]),
            Case(op: "Softmax", inputs: [values([2, 4])], opset: 13),
            Case(op: "LogSoftmax", inputs: [values([2, 4])], opset: 13),
            Case(op: "SoftmaxCrossEntropyLoss", inputs: [values([2, 4, 3]), Tensor([Int64(0), 3, 1, 2, 255, 1], shape: [2, 3])],
                 attributes: ["ignore_index": .int(255)], opset: 13),
            // HF's segmentation loss fused (2×3 logits upsampled to 3×5); one output: the rule recomputes.
            Case(op: "UpsampledCrossEntropyLoss", domain: trainingDomain, inputs: [values([2, 4, 2, 3]),
                 Tensor((0..<30).map { Int64($0 % 7 == 3 ? 255 : $0 % 4) }, shape: [2, 3, 5])],
                 attributes: ["mode": .string("linear"), "ignore_index": .int(255)]),

            // MARK: reductions
            Case(op: "ReduceSum", inputs: [x, ints([1])], attributes: ["keepdims": .int(0)], opset: 13),
            Case(op: "ReduceMean", inputs: [x, ints([-1])], opset: 18),
            Case(op: "ReduceMax", inputs: [distinct([2, 3])], attributes: ["axes": .ints([1]), "keepdims": .int(0)], opset: 13),
            Case(op: "ReduceMin", inputs: [distinct([2, 3]), ints([0])], opset: 18),
            Case(op: "ReduceL1", inputs: [awayFromZero], attributes: ["axes": .ints([0])], opset: 13),
            Case(op: "ReduceL2", inputs: [x], attributes: ["axes": .ints([-1])], opset: 13),
            Case(op: "ReduceLogSum", inputs: [values([2, 3], 1.5, 2.5)], attributes: ["axes": .ints([1])], opset: 13),
            Case(op: "ReduceLogSumExp", inputs: [x], attributes: ["axes": .ints([1])], opset: 13),
            Case(op: "ReduceSumSquare", inputs: [x, ints([1])], opset: 18),

            // MARK: resize
            Case(op: "Resize", inputs: [values([1, 1, 2, 3]), nil, nil, ints([1, 1, 4, 5])],
                 attributes: ["mode": .string("linear")], opset: 13),
            // Its backward graph (and every one at opset ≤ 10) uses Shape and ConstantOfShape at the model's opset.
            Case(op: "Upsample", inputs: [values([1, 1, 2, 2]), Tensor([Float(1), 1, 2, 1.5], shape: [4])],
                 attributes: ["mode": .string("linear")], opset: 9),
        ]
    }

    // MARK: - Tests

    func testEveryCaseMatchesFiniteDifferences() {
        for c in Self.cases() {
            do {
                try GradientCheck.check(c.op, domain: c.domain, inputs: c.inputs, attributes: c.attributes, opset: c.opset,
                                        outputCount: c.outputCount, differentiable: c.differentiable, tolerance: c.tolerance)
            } catch {
                XCTFail("\(c.key) (opset \(c.opset), inputs \(c.inputs.map { $0?.shape ?? [] })): \(error)")
            }
        }
    }

    func testEveryDifferentiableOpHasExactlyOneCase() {
        let schemas = OpRegistry.schemas
        let cases = Self.cases()
        let counts = Dictionary(cases.map { ($0.key, 1) }, uniquingKeysWith: +)
        let differentiable = Set(schemas.filter { $0.value.isDifferentiable }.keys)
        let missing = differentiable.subtracting(counts.keys).sorted()
        XCTAssertEqual(missing, [], "differentiable ops without a case in the table")
        let stale = Set(counts.keys).subtracting(differentiable).sorted()
        XCTAssertEqual(stale, [], "cases whose op is not a differentiable op of the registry")
        let repeated = counts.filter { $0.value > 1 }.keys.sorted()
        XCTAssertEqual(repeated, [], "ops with more than one case (the per-op files hold the variations)")
    }

    func testEveryOnnxOpIsDifferentiableOrNotOnPurpose() {
        let onnx = OpRegistry.schemas.values.filter { $0.domain.isEmpty || $0.domain == "ai.onnx" }
        let undecided = onnx.filter { !$0.isDifferentiable && Self.notDifferentiableOnPurpose[$0.opType] == nil }
        XCTAssertEqual(undecided.map(\.opType).sorted(), [],
                       "ai.onnx ops without a gradient: add a rule and a case, or list them in notDifferentiableOnPurpose")
        // The list stays true: each entry names a registered ai.onnx op that indeed has no gradient.
        let byName = Dictionary(onnx.map { ($0.opType, $0) }, uniquingKeysWith: { a, _ in a })
        let stale = Self.notDifferentiableOnPurpose.keys.filter { byName[$0]?.isDifferentiable ?? true }
        XCTAssertEqual(stale.sorted(), [], "notDifferentiableOnPurpose entries that are differentiable or not registered")
    }
}
