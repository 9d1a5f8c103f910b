import Foundation
import XCTest
import GraphIR
@testable import Runtime

final class ReductionTests: XCTestCase {
    static let ops: Set<String> = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                                   "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin"]

    func testFixtureCases() {
        _ = NormOpsFixtures.run(ops: Self.ops)
        _ = NormOpsFixtures.run(ops: Self.ops, threads: 2)
    }

    func testLastAxisMeanMatchesNaive() throws {
        for n in [1, 7, 16, 31, 64, 160] {
            let rows = 5
            let v = (0..<(rows * n)).map { Float(($0 * 7919) % 101) / 10 - 5 }
            let x = Tensor(v, shape: [rows, n])
            let y = try SingleOp.run("ReduceMean", inputs: [x, Tensor([Int64(-1)], shape: [1])], opset: 18)[0]
            XCTAssertEqual(y.shape, [rows, 1])
            let got = y.toArray(Float.self)
            for r in 0..<rows {
                let e = v[(r * n)..<((r + 1) * n)].reduce(0.0) { $0 + Double($1) } / Double(n)
                XCTAssertEqual(Double(got[r]), e, accuracy: 1e-6)
            }
        }
    }

    func testAxesAttributeVersusInput() throws {
        let x = Tensor([Float](arrayLiteral: 1, 2, 3, 4, 5, 6), shape: [2, 3])
        let a = try SingleOp.run("ReduceSum", inputs: [x], attributes: ["axes": .ints([1]), "keepdims": .int(0)], opset: 11)[0]
        XCTAssertEqual(a.toArray(Float.self), [6, 15])
        let b = try SingleOp.run("ReduceSum", inputs: [x, Tensor([Int64(0)], shape: [1])], attributes: ["keepdims": .int(0)], opset: 13)[0]
        XCTAssertEqual(b.toArray(Float.self), [5, 7, 9])
        // no axes → all; noop_with_empty_axes → identity
        let c = try SingleOp.run("ReduceMax", inputs: [x], opset: 18)[0]
        XCTAssertEqual(c.shape, [1, 1]); XCTAssertEqual(c.toArray(Float.self), [6])
        let d = try SingleOp.run("ReduceMax", inputs: [x], attributes: ["noop_with_empty_axes": .int(1)], opset: 18)[0]
        XCTAssertEqual(d.toArray(Float.self), [1, 2, 3, 4, 5, 6])
        XCTAssertThrowsError(try SingleOp.run("ReduceSum", inputs: [x, Tensor([Int64(2)], shape: [1])], opset: 13))
    }

    func testEmptySets() throws {
        let x = Tensor([Float](), shape: [2, 0, 3])
        let axes = Tensor([Int64(1)], shape: [1])
        func r(_ op: String) throws -> [Float] { try SingleOp.run(op, inputs: [x, axes], opset: 18)[0].toArray(Float.self) }
        XCTAssertEqual(try r("ReduceSum"), [Float](repeating: 0, count: 6))
        XCTAssertEqual(try r("ReduceProd"), [Float](repeating: 1, count: 6))
        XCTAssertEqual(try r("ReduceMax"), [Float](repeating: -.infinity, count: 6))
        XCTAssertEqual(try r("ReduceMin"), [Float](repeating: .infinity, count: 6))
        XCTAssertEqual(try r("ReduceLogSumExp"), [Float](repeating: -.infinity, count: 6))
        let b = Tensor([Bool](), shape: [0])
        XCTAssertEqual(try SingleOp.run("ReduceMin", inputs: [b], opset: 20)[0].toArray(Bool.self), [true])
        XCTAssertEqual(try SingleOp.run("ReduceMax", inputs: [b], opset: 20)[0].toArray(Bool.self), [false])
    }

    func testArgMaxTiesAndLastIndex() throws {
        let x = Tensor([Float](arrayLiteral: 1, 3, 3, 0, 2, 2), shape: [2, 3])
        let a = try SingleOp.run("ArgMax", inputs: [x], attributes: ["axis": .int(1), "keepdims": .int(0)], opset: 13)[0]
        XCTAssertEqual(a.toArray(Int64.self), [1, 1])
        let b = try SingleOp.run("ArgMax", inputs: [x], attributes: ["axis": .int(1), "select_last_index": .int(1)], opset: 13)[0]
        XCTAssertEqual(b.shape, [2, 1]); XCTAssertEqual(b.toArray(Int64.self), [2, 2])
        let c = try SingleOp.run("ArgMin", inputs: [x], attributes: ["axis": .int(0)], opset: 13)[0]
        XCTAssertEqual(c.toArray(Int64.self), [1, 1, 1])
    }
}
