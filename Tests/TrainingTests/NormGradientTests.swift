import Foundation
import XCTest
import GraphIR
@testable import Runtime
@testable import Training
import TestSupport

/// Gradient rules of the normalisation / softmax / reduction / resize / loss family: finite
/// differences for every rule, PyTorch fixtures (scripts/fixtures/make_normgrad_fixtures.py) for the
/// HuggingFace loss and LayerNorm, and the ../shared SegFormer loss when that folder exists.
final class NormGradientTests: XCTestCase {

    // MARK: helpers

    /// Deterministic values in [-1, 1) scaled.
    func random(_ shape: [Int], seed: UInt64, scale: Float = 1, offset: Float = 0) -> Tensor {
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        let n = shape.reduce(1, *)
        var v = [Float](repeating: 0, count: n)
        for i in 0..<n {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            v[i] = (Float(s % 20001) / 10000 - 1) * scale + offset
        }
        return Tensor(v, shape: shape)
    }

    /// Finite-difference check of one rule. Uses `GradientCheck` once the loss it builds (Mul,
    /// ReduceSum, Sum) is differentiable; until then, calls the rule directly with dL/dy = w, which
    /// checks exactly the same thing for the op under test.
    func check(_ op: String, _ inputs: [Tensor?], _ attributes: [String: Attribute] = [:], opset: Int = 17,
               outputCount: Int = 1, differentiable: [Int], tolerance: Double = 2e-2,
               file: StaticString = #filePath, line: UInt = #line) {
        do {
            if OpRegistry.schema(domain: "", opType: "Mul")?.gradient != nil {
                try GradientCheck.check(op, inputs: inputs, attributes: attributes, opset: opset, outputCount: outputCount,
                                        differentiable: differentiable, tolerance: tolerance)
            }
            try GradientCheck.checkRule(op, inputs: inputs, attributes: attributes, opset: opset, outputCount: outputCount,
                                        differentiable: differentiable, tolerance: tolerance)
        } catch {
            XCTFail("\(op) \(attributes): \(error)", file: file, line: line)
        }
    }

    // MARK: softmax

    func testSoftmaxGradients() {
        let x = random([3, 5], seed: 1, scale: 2)
        check("Softmax", [x], opset: 13, differentiable: [0])
        check("LogSoftmax", [x], opset: 13, differentiable: [0])
        let x3 = random([2, 3, 4], seed: 2, scale: 2)
        check("Softmax", [x3], ["axis": .int(1)], opset: 13, differentiable: [0])
        check("LogSoftmax", [x3], ["axis": .int(-2)], opset: 17, differentiable: [0])
        // opset ≤ 12: coerced to 2-D at axis
        check("Softmax", [x3], ["axis": .int(1)], opset: 11, differentiable: [0])
        check("LogSoftmax", [x3], opset: 12, differentiable: [0])
        check("Softmax", [x3], ["axis": .int(0)], opset: 11, differentiable: [0])
        // float64
        let xd = Tensor(try! x3.doubles(), shape: x3.shape)
        check("Softmax", [xd], opset: 13, differentiable: [0], tolerance: 1e-4)
        check("LogSoftmax", [xd], ["axis": .int(1)], opset: 13, differentiable: [0], tolerance: 1e-4)
    }

    // MARK: layer / batch norm

