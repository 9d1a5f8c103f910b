import Foundation
import XCTest
import GraphIR
@testable import Runtime

final class SoftmaxTests: XCTestCase {
    func testFixtureCases() {
        _ = NormOpsFixtures.run(ops: ["Softmax", "LogSoftmax"])
        _ = NormOpsFixtures.run(ops: ["Softmax", "LogSoftmax"], threads: 2)
    }

    /// Naive double-precision softmax over the last axis, compared on rows of many lengths
    /// (exercises the SIMD body and the scalar tails) and with large offsets (stability).
    func testLastAxisMatchesNaive() throws {
        var seed: UInt64 = 42
        func rnd() -> Float { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: seed >> 11) % 2000) / 100 - 10 }
        for n in [1, 3, 8, 15, 16, 17, 33, 100, 517] {
            let rows = 3
            var v = (0..<(rows * n)).map { _ in rnd() }
            v[0] += 1000   // huge value: needs max subtraction
            let x = Tensor(v, shape: [rows, n])
            for log in [false, true] {
                let y = try SingleOp.run(log ? "LogSoftmax" : "Softmax", inputs: [x], opset: 13)[0].toArray(Float.self)
                for r in 0..<rows {
                    let row = v[(r * n)..<((r + 1) * n)].map(Double.init)
                    let m = row.max()!
                    let s = row.reduce(0) { $0 + Foundation.exp($1 - m) }
                    for i in 0..<n {
                        let e = log ? row[i] - m - Foundation.log(s) : Foundation.exp(row[i] - m) / s
                        XCTAssertEqual(Double(y[r * n + i]), e, accuracy: 1e-6 + 1e-5 * abs(e), "n=\(n) log=\(log)")
                    }
                }
            }
        }
    }

    func testOpset11CoercesTo2D() throws {
        let x = Tensor([Float](arrayLiteral: 1, 2, 3, 4), shape: [2, 2])
        // axis 0 at opset 11: one row of all four values
        let y = try SingleOp.run("Softmax", inputs: [x], attributes: ["axis": .int(0)], opset: 11)[0].toArray(Float.self)
        let s = (1...4).reduce(0.0) { $0 + Foundation.exp(Double($1)) }
        for i in 0..<4 { XCTAssertEqual(Double(y[i]), Foundation.exp(Double(i + 1)) / s, accuracy: 1e-6) }
        // axis 0 at opset 13: columns
        let z = try SingleOp.run("Softmax", inputs: [x], attributes: ["axis": .int(0)], opset: 13)[0].toArray(Float.self)
        XCTAssertEqual(Double(z[0]), 1 / (1 + Foundation.exp(2.0)), accuracy: 1e-6)
    }

    func testBadAxisThrows() {
        let x = Tensor([Float](repeating: 0, count: 4), shape: [2, 2])
        XCTAssertThrowsError(try SingleOp.run("Softmax", inputs: [x], attributes: ["axis": .int(2)], opset: 13))
    }
}
