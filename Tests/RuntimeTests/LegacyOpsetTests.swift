import Foundation
import XCTest
import GraphIR
@testable import Runtime
import TestSupport

/// Old-opset forms as the ONNX model suites use them (attributes that later became inputs, `broadcast`/
/// `axis` broadcasting, per-channel PRelu, Sum/Max/Gemm/movement ops at their first versions) and the ops
/// of old CNNs (LRN, InstanceNormalization, Shrink). Each fixture folder (made by
/// scripts/fixtures/make_legacy_opset_fixtures.py) holds a model and the outputs of onnxruntime, onnx's
/// reference evaluator or PyTorch.
final class LegacyOpsetTests: XCTestCase {
    func testEveryFixtureMatchesItsReference() throws {
        let root = try fixtures.path("legacy-opsets")
        let cases = try FileManager.default.contentsOfDirectory(atPath: root).filter { !$0.hasPrefix(".") }.sorted()
        XCTAssertEqual(cases.count, 15)
        for name in cases {
            let tester = try ModelTester(folder: (root as NSString).appendingPathComponent(name))
            let session = try Session(model: try ONNXImporter.load(contentsOf: tester.modelPath))
            let results = try tester.run(session: session, tolerance: .init(absolute: 1e-6, relative: 1e-5))
            XCTAssertFalse(results.isEmpty, name)
            for r in results {
                XCTAssertTrue(r.passed, "\(name) \(r.name): max abs diff \(r.maxAbsDifference) \(r.problem ?? "")")
            }
        }
    }

    private func run(_ op: String, _ inputs: [Tensor?], _ attributes: [String: Attribute], opset: Int) throws -> Tensor {
        try SingleOp.run(op, inputs: inputs, attributes: attributes, opset: opset)[0]
    }

    private func assertInvalid(_ body: @autoclosure () throws -> Tensor, mentions text: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { e in
            XCTAssertTrue("\(e)".contains(text), "\(e)", file: file, line: line)
        }
    }

    func testOldBroadcastRefusesWhatTheOldRulesRefuse() {
        let a = Tensor([Float](repeating: 1, count: 6), shape: [2, 3]), b = Tensor([Float](repeating: 2, count: 3), shape: [3])
        // Without broadcast = 1 the shapes must be equal, even where numpy would broadcast.
        assertInvalid(try run("Add", [a, b], [:], opset: 6), mentions: "broadcast = 1")
        // B must be the run of A's dims that starts at axis.
        assertInvalid(try run("Mul", [a, b], ["broadcast": .int(1), "axis": .int(0)], opset: 6), mentions: "from axis 0")
        // From opset 7 the same node broadcasts as numpy does.
        XCTAssertEqual(try run("Add", [a, b], [:], opset: 7).toArray(Float.self), [Float](repeating: 3, count: 6))
    }

    func testOldSliceAndPadNeedTheirAttributes() {
        let x = Tensor([Float](repeating: 1, count: 6), shape: [2, 3])
        assertInvalid(try run("Slice", [x], ["starts": .ints([0])], opset: 9), mentions: "'starts' and 'ends'")
        assertInvalid(try run("Pad", [x], ["mode": .string("constant")], opset: 10), mentions: "'pads'")
        // From opset 10 / 11 the same values are inputs.
        assertInvalid(try run("Slice", [x], ["starts": .ints([0]), "ends": .ints([1])], opset: 10), mentions: "starts")
    }

    func testNewOpsCheckTheirAttributesAndHaveNoGradientRule() throws {
        let x = Tensor([Float](repeating: 1, count: 8), shape: [1, 2, 2, 2])
        assertInvalid(try run("LRN", [x], [:], opset: 9), mentions: "'size'")
        for op in ["LRN", "InstanceNormalization", "Shrink"] {
            XCTAssertNil(try XCTUnwrap(OpRegistry.schema(domain: "", opType: op), op).gradient, op)
        }
    }
}
