import Foundation
import XCTest
import GraphIR
@testable import Runtime

final class ElementwiseTests: XCTestCase {

    // MARK: - Fixture cases (ONNX conformance data + numpy cases; scripts/fixtures/make_elementwise_fixtures.py)

    struct FixtureTensor: Decodable {
        let dtype: Int32
        let shape: [Int]
        let data: String?
        let strings: [String]?
    }
    enum FixtureAttribute: Decodable {
        case int(Int), float(Float), string(String), ints([Int]), floats([Float])
        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Key.self)
            if let v = try c.decodeIfPresent(Int.self, forKey: .int) { self = .int(v) }
            else if let v = try c.decodeIfPresent(Float.self, forKey: .float) { self = .float(v) }
            else if let v = try c.decodeIfPresent(String.self, forKey: .string) { self = .string(v) }
            else if let v = try c.decodeIfPresent([Int].self, forKey: .ints) { self = .ints(v) }
            else { self = .floats(try c.decode([Float].self, forKey: .floats)) }
        }
        enum Key: String, CodingKey { case int, float, string, ints, floats }
        var attribute: Attribute {
            switch self {
            case .int(let v): return .int(v)
            case .float(let v): return .float(v)
            case .string(let v): return .string(v)
            case .ints(let v): return .ints(v)
            case .floats(let v): return .floats(v)
            }
        }
    }
    struct FixtureCase: Decodable {
        let name: String
        let op: String
        let opset: Int
        let attributes: [String: FixtureAttribute]
        let inputs: [FixtureTensor?]
        let outputs: [FixtureTensor]
    }

    /// nil when the element type is one the runtime cannot store (float8, int4, …).
    func makeTensor(_ f: FixtureTensor) -> Tensor? {
        guard let type = DataType(rawValue: f.dtype), type.byteSize != nil else { return nil }
        if type == .string { return Tensor(strings: f.strings ?? [], shape: f.shape) }
        let bytes = Data(base64Encoded: f.data ?? "") ?? Data()
        let t = Tensor(uninitialized: type, shape: f.shape)
        XCTAssertEqual(bytes.count, t.byteCount)
        bytes.withUnsafeBytes { raw in
            if let base = raw.baseAddress, t.byteCount > 0 { t.storage.pointer.copyMemory(from: base, byteCount: t.byteCount) }
        }
        return t
    }

    func loadFixtures() throws -> [FixtureCase] {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "elementwise_conformance", withExtension: "json", subdirectory: "Fixtures"))
        return try JSONDecoder().decode([FixtureCase].self, from: Data(contentsOf: url))
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
        let cases = try loadFixtures()
        XCTAssertGreaterThan(cases.count, 200)
        var ran = 0, refused = 0
        for c in cases {
            let inputs = c.inputs.map { $0.flatMap(makeTensor) }
            let storable = c.inputs.allSatisfy { $0 == nil || makeTensor($0!) != nil } && c.outputs.allSatisfy { makeTensor($0) != nil }
            let attrs = c.attributes.mapValues(\.attribute)
            // Cast conformance cases are written at opsets beyond 23; the semantics for the types we
            // store did not change, so run them at the newest opset the schema accepts.
            let schema = try XCTUnwrap(OpRegistry.schema(domain: "", opType: c.op), c.name)
            let opset = Swift.min(c.opset, schema.opsets.upperBound)
            if !storable {
                // float8 / 4-bit / 2-bit: the Cast node itself must be refused as unsupported.
                let to = c.attributes["to"].flatMap { if case .int(let v) = $0 { return v } else { return nil } }
                if let to, let t = DataType(rawValue: Int32(to)), t.byteSize == nil {
                    XCTAssertThrowsError(try SingleOp.run(c.op, inputs: [Tensor([Float(1)], shape: [1])], attributes: attrs, opset: opset)) {
                        XCTAssertTrue(($0 as? SegFormerError)?.isUnsupported == true, "\(c.name): \($0)")
                    }
                }
                refused += 1
                continue
            }
            do {
                let out = try SingleOp.run(c.op, inputs: inputs, attributes: attrs, outputCount: c.outputs.count, opset: opset)
                for (k, want) in c.outputs.enumerated() { assertClose(out[k], makeTensor(want)!, c.name) }
                ran += 1
            } catch {
                XCTFail("\(c.name): \(error)")
            }
        }
        XCTAssertGreaterThan(ran, 150)
        print("elementwise fixtures: \(ran) ran, \(refused) with unstorable types")
    }

    /// The same check against /work/shared when it exists is done by the fixtures above (they are
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

