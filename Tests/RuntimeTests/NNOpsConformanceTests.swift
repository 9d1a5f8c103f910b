import XCTest
import Foundation
import GraphIR
@testable import Runtime
import TestSupport

/// Runs the ONNX backend conformance cases of MatMul, Gemm, Conv and the pools, copied into
/// Fixtures/nnops_conformance.json by scripts/fixtures/nnops_conformance.py.
final class NNOpsConformanceTests: XCTestCase {
    func testConformanceCases() throws {
        let cases = try FixtureRecord.list(fixtures.data("nnops_conformance.json"), file: "nnops_conformance.json")
        XCTAssertGreaterThanOrEqual(cases.count, 26)
        for c in cases {
            do {
                let name: String = try c.required("name")
                let inputs = try c.objectsOrNulls("inputs", Self.tensor)
                let expected = try c.objects("outputs", Self.tensor)
                let outs = try SingleOp.run(try c.required("op"), inputs: inputs, attributes: try c.keyedAttributes(),
                                            outputCount: expected.count, opset: try c.required("opset"))
                for (o, e) in zip(outs, expected) {
                    XCTAssertEqual(o.dataType, e.dataType, name)
                    XCTAssertEqual(o.shape, e.shape, name)
                    let a = try o.doubles(), b = try e.doubles()
                    let bad = zip(a, b).filter { abs($0 - $1) > 1e-5 + 1e-4 * abs($1) }
                    XCTAssert(bad.isEmpty && a.count == b.count, "\(name): \(bad.count) elements differ, first \(bad.first.map { "\($0)" } ?? "-")")
                }
            } catch {
                XCTFail("\(c.origin): \(error)")
            }
        }
    }

    /// `{type: "float" | "double" | "int32" | "int64", shape, data}`.
    static func tensor(_ t: FixtureRecord) throws -> Tensor {
        let shape: [Int] = try t.required("shape"), data: [NSNumber] = try t.required("data")
        guard data.count == shape.reduce(1, *) else { throw t.malformed("\(data.count) values for shape \(shape)") }
        switch try t.required("type", as: String.self) {
        case "float": return Tensor(data.map { $0.floatValue }, shape: shape)
        case "double": return Tensor(data.map { $0.doubleValue }, shape: shape)
        case "int32": return Tensor(data.map { $0.int32Value }, shape: shape)
        case "int64": return Tensor(data.map { $0.int64Value }, shape: shape)
        case let other: throw t.malformed("unknown type \(other)")
        }
    }
}