    func testLayerNormGradients() {
        let x = random([4, 6], seed: 3, scale: 2, offset: 0.3)
        let s = random([6], seed: 4), b = random([6], seed: 5)
        check("LayerNormalization", [x, s, b], differentiable: [0, 1, 2])
        check("LayerNormalization", [x, s], ["epsilon": .float(1e-3)], differentiable: [0, 1])
        let x3 = random([2, 3, 4], seed: 6, scale: 2)
        check("LayerNormalization", [x3, random([3, 4], seed: 7), random([3, 4], seed: 8)], ["axis": .int(1)],
              differentiable: [0, 1, 2])
        // Scale broadcast over the normalised shape (its gradient is summed back)
        check("LayerNormalization", [x3, random([4], seed: 9), random([1, 4], seed: 10)], ["axis": .int(-2)],
              differentiable: [0, 1, 2])
        let xd = Tensor(try! x.doubles(), shape: x.shape)
        check("LayerNormalization", [xd, Tensor(try! s.doubles(), shape: [6]), Tensor(try! b.doubles(), shape: [6])],
              differentiable: [0, 1, 2], tolerance: 1e-4)
        // rows longer than a flush block, several threads' chunks
        check("LayerNormalization", [random([150, 40], seed: 11, scale: 3), random([40], seed: 12), random([40], seed: 13)],
              differentiable: [0, 1, 2])
    }

    /// LayerNormGrad's parameter sums are taken in fixed blocks of rows: the same bits at any thread
    /// count (rows enough for several blocks per thread, a ragged last block, a row length off the
    /// kernel's 16 lanes).
    func testLayerNormGradSameBitsAtEveryThreadCount() throws {
        let shape = [2, 1000 + 37, 40]
        let dy = random(shape, seed: 21), x = random(shape, seed: 22, scale: 3, offset: 0.5), scale = random([40], seed: 23)
        func run(_ threads: Int) throws -> [Tensor] {
            try Normalization.layerNormGrad(dy, x, scale, axis: -1, epsilon: 1e-5, label: "t", context: ExecutionContext(threads: threads))
        }
        let one = try run(1)
        for threads in [2, 3, 4] {
            for (i, (a, b)) in zip(one, try run(threads)).enumerated() {
                XCTAssertTrue(a.bitwiseEqual(b), "output \(i) at 1 and \(threads) threads: max diff \(maxAbsDifference(a, b))")
            }
        }
    }

    func testBatchNormInferenceGradients() {
        let x = random([2, 3, 2, 2], seed: 14, scale: 2)
        let scale = random([3], seed: 15), bias = random([3], seed: 16), mean = random([3], seed: 17, scale: 0.3)
        let variance = random([3], seed: 18, scale: 0.2, offset: 0.8)
        check("BatchNormalization", [x, scale, bias, mean, variance], ["epsilon": .float(1e-3)], opset: 15,
              differentiable: [0, 1, 2])
        check("BatchNormalization", [random([2, 3], seed: 19), scale, bias, mean, variance], opset: 11, differentiable: [0, 1, 2])
    }

    /// Batch statistics: the gradient flows through the mean and variance too (BatchNormTrainingGrad).
    func testBatchNormTrainingGradients() throws {
        let x = random([3, 2, 2, 3], seed: 24, scale: 2, offset: 0.3)
        let scale = random([2], seed: 25, offset: 1), bias = random([2], seed: 26)
        let mean = random([2], seed: 27, scale: 0.3), variance = random([2], seed: 28, scale: 0.2, offset: 0.8)
        check("BatchNormalization", [x, scale, bias, mean, variance], ["training_mode": .int(1)], opset: 15,
              differentiable: [0, 1, 2])
        // opsets 9–13: training is asked for by the running-statistics outputs (no gradient flows there)
        try GradientCheck.checkRule("BatchNormalization", inputs: [x, scale, bias, mean, variance], opset: 12, outputCount: 3,
                                    differentiable: [0, 1, 2], withoutGradient: [1, 2])
        try GradientCheck.checkRule("BatchNormTraining", domain: trainingDomain, inputs: [x, scale, bias, mean, variance],
                                    attributes: ["epsilon": .float(1e-3)], differentiable: [0, 1, 2])
    }

    // MARK: reductions

