import Foundation
import XCTest
import GraphIR
@testable import Runtime
import TestSupport

final class ElementwiseTests: XCTestCase {

    // MARK: - Fixture cases (ONNX conformance data + numpy cases; scripts/fixtures/make_elementwise_fixtures.py)

    /// A packed fixture tensor (see `FixtureRecord.packedTensor`), or nil when its element type is one
    /// the runtime cannot store (float8, int4, …). An unknown type number is an error.
    func makeTensor(_ t: FixtureRecord) throws -> Tensor? {
        let raw: Int = try t.required("dtype")
        guard let type = DataType(rawValue: Int32(raw)) else { throw t.malformed("unknown dtype \(raw)") }
        return type.byteSize == nil ? nil : try t.packedTensor(type)
    }

    /// Float outputs within |Δ| ≤ 1e-6 + 1e-5·|expected| (NaN matches NaN); everything else exact.
    func assertClose(_ got: Tensor, _ want: Tensor, _ name: String) {
        XCTAssertEqual(got.dataType, want.dataType, "\(name): type")
        XCTAssertEqual(got.shape, want.shape, "\(name): shape")
        guard got.dataType == want.dataType, got.shape == want.shape else { return }
        if got.dataType.isFloatingPoint {
            let g = try! got.doubles(), w = try! want.doubles()
            for i in 0..<g.count {
                if w[i].isNaN { XCTAssertTrue(g[i].isNaN, "\(name)[\(i)]: \(g[i]) vs NaN"); continue }
                if w[i].isInfinite { XCTAssertEqual(g[i], w[i], "\(name)[\(i)]"); continue }
                let tol = 1e-6 + 1e-5 * Swift.abs(w[i])
                if Swift.abs(g[i] - w[i]) > tol { XCTFail("\(name)[\(i)]: got \(g[i]), want \(w[i])"); return }
            }
            if ProcessInfo.processInfo.environment["EW_VERBOSE"] != nil && !got.bitwiseEqual(want) {
                let worst = zip(g, w).map { Swift.abs($0 - $1) / Swift.max(Swift.abs($1), 1e-30) }.max() ?? 0
                print("not bit-exact: \(name) worst relative difference \(worst)")
            }
        } else {
            XCTAssertTrue(got.bitwiseEqual(want), "\(name): got \(got.dataType == .string ? got.strings.description : "\(try! got.doubles())") want \(want.dataType == .string ? want.strings.description : "\(try! want.doubles())")")
        }
    }

    func testFixtureCases() throws {
        let cases = try FixtureRecord.list(fixtures.data("elementwise_conformance.json"), file: "elementwise_conformance.json")
        XCTAssertGreaterThan(cases.count, 200)
        var ran = 0, refused = 0
        for c in cases {
            let name: String = try c.required("name"), op: String = try c.required("op")
            let attrs = try c.keyedAttributes()
            // nil: a tensor the runtime cannot store; a JSON null input stays an absent input.
            let inputs = try c.objectsOrNulls("inputs", { $0 })
            let outputs = try c.objects("outputs", makeTensor)
            let inputTensors = try inputs.map { try $0.flatMap(makeTensor) }
            let storable = zip(inputs, inputTensors).allSatisfy { ($0 == nil) == ($1 == nil) } && outputs.allSatisfy { $0 != nil }
            // Cast conformance cases are written at opsets beyond 23; the semantics for the types we
            // store did not change, so run them at the newest opset the schema accepts.
            let schema = try XCTUnwrap(OpRegistry.schema(domain: "", opType: op), name)
            let opset = Swift.min(try c.required("opset", as: Int.self), schema.opsets.upperBound)
            if !storable {
                // float8 / 4-bit / 2-bit: the Cast node itself must be refused as unsupported.
                let to = attrs["to"].flatMap { if case .int(let v) = $0 { return v } else { return nil } }
                if let to, let t = DataType(rawValue: Int32(to)), t.byteSize == nil {
                    XCTAssertThrowsError(try SingleOp.run(op, inputs: [Tensor([Float(1)], shape: [1])], attributes: attrs, opset: opset)) {
                        XCTAssertTrue(($0 as? SegFormerError)?.isUnsupported == true, "\(name): \($0)")
                    }
                }
                refused += 1
                continue
            }
            do {
                let out = try SingleOp.run(op, inputs: inputTensors, attributes: attrs, outputCount: outputs.count, opset: opset)
                for (k, want) in outputs.enumerated() { assertClose(out[k], want!, name) }
                ran += 1
            } catch {
                XCTFail("\(name): \(error)")
            }
        }
        XCTAssertGreaterThan(ran, 150)
        print("elementwise fixtures: \(ran) ran, \(refused) with unstorable types")
    }