/// Timings of the hot float32 kernels; run with EW_PERF=1 in release:
/// `EW_PERF=1 swift test -c release -Xswiftc -enable-testing --filter ElementwisePerf`
final class ElementwisePerfTests: XCTestCase {
    func testHotKernelTimings() throws {
        guard ProcessInfo.processInfo.environment["EW_PERF"] != nil else { throw XCTSkip("set EW_PERF=1") }
        let ctx = ExecutionContext(threads: 2)
        let n = 16384 * 128
        let big = Tensor((0..<n).map { Float($0 % 1000) * 0.004 - 2 }, shape: [1, 16384, 128])
        let big2 = Tensor((0..<n).map { Float($0 % 777) * 0.003 + 0.5 }, shape: [1, 16384, 128])
        let bias = Tensor((0..<128).map { Float($0) * 0.01 }, shape: [128])
        let nchw = big.reshaped([1, 128, 128, 128])
        let chan = Tensor((0..<128).map { Float($0) * 0.01 + 1 }, shape: [1, 128, 1, 1])
        let rowmean = Tensor((0..<16384).map { Float($0) * 0.001 }, shape: [1, 16384, 1])
        let half = Tensor(scalar: Float(0.5))
        func time(_ name: String, _ body: () throws -> Void) rethrows {
            try body()
            var best = Double.infinity
            for _ in 0..<7 {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try body()
                best = Swift.min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            print(String(format: "%-34@ %7.3f ms  (%.2f ns/elem)", name as NSString, best, best * 1e6 / Double(n)))
        }
        func op(_ o: String, _ i: [Tensor?], _ a: [String: Attribute] = [:], opset: Int = 17) throws {
            _ = try SingleOp.run(o, inputs: i, attributes: a, opset: opset, context: ctx)
        }
        try time("Add same shape 2M") { try op("Add", [big, big2]) }
        try time("Add [1,N,C]+[C] 2M") { try op("Add", [big, bias]) }
        try time("Mul [1,C,H,W]*[1,C,1,1] 2M") { try op("Mul", [nchw, chan]) }
        try time("Sub [1,N,C]-[1,N,1] 2M") { try op("Sub", [big, rowmean]) }
        try time("Mul by scalar 2M") { try op("Mul", [big, half]) }
        try time("Div same shape 2M") { try op("Div", [big, big2]) }
        try time("Pow x^2 2M") { try op("Pow", [big, Tensor(scalar: Float(2))]) }
        try time("Sqrt 2M") { try op("Sqrt", [big2]) }
        try time("Erf 2M") { try op("Erf", [big]) }
        try time("Gelu 2M") { try op("Gelu", [big], opset: 20) }
        try time("Relu 2M") { try op("Relu", [big]) }
        try time("Sigmoid 2M") { try op("Sigmoid", [big]) }
        try time("Tanh 2M") { try op("Tanh", [big]) }
        try time("Exp 2M") { try op("Exp", [big]) }
        try time("Cast f32->f16 2M") { try op("Cast", [big], ["to": .int(10)]) }
        try time("Where 2M") { try op("Where", [Tensor([true, false], shape: [2, 1, 1]).reshaped([2, 1, 1]), big.reshaped([2, 8192, 128]), half]) }
    }
}
