import Foundation
import XCTest
import GraphIR
@testable import Runtime
import TestSupport

/// Single-op cases written by scripts/fixtures/make_normops_fixtures.py (ONNX conformance cases,
/// the onnx reference evaluator and PyTorch), shared by the Softmax / Reduction / Normalization /
/// Resize tests.
enum NormOpsFixtures {
    struct Case {
        var name: String
        var op: String
        var opset: Int
        var attributes: [String: Attribute]
        var inputs: [Tensor?]
        var outputs: [Tensor]
        var tolerance: Double?
    }

    /// Every case of Fixtures/normops_cases.json, read once. A missing file or a malformed case is an
    /// error naming it, reported by every test that uses the cases.
    static let all = Result<[Case], Error> {
        try FixtureRecord.list(fixtures.data("normops_cases.json"), file: "normops_cases.json").map(parseCase)
    }

    static func cases(ops: Set<String>) throws -> [Case] { try all.get().filter { ops.contains($0.op) } }

    /// `{dtype: "float32" | "float64" | "float16" | "int64" | "int32" | "int8" | "uint8" | "bool", shape, data}`.
    static func tensor(_ t: FixtureRecord) throws -> Tensor {
        let shape: [Int] = try t.required("shape")
        let v = try t.required("data", as: [Any].self).map(t.number)
        guard v.count == shape.reduce(1, *) else { throw t.malformed("\(v.count) values for shape \(shape)") }
        switch try t.required("dtype", as: String.self) {
        case "float32": return Tensor(v.map { Float($0) }, shape: shape)
        case "float64": return Tensor(v, shape: shape)
        case "float16": return Tensor(v.map { Float16(Float($0)) }, shape: shape)
        case "int64": return Tensor(v.map { Int64($0) }, shape: shape)
        case "int32": return Tensor(v.map { Int32($0) }, shape: shape)
        case "int8": return Tensor(v.map { Int8($0) }, shape: shape)
        case "uint8": return Tensor(v.map { UInt8($0) }, shape: shape)
        case "bool": return Tensor(v.map { $0 != 0 }, shape: shape)
        case let other: throw t.malformed("unknown dtype \(other)")
        }
    }

    static func parseCase(_ r: FixtureRecord) throws -> Case {
        Case(name: try r.required("name"), op: try r.required("op"), opset: try r.required("opset"),
             attributes: try r.keyedAttributes(), inputs: try r.objectsOrNulls("inputs", tensor),
             outputs: try r.objects("outputs", tensor), tolerance: try r.optional("tolerance"))
    }

    /// Runs every case of the given ops; returns the names of failing cases with a reason.
    static func run(ops: Set<String>, threads: Int = 1, file: StaticString = #filePath, line: UInt = #line) -> Int {
        let selected: [Case]
        do { selected = try cases(ops: ops) } catch { XCTFail("\(error)", file: file, line: line); return 0 }
        XCTAssertFalse(selected.isEmpty, "no fixture cases for \(ops)", file: file, line: line)
        let context = ExecutionContext(threads: threads)
        for c in selected {
            do {
                let got = try SingleOp.run(c.op, inputs: c.inputs, attributes: c.attributes,
                                           outputCount: c.outputs.count, opset: c.opset, context: context)
                XCTAssertEqual(got.count, c.outputs.count, "\(c.name): output count", file: file, line: line)
                for (i, (g, e)) in zip(got, c.outputs).enumerated() {
                    if let why = compare(g, e, atol: c.tolerance ?? 1e-5, rtol: 1e-4) {
                        XCTFail("\(c.name) output \(i): \(why)", file: file, line: line)
                    }
                }
            } catch {
                XCTFail("\(c.name): threw \(error)", file: file, line: line)
            }
        }
        return selected.count
    }

    static func compare(_ g: Tensor, _ e: Tensor, atol: Double, rtol: Double) -> String? {
        if g.dataType != e.dataType { return "type \(g.dataType), expected \(e.dataType)" }
        if g.shape != e.shape { return "shape \(g.shape), expected \(e.shape)" }
        guard let gv = try? g.doubles(), let ev = try? e.doubles() else { return "unreadable" }
        var worst = 0.0
        var bad = 0
        var first = ""
        for i in 0..<gv.count {
            let a = gv[i], b = ev[i]
            if a.isNaN && b.isNaN { continue }
            if a == b { continue }
            let tol = atol + rtol * Swift.abs(b)
            let err = Swift.abs(a - b)
            if !(err <= tol) {
                if bad == 0 { first = "at \(i): \(a) vs \(b)" }
                bad += 1
                worst = Swift.max(worst, err)
            }
        }
        return bad == 0 ? nil : "\(bad) of \(gv.count) elements differ, first \(first), worst \(worst)"
    }
}