    /// The same check against ../shared/onnx-node-tests is done by the fixtures above (they are
    /// generated from it); nothing here needs the folder.

    // MARK: - Hand-computed cases

    func run(_ op: String, _ inputs: [Tensor?], _ attrs: [String: Attribute] = [:], opset: Int = 17,
             context: ExecutionContext? = nil) throws -> Tensor {
        try SingleOp.run(op, inputs: inputs, attributes: attrs, opset: opset, context: context)[0]
    }

    func testIntegerDivisionTruncatesAndNeverTraps() throws {
        let a = Tensor([Int32(7), -7, 7, -7, 5, Int32.min], shape: [6])
        let b = Tensor([Int32(2), 2, -2, -2, 0, -1], shape: [6])
        XCTAssertEqual(try run("Div", [a, b]).toArray(Int32.self), [3, -3, -3, 3, 0, Int32.min])
        let u = Tensor([UInt8(250), 10], shape: [2])
        XCTAssertEqual(try run("Add", [u, Tensor([UInt8(10)], shape: [])]).toArray(UInt8.self), [4, 20])   // wraps
        XCTAssertEqual(try run("Mod", [Tensor([Int64(-7), 7], shape: [2]), Tensor([Int64(0)], shape: [1])]).toArray(Int64.self), [0, 0])
    }

    func testMaxMinPropagateNaNAndVariadic() throws {
        let a = Tensor([Float(1), .nan, 3], shape: [3])
        let b = Tensor([Float.nan, 2, 1], shape: [3])
        let mx = try run("Max", [a, b]).toArray(Float.self)
        XCTAssertTrue(mx[0].isNaN && mx[1].isNaN); XCTAssertEqual(mx[2], 3)
        let mn = try run("Min", [a, b, Tensor([Float(0)], shape: [])]).toArray(Float.self)
        XCTAssertTrue(mn[0].isNaN && mn[1].isNaN); XCTAssertEqual(mn[2], 0)
        XCTAssertEqual(try run("Max", [Tensor([Int8(-3), 4], shape: [2])]).toArray(Int8.self), [-3, 4])
    }

    func testPowSquareFastPathAndMixedTypes() throws {
        let x = Tensor([Float(-1.5), 0.25, 3], shape: [3])
        XCTAssertEqual(try run("Pow", [x, Tensor([Float(2)], shape: [])]).toArray(Float.self), [2.25, 0.0625, 9])
        XCTAssertEqual(try run("Pow", [x, Tensor([Int64(3)], shape: [1])], opset: 15).toArray(Float.self), [-3.375, 0.015625, 27])
        XCTAssertEqual(try run("Pow", [Tensor([Int32(2), 3], shape: [2]), Tensor([Float(0.5), 2]  , shape: [2])], opset: 15).toArray(Int32.self), [1, 9])
        XCTAssertEqual(try run("Pow", [Tensor([Int64(3)], shape: [1]), Tensor([Int64(40)], shape: [1])], opset: 15).toArray(Int64.self), [Int64.max])   // 3^40 saturates
    }

    func testUnaryEdgeValues() throws {
        let s = try run("Sqrt", [Tensor([Float(4), -1, -0.0, 0, .infinity, .nan, 2], shape: [7])]).toArray(Float.self)
        XCTAssertEqual(s[0], 2); XCTAssertTrue(s[1].isNaN); XCTAssertEqual(s[2].sign, .minus); XCTAssertEqual(s[3], 0)
        XCTAssertEqual(s[4], .infinity); XCTAssertTrue(s[5].isNaN); XCTAssertEqual(s[6], Float(2).squareRoot())
        let r = try run("Relu", [Tensor([Float(-1), .nan, 3], shape: [3])]).toArray(Float.self)
        XCTAssertEqual(r[0], 0); XCTAssertTrue(r[1].isNaN); XCTAssertEqual(r[2], 3)
        let sg = try run("Sigmoid", [Tensor([Float(-100), 0, 100], shape: [3])]).toArray(Float.self)
        XCTAssertEqual(sg[1], 0.5); XCTAssertEqual(sg[2], 1); XCTAssertLessThan(sg[0], 1e-40)
        XCTAssertEqual(try run("IsInf", [Tensor([Float.infinity, -.infinity, 1, .nan], shape: [4])], ["detect_negative": .int(0)]).toArray(Bool.self), [true, false, false, false])
        XCTAssertEqual(try run("IsNaN", [Tensor([Double.nan, 1], shape: [2])]).toArray(Bool.self), [true, false])
        let h = try run("Exp", [Tensor([Float16(0), 1], shape: [2])]).toArray(Float16.self)
        XCTAssertEqual(h, [1, Float16(Float(M_E))])
        XCTAssertEqual(try run("Sign", [Tensor([Int32(-7), 0, 9], shape: [3])]).toArray(Int32.self), [-1, 0, 1])
    }

