import XCTest
import Foundation
import GraphIR
@testable import Runtime

/// Runs the ONNX backend conformance cases of MatMul, Gemm, Conv and the pools, copied into
/// Fixtures/nnops_conformance.json by scripts/fixtures/nnops_conformance.py.
final class NNOpsConformanceTests: XCTestCase {
    func testConformanceCases() throws {
        guard let url = Bundle.module.url(forResource: "nnops_conformance", withExtension: "json", subdirectory: "Fixtures") else {
            return XCTFail("fixture nnops_conformance.json missing")
        }
        let cases = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [[String: Any]]
        XCTAssertGreaterThanOrEqual(cases.count, 26)
        for c in cases {
            let name = c["name"] as! String
            var attrs: [String: Attribute] = [:]
            for (k, v) in c["attributes"] as! [String: [String: Any]] {
                if let i = v["int"] as? Int { attrs[k] = .int(i) }
                else if let f = v["float"] as? Double { attrs[k] = .float(Float(f)) }
                else if let s = v["string"] as? String { attrs[k] = .string(s) }
                else if let i = v["ints"] as? [Int] { attrs[k] = .ints(i) }
                else if let f = v["floats"] as? [Double] { attrs[k] = .floats(f.map { Float($0) }) }
            }
            let inputs = (c["inputs"] as! [Any]).map { ($0 as? [String: Any]).map(Self.tensor) }
            let expected = (c["outputs"] as! [[String: Any]]).map(Self.tensor)
            do {
                let outs = try SingleOp.run(c["op"] as! String, inputs: inputs, attributes: attrs, outputCount: expected.count,
                                            opset: c["opset"] as! Int)
                for (o, e) in zip(outs, expected) {
                    XCTAssertEqual(o.dataType, e.dataType, name)
                    XCTAssertEqual(o.shape, e.shape, name)
                    let a = try o.doubles(), b = try e.doubles()
                    let bad = zip(a, b).filter { abs($0 - $1) > 1e-5 + 1e-4 * abs($1) }
                    XCTAssert(bad.isEmpty && a.count == b.count, "\(name): \(bad.count) elements differ, first \(bad.first.map { "\($0)" } ?? "-")")
                }
            } catch {
                XCTFail("\(name): \(error)")
            }
        }
    }

    static func tensor(_ j: [String: Any]) -> Tensor {
        let shape = j["shape"] as! [Int], data = j["data"] as! [NSNumber]
        switch j["type"] as! String {
        case "float": return Tensor(data.map { $0.floatValue }, shape: shape)
        case "double": return Tensor(data.map { $0.doubleValue }, shape: shape)
        case "int32": return Tensor(data.map { $0.int32Value }, shape: shape)
        default: return Tensor(data.map { $0.int64Value }, shape: shape)
        }
    }
}