    func testReductionGradients() {
        let x = random([2, 3, 4], seed: 20, scale: 2)
        let last = Tensor([Int64(-1)], shape: [1])
        check("ReduceMean", [x, last], opset: 18, differentiable: [0])
        check("ReduceMean", [x], ["axes": .ints([-1]), "keepdims": .int(1)], opset: 14, differentiable: [0])
        check("ReduceMean", [x], ["axes": .ints([0, 2]), "keepdims": .int(0)], opset: 13, differentiable: [0])
        check("ReduceMean", [x], ["keepdims": .int(0)], opset: 17, differentiable: [0])   // all axes
        check("ReduceSum", [x, Tensor([Int64(0), 2], shape: [2])], ["keepdims": .int(0)], opset: 13, differentiable: [0])
        check("ReduceSum", [x], ["axes": .ints([1])], opset: 11, differentiable: [0])
        check("ReduceSum", [x, Tensor([Int64](), shape: [0])], ["noop_with_empty_axes": .int(1)], opset: 13, differentiable: [0])
        check("ReduceSum", [x], ["keepdims": .int(1)], opset: 13, differentiable: [0])
        check("ReduceSumSquare", [x, Tensor([Int64(1)], shape: [1])], ["keepdims": .int(0)], opset: 18, differentiable: [0])
        check("ReduceSumSquare", [x], ["axes": .ints([2])], opset: 13, differentiable: [0])
        check("ReduceSumSquare", [x, Tensor([Int64](), shape: [0])], ["noop_with_empty_axes": .int(1)], opset: 18, differentiable: [0])
        check("ReduceL2", [x], ["axes": .ints([-1])], opset: 13, differentiable: [0])
        // L1: values away from the kink at 0
        let away = Tensor(x.toArray(Float.self).map { $0 >= 0 ? $0 + 0.2 : $0 - 0.2 }, shape: x.shape)
        check("ReduceL1", [away], ["axes": .ints([0])], opset: 13, differentiable: [0])
        check("ReduceMax", [x], ["axes": .ints([1]), "keepdims": .int(0)], opset: 13, differentiable: [0])
        check("ReduceMin", [x, last], opset: 18, differentiable: [0])
        check("ReduceLogSumExp", [x], ["axes": .ints([1])], opset: 13, differentiable: [0])
        check("ReduceLogSum", [random([2, 3], seed: 21, scale: 0.5, offset: 2)], ["axes": .ints([1])], opset: 13, differentiable: [0])
    }

    func testReduceMaxSplitsTiesEvenly() throws {
        // max of [1, 3, 3] is reached twice: PyTorch's amax sends half the gradient to each
        let g = try ReduceGradient.run(Tensor([Float(2)], shape: [1]), shape: [3], axes: [0], kind: .max,
                                       x: Tensor([Float(1), 3, 3], shape: [3]), y: Tensor([Float(3)], shape: [1]),
                                       label: "t", context: ExecutionContext(threads: 1))
        XCTAssertEqual(g.toArray(Float.self), [0, 1, 1])
    }

    // MARK: resize