    func testPReluHardSwishAndTrig() throws {
        let x = Tensor([Float(-2), 3, -4, 5, -6, 7], shape: [1, 2, 3])
        let slope = Tensor([Float(0.5), 0.25], shape: [2, 1])
        XCTAssertEqual(try run("PRelu", [x, slope]).toArray(Float.self), [-1, 3, -2, 5, -1.5, 7])
        XCTAssertThrowsError(try run("PRelu", [Tensor([Float(1)], shape: [1]), slope]))
        XCTAssertEqual(try run("HardSwish", [Tensor([Float(-4), -1.5, 0, 1.5, 4], shape: [5])]).toArray(Float.self), [0, -0.375, 0, 1.125, 4])
        XCTAssertEqual(try run("Cos", [Tensor([Double(0), .pi], shape: [2])]).toArray(Double.self), [1, -1])
        XCTAssertEqual(try run("ThresholdedRelu", [Tensor([Float(0.5), 1, 2], shape: [3])]).toArray(Float.self), [0, 0, 2])
    }

    func testClipVariants() throws {
        let x = Tensor([Int8(-100), -3, 0, 5, 120], shape: [5])
        XCTAssertEqual(try run("Clip", [x, Tensor(scalar: Int8(-5)), Tensor(scalar: Int8(6))], opset: 13).toArray(Int8.self), [-5, -3, 0, 5, 6])
        XCTAssertEqual(try run("Clip", [x, nil, Tensor(scalar: Int8(0))], opset: 13).toArray(Int8.self), [-100, -3, 0, 0, 0])
        let f = Tensor([Float.nan, -2, 2], shape: [3])
        let y = try run("Clip", [f, Tensor(scalar: Float(-1))], opset: 12).toArray(Float.self)
        XCTAssertTrue(y[0].isNaN); XCTAssertEqual(Array(y[1...]), [-1, 2])
    }

    func testCastRoundTripsAndStrings() throws {
        let x = Tensor([Float(1.5), -2.25, 65504, 1e-8], shape: [2, 2])
        let h = try run("Cast", [x], ["to": .int(Int(DataType.float16.rawValue))])
        XCTAssertEqual(h.dataType, .float16)
        XCTAssertEqual(h.toArray(Float16.self), [1.5, -2.25, 65504, Float16(Float(1e-8))])
        let bf = try run("Cast", [Tensor([Float(1.00390625), 3.0], shape: [2])], ["to": .int(16)])
        XCTAssertEqual(bf.toArray(BFloat16.self).map(\.float), [1.0, 3.0])    // round to nearest even
        let s = try run("Cast", [Tensor(strings: ["1.5", "-INF", "NaN", "7"], shape: [4])], ["to": .int(1)]).toArray(Float.self)
        XCTAssertEqual(s[0], 1.5); XCTAssertEqual(s[1], -.infinity); XCTAssertTrue(s[2].isNaN); XCTAssertEqual(s[3], 7)
        XCTAssertEqual(try run("Cast", [Tensor([Int64(-1), 300], shape: [2])], ["to": .int(8)]).strings, ["-1", "300"])
        XCTAssertEqual(try run("CastLike", [Tensor([Float(2.9), -2.9], shape: [2]), Tensor([Int32(0)], shape: [1])]).toArray(Int32.self), [2, -2])
        XCTAssertThrowsError(try run("Cast", [x], ["to": .int(17)])) { XCTAssertTrue(($0 as! SegFormerError).isUnsupported) }
        XCTAssertThrowsError(try run("Cast", [x], ["to": .int(99)])) { XCTAssertFalse(($0 as! SegFormerError).isUnsupported) }
    }

