import Foundation
import XCTest
import GraphIR
@testable import Runtime

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

    static let all: [Case] = {
        guard let url = Bundle.module.resourceURL?.appendingPathComponent("Fixtures/normops_cases.json"),
              let data = try? Data(contentsOf: url),
              let list = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else { return [] }
        return list.compactMap(parseCase)
    }()

    static func cases(ops: Set<String>) -> [Case] { all.filter { ops.contains($0.op) } }

    static func number(_ v: Any) -> Double {
        if let s = v as? String { return s == "nan" ? .nan : (s == "inf" ? .infinity : -.infinity) }
        return (v as? NSNumber)?.doubleValue ?? .nan
    }

    static func tensor(_ o: Any?) -> Tensor? {
        guard let d = o as? [String: Any], let dtype = d["dtype"] as? String,
              let shape = d["shape"] as? [Int], let data = d["data"] as? [Any] else { return nil }
        let v = data.map(number)
        switch dtype {
        case "float32": return Tensor(v.map { Float($0) }, shape: shape)
        case "float64": return Tensor(v, shape: shape)
        case "float16": return Tensor(v.map { Float16(Float($0)) }, shape: shape)
        case "int64": return Tensor(v.map { Int64($0) }, shape: shape)
        case "int32": return Tensor(v.map { Int32($0) }, shape: shape)
        case "int8": return Tensor(v.map { Int8($0) }, shape: shape)
        case "uint8": return Tensor(v.map { UInt8($0) }, shape: shape)
        case "bool": return Tensor(v.map { $0 != 0 }, shape: shape)
        default: return nil
        }
    }

    static func parseCase(_ d: [String: Any]) -> Case? {
        guard let name = d["name"] as? String, let op = d["op"] as? String, let opset = d["opset"] as? Int,
              let attrs = d["attributes"] as? [String: [String: Any]], let ins = d["inputs"] as? [Any],
              let outs = d["outputs"] as? [Any] else { return nil }
        var attributes: [String: Attribute] = [:]
        for (k, v) in attrs {
            if let i = v["int"] as? Int { attributes[k] = .int(i) }
            else if let f = v["float"] { attributes[k] = .float(Float(number(f))) }
            else if let s = v["string"] as? String { attributes[k] = .string(s) }
            else if let a = v["ints"] as? [Int] { attributes[k] = .ints(a) }
            else if let a = v["floats"] as? [Any] { attributes[k] = .floats(a.map { Float(number($0)) }) }
        }
        return Case(name: name, op: op, opset: opset, attributes: attributes, inputs: ins.map { tensor($0) },
                    outputs: outs.compactMap { tensor($0) }, tolerance: d["tolerance"] as? Double)
    }

    /// Runs every case of the given ops; returns the names of failing cases with a reason.
    static func run(ops: Set<String>, threads: Int = 1, file: StaticString = #filePath, line: UInt = #line) -> Int {
        let selected = cases(ops: ops)
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
