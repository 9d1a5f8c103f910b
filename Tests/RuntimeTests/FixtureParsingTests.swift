import Foundation
import XCTest
import GraphIR
@testable import Runtime
import TestSupport

/// The fixture readers refuse what they do not understand, naming the case, instead of dropping it.
final class FixtureParsingTests: XCTestCase {
    func normOpsCase(_ json: String) throws -> NormOpsFixtures.Case {
        let records = try FixtureRecord.list(Data(json.utf8), file: "cases.json")
        return try NormOpsFixtures.parseCase(try XCTUnwrap(records.first))
    }

    func assertRefused(_ json: String, mentioning parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try normOpsCase(json), file: file, line: line) { error in
            for part in ["cases.json case \"bad\""] + parts {
                XCTAssertTrue("\(error)".contains(part), "'\(error)' does not mention '\(part)'", file: file, line: line)
            }
        }
    }

    func testWellFormedCaseParses() throws {
        let c = try normOpsCase(#"[{"name": "good", "op": "Softmax", "opset": 13, "attributes": {"axis": {"int": 1}},"#
                                + #" "inputs": [{"dtype": "float32", "shape": [2], "data": [1, "-inf"]}, null],"#
                                + #" "outputs": [{"dtype": "int64", "shape": [1], "data": [3]}], "tolerance": 0.5}]"#)
        guard case .int(let axis)? = c.attributes["axis"] else { return XCTFail("axis: \(String(describing: c.attributes["axis"]))") }
        XCTAssertEqual(axis, 1)
        XCTAssertEqual(c.inputs.count, 2)
        XCTAssertEqual(c.inputs[0]?.toArray(Float.self), [1, -.infinity])
        XCTAssertNil(c.inputs[1])
        XCTAssertEqual(c.outputs.first?.toArray(Int64.self), [3])
        XCTAssertEqual(c.tolerance, 0.5)
    }

    func testMalformedCasesAreNamed() {
        let head = #"[{"name": "bad", "op": "Softmax", "opset": 13, "#
        assertRefused(head + #""attributes": {}, "inputs": [], "outputs": [{"dtype": "float32", "shape": [2], "data": [1]}]}]"#,
                      mentioning: ["outputs 0", "1 values for shape [2]"])
        assertRefused(head + #""attributes": {}, "inputs": [{"dtype": "complex64", "shape": [], "data": [1]}], "outputs": []}]"#,
                      mentioning: ["inputs 0", "complex64"])
        assertRefused(head + #""attributes": {"axis": {"tensor": 1}}, "inputs": [], "outputs": []}]"#,
                      mentioning: ["attribute axis", "tensor"])
        assertRefused(head + #""attributes": {}, "inputs": [{"dtype": "float32", "shape": [1], "data": ["one"]}], "outputs": []}]"#,
                      mentioning: ["one", "not a number"])
        assertRefused(head + #""attributes": {}, "inputs": [], "outputs": [null]}]"#, mentioning: ["outputs 0 is null"])
        assertRefused(head + #""attributes": {}, "outputs": []}]"#, mentioning: ["no \"inputs\""])
        assertRefused(head + #""attributes": {}, "inputs": [], "outputs": [], "tolerance": "1e-3"}]"#, mentioning: ["\"tolerance\""])
    }

    func testMissingBundledFixtureIsAnError() {
        XCTAssertThrowsError(try fixtures.path("no-such-fixture.json")) { XCTAssertTrue($0 is MissingFixture, "\($0)") }
    }
}