    func testErrorsNameTheProblem() throws {
        XCTAssertThrowsError(try run("Add", [Tensor([Float(1), 2], shape: [2]), Tensor([Float(1), 2, 3], shape: [3])])) {
            let m = "\($0)"
            XCTAssertTrue(m.contains("[2]") && m.contains("[3]") && m.contains("Add"), m)
        }
        XCTAssertThrowsError(try run("Mul", [Tensor([Float(1)], shape: [1]), Tensor([Int64(1)], shape: [1])])) {
            XCTAssertTrue("\($0)".contains("int64"), "\($0)")
        }
        XCTAssertThrowsError(try run("Sqrt", [Tensor([Int32(4)], shape: [1])])) { XCTAssertTrue(($0 as! SegFormerError).isUnsupported) }
        XCTAssertThrowsError(try run("Gelu", [Tensor([Float(1)], shape: [1])], ["approximate": .string("fast")], opset: 20))
    }

    // MARK: - Erf accuracy

    /// The vectorisable float32 erf against Foundation's double erf: within 1 ulp (and 1e-7 absolute).
    func testErfAccuracyAgainstDoubleErf() throws {
        var xs: [Float] = []
        var v: Float = -6
        while v <= 6 { xs.append(v); v += 0.000731 }
        xs += [0, -0, 1e-30, -1e-20, 4, -4, 3.9, 10, -10, .infinity, -.infinity]
        let out = try run("Erf", [Tensor(xs, shape: [xs.count])]).toArray(Float.self)
        var worstAbs = 0.0, worstUlp: Float = 0
        for (x, y) in zip(xs, out) {
            let ref = Foundation.erf(Double(x))
            worstAbs = Swift.max(worstAbs, Swift.abs(Double(y) - ref))
            let r = Float(ref)
            if r != y { worstUlp = Swift.max(worstUlp, Swift.abs(y - r) / r.ulp) }
        }
        XCTAssertLessThanOrEqual(worstAbs, 1e-7)
        XCTAssertLessThanOrEqual(worstUlp, 1)
        XCTAssertTrue(try run("Erf", [Tensor([Float.nan], shape: [1])]).toArray(Float.self)[0].isNaN)
        // GELU as SegFormer exports it: x * 0.5 * (1 + erf(x / sqrt 2)) vs the fused Gelu op.
        let g = try run("Gelu", [Tensor([Float(-3), -0.5, 0, 0.5, 3], shape: [5])], opset: 20).toArray(Float.self)
        for (x, y) in zip([-3.0, -0.5, 0, 0.5, 3], g) {
            XCTAssertEqual(Double(y), 0.5 * x * (1 + Foundation.erf(x / 2.0.squareRoot())), accuracy: 1e-7)
        }
    }

    // MARK: - Broadcast walker across threads and chunk boundaries

    func testBroadcastPatternsMultiThreaded() throws {
        let ctx = ExecutionContext(threads: 2)
        func data(_ n: Int, _ seed: Float) -> [Float] { (0..<n).map { Float(($0 * 37 + Int(seed)) % 101) * 0.01 - 0.5 } }
        // [B,C,H,W] * [1,C,1,1]
        let (B, C, H, W) = (2, 3, 117, 131)
        let a = data(B * C * H * W, 1), s = data(C, 5)
        let y = try run("Mul", [Tensor(a, shape: [B, C, H, W]), Tensor(s, shape: [1, C, 1, 1])], context: ctx).toArray(Float.self)
        for i in stride(from: 0, to: a.count, by: 7) { XCTAssertEqual(y[i], a[i] * s[(i / (H * W)) % C]) }
        // [B,N,C] + [C] with runs that straddle the chunk boundary
        let (N, K) = (1023, 67)
        let x = data(B * N * K, 3), bias = data(K, 11)
        let z = try run("Add", [Tensor(x, shape: [B, N, K]), Tensor(bias, shape: [K])], context: ctx).toArray(Float.self)
        for i in 0..<x.count { if z[i] != x[i] + bias[i % K] { XCTFail("Add bias at \(i)"); break } }
        // [B,N,1] - [B,N,C] (scalar-vector runs) and both sides broadcasting: [N,1] / [1,K]
        let m = data(B * N, 13)
        let d = try run("Sub", [Tensor(m, shape: [B, N, 1]), Tensor(x, shape: [B, N, K])], context: ctx).toArray(Float.self)
        for i in 0..<x.count { if d[i] != m[i / K] - x[i] { XCTFail("Sub at \(i)"); break } }
        let col = data(N, 17), row = data(K, 19).map { $0 + 1 }
        let q = try run("Div", [Tensor(col, shape: [N, 1]), Tensor(row, shape: [1, K])], context: ctx).toArray(Float.self)
        for i in 0..<(N * K) { if q[i] != col[i / K] / row[i % K] { XCTFail("Div outer at \(i)"); break } }
        // Where with a row condition over a large tensor
        let cond = (0..<K).map { $0 % 3 == 0 }
        let w = try run("Where", [Tensor(cond, shape: [K]), Tensor(x, shape: [B, N, K]), Tensor(scalar: Float(-1))], context: ctx).toArray(Float.self)
        for i in 0..<x.count { if w[i] != (cond[i % K] ? x[i] : -1) { XCTFail("Where at \(i)"); break } }
    }