    func testResizeGradients() {
        let x = random([1, 2, 3, 4], seed: 22, scale: 2)
        let sizes = Tensor([Int64(1), 2, 7, 9], shape: [4])
        let down = Tensor([Int64(1), 2, 2, 3], shape: [4])
        for mode in ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"] {
            let a: [String: Attribute] = ["mode": .string("linear"), "coordinate_transformation_mode": .string(mode)]
            check("Resize", [x, nil, nil, sizes], a, opset: 13, differentiable: [0])
            check("Resize", [x, nil, nil, down], a, opset: 18, differentiable: [0])
        }
        let scales = Tensor([Float(1), 1, 2, 1.5], shape: [4])
        check("Resize", [x, nil, scales], ["mode": .string("linear")], opset: 13, differentiable: [0])
        check("Resize", [x, nil, scales], ["mode": .string("nearest")], opset: 13, differentiable: [0])
        check("Resize", [x, nil, scales], ["mode": .string("cubic")], opset: 13, differentiable: [0])
        check("Resize", [x, nil, nil, down], ["mode": .string("linear"), "antialias": .int(1)], opset: 18, differentiable: [0])
        // opset 11 form (roi and scales as empty inputs), opset 10 (scales input, asymmetric)
        let empty = Tensor([Float](), shape: [0])
        check("Resize", [x, empty, empty, sizes], ["mode": .string("linear")], opset: 11, differentiable: [0])
        // (opset 10 Resize and Upsample have rules too, but the runtime's Shape starts at opset 11,
        // so their backward graphs cannot run yet)
        // every axis resized: the general N-D path
        check("Resize", [x, nil, nil, Tensor([Int64(2), 3, 5, 2], shape: [4])], ["mode": .string("linear")], opset: 13,
              differentiable: [0])
        // float64
        let xd = Tensor(try! x.doubles(), shape: x.shape)
        check("Resize", [xd, nil, nil, sizes], ["mode": .string("linear")], opset: 13, differentiable: [0], tolerance: 1e-4)
    }

    // MARK: cross-entropy

    func testSoftmaxCrossEntropyGradients() {
        let scores = random([2, 4, 3], seed: 30, scale: 2)
        let labels = Tensor([Int64(0), 3, 1, 2, 255, 1], shape: [2, 3])
        check("SoftmaxCrossEntropyLoss", [scores, labels], ["ignore_index": .int(255)], opset: 13, differentiable: [0])
        check("SoftmaxCrossEntropyLoss", [scores, labels], ["ignore_index": .int(255), "reduction": .string("sum")],
              opset: 13, differentiable: [0])
        check("SoftmaxCrossEntropyLoss", [scores, labels], ["ignore_index": .int(255), "reduction": .string("none")],
              opset: 13, differentiable: [0])
        let weights = Tensor([Float(0.5), 2, 1, 1.5], shape: [4])
        check("SoftmaxCrossEntropyLoss", [scores, labels, weights], ["ignore_index": .int(255)], opset: 13, differentiable: [0])
        // the log_prob output carries a gradient too
        check("SoftmaxCrossEntropyLoss", [scores, labels], ["ignore_index": .int(255)], opset: 13, outputCount: 2,
              differentiable: [0])
        // 2-D scores, int32 labels, no ignore index
        check("SoftmaxCrossEntropyLoss", [random([5, 3], seed: 31, scale: 3), Tensor([Int32(0), 1, 2, 2, 0], shape: [5])],
              opset: 12, differentiable: [0])
        // 4-D
        check("SoftmaxCrossEntropyLoss", [random([1, 3, 2, 5], seed: 32), Tensor((0..<10).map { Int64($0 % 3) }, shape: [1, 2, 5])],
              opset: 17, differentiable: [0])
    }

    /// Naive Double reference of the ONNX definition.
    func naiveCrossEntropy(_ x: [Double], _ shape: [Int], _ labels: [Int], weights: [Double]?, ignore: Int?,
                           reduction: String) -> (loss: [Double], logProb: [Double]) {
        let n = shape[0], c = shape[1], d = shape.dropFirst(2).reduce(1, *)
        var logProb = [Double](repeating: 0, count: x.count)
        var loss = [Double](repeating: 0, count: n * d)
        var wsum = 0.0
        for i in 0..<n {
            for j in 0..<d {
                let m = (0..<c).map { x[(i * c + $0) * d + j] }.max()!
                let lse = m + log((0..<c).map { exp(x[(i * c + $0) * d + j] - m) }.reduce(0, +))
                for k in 0..<c { logProb[(i * c + k) * d + j] = x[(i * c + k) * d + j] - lse }
                let t = labels[i * d + j]
                if t == ignore { continue }
                let w = weights?[t] ?? 1
                wsum += w
                loss[i * d + j] = -w * logProb[(i * c + t) * d + j]
            }
        }
        switch reduction {
        case "none": return (loss, logProb)
        case "sum": return ([loss.reduce(0, +)], logProb)
        default: return ([loss.reduce(0, +) / wsum], logProb)
        }
    }

    func testSoftmaxCrossEntropyForwardMatchesNaiveReference() throws {
        let shape = [2, 7, 3, 300]   // spatial 900 > one block of 256
        let x = random(shape, seed: 40, scale: 4)
        let count = 2 * 3 * 300
        var labels = (0..<count).map { Int64(($0 * 31 + 5) % 7) }
        for i in stride(from: 0, to: count, by: 5) { labels[i] = -100 }
        let lt = Tensor(labels, shape: [2, 3, 300])
        let weights = Tensor([Float(1), 0.5, 2, 1, 0.25, 3, 1], shape: [7])
        let xs = try x.doubles(), ls = labels.map { Int($0) }
        for (red, w) in [("mean", nil), ("sum", nil), ("none", nil), ("mean", weights as Tensor?)] {
            let out = try SingleOp.run("SoftmaxCrossEntropyLoss", inputs: [x, lt] + (w.map { [$0] } ?? []),
                                       attributes: ["reduction": .string(red), "ignore_index": .int(-100)],
                                       outputCount: 2, opset: 17)
            let ref = naiveCrossEntropy(xs, shape, ls, weights: try w?.doubles(), ignore: -100, reduction: red)
            let got = try out[0].doubles()
            XCTAssertEqual(got.count, ref.loss.count)
            for i in 0..<got.count { XCTAssertEqual(got[i], ref.loss[i], accuracy: 1e-5 * max(1, abs(ref.loss[i])), "\(red) [\(i)]") }
            let lp = try out[1].doubles()
            for i in stride(from: 0, to: lp.count, by: 37) { XCTAssertEqual(lp[i], ref.logProb[i], accuracy: 1e-5) }
        }
        // every position ignored: mean is 0/0 = NaN (PyTorch), gradient exactly zero
        let allIgnored = Tensor([Int64](repeating: 255, count: 6), shape: [2, 3])
        let scores = random([2, 4, 3], seed: 41)
        let out = try SingleOp.run("SoftmaxCrossEntropyLoss", inputs: [scores, allIgnored], attributes: ["ignore_index": .int(255)], opset: 17)
        XCTAssertTrue(out[0].toArray(Float.self)[0].isNaN)
        XCTAssertEqual(out[0].shape, [])
        let grad = try SingleOp.run("SoftmaxCrossEntropyLossGrad", domain: trainingDomain,
                                    inputs: [Tensor(scalar: Float(1)), scores, allIgnored], attributes: ["ignore_index": .int(255)], opset: 17)
        XCTAssertEqual(grad[0].toArray(Float.self), [Float](repeating: 0, count: 24))
        // a label outside the classes is an error, not a crash
        XCTAssertThrowsError(try SingleOp.run("SoftmaxCrossEntropyLoss", inputs: [scores, Tensor([Int64](repeating: 4, count: 6), shape: [2, 3])], opset: 17))
        XCTAssertThrowsError(try SingleOp.run("SoftmaxCrossEntropyLoss", inputs: [scores, Tensor([Int64](repeating: 0, count: 4), shape: [2, 2])], opset: 17))
    }

    // MARK: PyTorch fixtures

    /// One case of Fixtures/normgrad/normgrad_cases.json: named tensors `{dtype: "int64" | "float32", shape, data}`.
    struct Fixture {
        var record: FixtureRecord
        func tensor(_ key: String) throws -> Tensor {
            let t = try record.record(key)
            let shape: [Int] = try t.required("shape"), data: [NSNumber] = try t.required("data")
            guard data.count == shape.reduce(1, *) else { throw t.malformed("\(data.count) values for shape \(shape)") }
            switch try t.required("dtype", as: String.self) {
            case "int64": return Tensor(data.map { $0.int64Value }, shape: shape)
            case "float32": return Tensor(data.map { $0.floatValue }, shape: shape)
            case let other: throw t.malformed("unknown dtype \(other)")
            }
        }
    }

    func cases() throws -> [String: Fixture] {
        var byName: [String: Fixture] = [:]
        for r in try FixtureRecord.list(commonFixtures.data("normgrad/normgrad_cases.json"), file: "normgrad_cases.json") {
            guard byName.updateValue(Fixture(record: r), forKey: try r.required("name")) == nil else { throw r.malformed("duplicate name") }
        }
        return byName
    }

    func assertClose(_ a: Tensor, _ b: Tensor, rtol: Double, atol: Double, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(a.shape, b.shape, what, file: file, line: line)
        let x = try a.doubles(), y = try b.doubles()
        var worst = 0.0
        for i in 0..<min(x.count, y.count) { worst = max(worst, abs(x[i] - y[i]) / (atol + rtol * abs(y[i]))) }
        XCTAssertLessThanOrEqual(worst, 1, "\(what): worst error ratio \(worst)", file: file, line: line)
    }

    /// The HuggingFace loss graph and its gradient w.r.t. the logits, against PyTorch.
    func testHuggingFaceLossMatchesPyTorch() throws {
        for (name, f) in try cases() where name.hasPrefix("hf_loss") {
            let logits = try f.tensor("logits")
            var g = Graph(name: "loss-test")
            g.inputs = [ValueInfo(name: "logits_in", type: TensorType(.float, known: logits.shape))]
            g.nodes = [Node(name: "id", opType: "Identity", inputs: ["logits_in"], outputs: ["logits"])]
            g.outputs = [ValueInfo(name: "logits", type: TensorType(.float, known: logits.shape))]
            for opset in [12, 17] { for fused in [true, false] {
                let (lg, loss) = try SegmentationLoss.appendHuggingFaceLoss(to: g, logits: "logits", labels: "labels", opset: opset,
                                                                            fused: fused)
                let s = try Session(model: Model(graph: lg, opsetImports: ["": opset]))
                let out = try s.run(["logits_in": logits, "labels": f.tensor("labels")])
                let expected = try f.tensor("loss").doubles()[0]
                let got = try XCTUnwrap(out[loss]).doubles()[0]
                XCTAssertEqual(got, expected, accuracy: 1e-5 * abs(expected), "\(name) opset \(opset) fused \(fused)")

                // Gradient w.r.t. the logits via the rules: the fused node's, or SoftmaxCrossEntropyLossGrad
                // then ResizeGrad.
                let b = GraphBuilder(graph: lg, prefix: "bw")
                var current = b.add1("ConstantOfShape", [b.add1("Shape", [loss])],
                                     attributes: ["value": .tensor(Tensor([Float(1)], shape: [1]))])
                for node in lg.nodes.reversed()
                where [OpType.upsampledCrossEntropyLoss, "SoftmaxCrossEntropyLoss", "Resize"].contains(node.opType) {
                    let rule = try XCTUnwrap(try OpRegistry.schema(for: node, opset: opset).gradient)
                    let ctx = GradientContext(node: node, opset: opset, outputGradients: [current],
                                              needsInputGradient: node.inputs.enumerated().map { $0.offset == 0 }, builder: b)
                    current = try XCTUnwrap(try rule(ctx)[0])
                }
                var bg = b.graph
                bg.outputs = [ValueInfo(name: current, type: TensorType(.float, nil))]
                let gs = try Session(model: Model(graph: bg, opsetImports: ["": opset]))
                let gout = try gs.run(["logits_in": logits, "labels": f.tensor("labels")])
                try assertClose(try XCTUnwrap(gout[current]), f.tensor("grad_logits"), rtol: 1e-4, atol: 1e-7,
                                "\(name) opset \(opset) fused \(fused) d loss / d logits")
            }}
        }
    }

    func testLayerNormGradMatchesPyTorch() throws {
        for (name, f) in try cases() where name.hasPrefix("layernorm") {
            let out = try SingleOp.run("LayerNormGrad", domain: trainingDomain,
                                       inputs: [f.tensor("dy"), f.tensor("x"), f.tensor("scale")],
                                       attributes: ["axis": .int(-1), "epsilon": .float(1e-5)], outputCount: 3, opset: 17)
            try assertClose(out[0], f.tensor("dx"), rtol: 1e-4, atol: 1e-5, "\(name) dx")
            try assertClose(out[1], f.tensor("dscale"), rtol: 1e-4, atol: 1e-5, "\(name) dscale")
            try assertClose(out[2], f.tensor("dbias"), rtol: 1e-5, atol: 1e-6, "\(name) dbias")
        }
    }

    /// BatchNorm2d in training against PyTorch: the batch statistics, the output and the three gradients
    /// (planes of 35 positions: the kernels' 16-wide blocks and their tail); for float64 too.
    func testBatchNormTrainingMatchesPyTorch() throws {
        let f = try XCTUnwrap(try cases()["batchnorm_training"])
        let channels = try f.tensor("scale").count
        let runningMean = Tensor([Float](repeating: 0, count: channels), shape: [channels])
        let runningVariance = Tensor([Float](repeating: 1, count: channels), shape: [channels])
        for wide in [false, true] {
            func input(_ key: String) throws -> Tensor { wide ? Tensor(try f.tensor(key).doubles(), shape: try f.tensor(key).shape) : try f.tensor(key) }
            let what = wide ? "float64" : "float32"
            let forward = try SingleOp.run("BatchNormTraining", domain: trainingDomain,
                                           inputs: [input("x"), input("scale"), input("bias"),
                                                    wide ? Tensor(try runningMean.doubles(), shape: [channels]) : runningMean,
                                                    wide ? Tensor(try runningVariance.doubles(), shape: [channels]) : runningVariance],
                                           attributes: ["epsilon": .float(1e-5)], outputCount: 5, opset: 17)
            try assertClose(forward[0], f.tensor("y"), rtol: 1e-5, atol: 1e-6, "\(what) y")
            try assertClose(forward[3], f.tensor("mean"), rtol: 1e-6, atol: 1e-7, "\(what) batch mean")
            try assertClose(forward[4], f.tensor("variance"), rtol: 1e-6, atol: 1e-7, "\(what) batch variance")
            let grads = try SingleOp.run("BatchNormTrainingGrad", domain: trainingDomain,
                                         inputs: [input("dy"), input("x"), input("scale")],
                                         attributes: ["epsilon": .float(1e-5)], outputCount: 3, opset: 17)
            try assertClose(grads[0], f.tensor("dx"), rtol: 1e-4, atol: 1e-5, "\(what) dx")
            try assertClose(grads[1], f.tensor("dscale"), rtol: 1e-4, atol: 1e-5, "\(what) dscale")
            try assertClose(grads[2], f.tensor("dbias"), rtol: 1e-5, atol: 1e-6, "\(what) dbias")
        }
    }

    // MARK: ../shared reference

    /// HF loss of the b0 training batch: must equal PyTorch's 5.014101 within 1e-5 relative.
    func testSegFormerTrainingBatchLoss() throws {
        let dir = try SharedFixtures.path("reference/segformer-b0-train")
        let model = try ONNXImporter.load(contentsOf: dir + "/model.op17.onnx")
        let opset = model.opsetImports[""] ?? 17
        let (g, loss) = try SegmentationLoss.appendHuggingFaceLoss(to: model.graph, logits: "logits", labels: "labels", opset: opset)
        var m = model
        m.graph = g
        let session = try Session(model: m)
        let pixels = try ONNXImporter.readTensorFile(dir + "/batch/pixel_values.pb").tensor
        let labels = try ONNXImporter.readTensorFile(dir + "/batch/labels.pb").tensor
        let out = try session.run(["pixel_values": pixels, "labels": labels])
        let expected = try ONNXImporter.readTensorFile(dir + "/expected/loss.pb").tensor.doubles()[0]
        let got = try XCTUnwrap(out[loss]).doubles()[0]
        print("SegFormer b0 training batch loss: \(got) (PyTorch \(expected), rel err \(abs(got - expected) / expected))")
        XCTAssertEqual(got, expected, accuracy: 1e-5 * expected)
    }
}