    func testBroadcastPlanMergesDimensions() {
        let p = BroadcastPlan(output: [2, 3, 4, 5], inputs: [[2, 3, 4, 5], [1, 3, 1, 1]])
        XCTAssertEqual(p.dims, [2, 3, 20])
        XCTAssertEqual(p.strides[1], [0, 1, 0])
        let q = BroadcastPlan(output: [2, 6, 8], inputs: [[2, 6, 8], [8]])
        XCTAssertEqual(q.dims, [12, 8])
        XCTAssertEqual(q.strides[1], [0, 1])
        let r = BroadcastPlan(output: [1], inputs: [[], [1]])
        XCTAssertEqual(r.dims, [1])
    }

    // MARK: - Shape rules

    func testBroadcastShapes() throws {
        XCTAssertEqual(try broadcastShapes([2, 1, 4], [3, 1]), [2, 3, 4])
        XCTAssertEqual(try broadcastShapes([], [5]), [5])
        XCTAssertThrowsError(try broadcastShapes([2, 3], [4, 3])) {
            let m = "\($0)"; XCTAssertTrue(m.contains("[2, 3]") && m.contains("[4, 3]"), m)
        }
        let b: Dim = .symbol("batch"), h: Dim = .symbol("h")
        XCTAssertEqual(try broadcastShapes([b, .known(1), .known(4)], [.known(3), .known(1)]), [b, .known(3), .known(4)])
        XCTAssertEqual(try broadcastShapes([b, h], [.known(1), .known(7)]), [b, .known(7)])
        XCTAssertEqual(try broadcastShapes([b], [h]), [.symbol("max(batch,h)")])
        XCTAssertThrowsError(try broadcastShapes([Dim.known(2)], [Dim.known(3)]))
    }

    func testSymbolicTypeRules() throws {
        func infer(_ op: String, _ types: [TensorType?], _ attrs: [String: Attribute] = [:], opset: Int = 17) throws -> [TensorType?] {
            let node = Node(name: "n", opType: op, inputs: types.indices.map { "i\($0)" }, outputs: ["o"], attributes: attrs)
            let schema = try XCTUnwrap(OpRegistry.schema(domain: "", opType: op))
            let ctx = TypeInferenceContext(node: node, opset: opset, inputTypes: types, constantInputs: types.map { _ in nil })
            return try XCTUnwrap(schema.inferTypes)(ctx)
        }
        let x = TensorType(.float, [.symbol("B"), .known(1024), .known(32)])
        XCTAssertEqual(try infer("Add", [x, TensorType(.float, known: [32])]), [x])
        XCTAssertEqual(try infer("Equal", [x, TensorType(.float, known: [1])]), [TensorType(.bool, x.shape)])
        XCTAssertEqual(try infer("Cast", [x], ["to": .int(7)]), [TensorType(.int64, x.shape)])
        XCTAssertEqual(try infer("Where", [TensorType(.bool, known: [32]), TensorType(.int64, known: [1]), TensorType(.int64, x.shape)]),
                       [TensorType(.int64, x.shape)])
        XCTAssertEqual(try infer("Erf", [x]), [x])
        XCTAssertEqual(try infer("Add", [x, nil]), [nil])
    }
}

