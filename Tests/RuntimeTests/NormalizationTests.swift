import Foundation
import XCTest
import GraphIR
@testable import Runtime

final class NormalizationTests: XCTestCase {
    func testFixtureCases() {
        _ = NormOpsFixtures.run(ops: ["LayerNormalization", "BatchNormalization", "GroupNormalization", "MeanVarianceNormalization"])
        _ = NormOpsFixtures.run(ops: ["LayerNormalization", "BatchNormalization"], threads: 2)
    }

    func testLayerNormMatchesNaive() throws {
        let rows = 3, n = 37
        let v = (0..<(rows * n)).map { Float(($0 * 37) % 23) / 3 - 2 }
        let w = (0..<n).map { Float($0 % 5) / 2 + 0.5 }, b = (0..<n).map { Float($0 % 3) - 1 }
        let out = try SingleOp.run("LayerNormalization",
                                   inputs: [Tensor(v, shape: [rows, n]), Tensor(w, shape: [n]), Tensor(b, shape: [n])],
                                   attributes: ["epsilon": .float(1e-5)], outputCount: 3, opset: 17)
        XCTAssertEqual(out[1].shape, [rows, 1])
        let y = out[0].toArray(Float.self), mean = out[1].toArray(Float.self), inv = out[2].toArray(Float.self)
        for r in 0..<rows {
            let row = v[(r * n)..<((r + 1) * n)].map(Double.init)
            let m = row.reduce(0, +) / Double(n)
            let varc = row.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(n)
            let iv = 1 / (varc + 1e-5).squareRoot()
            XCTAssertEqual(Double(mean[r]), m, accuracy: 1e-6)
            XCTAssertEqual(Double(inv[r]), iv, accuracy: 1e-5 * iv)
            for i in 0..<n { XCTAssertEqual(Double(y[r * n + i]), (row[i] - m) * iv * Double(w[i]) + Double(b[i]), accuracy: 1e-5) }
        }
    }

    func testBatchNormInference() throws {
        // x: N=1, C=2, 2 elements each
        let x = Tensor([Float](arrayLiteral: 1, 2, 3, 4), shape: [1, 2, 2])
        let p = { (a: Float, b: Float) in Tensor([a, b], shape: [2]) }
        let y = try SingleOp.run("BatchNormalization", inputs: [x, p(2, 1), p(0, 1), p(1, 3), p(4, 1)],
                                 attributes: ["epsilon": .float(0)], opset: 15)[0].toArray(Float.self)
        XCTAssertEqual(y, [0, 1, 1, 2])
    }

    func testBatchNormRejectsWrongChannelCount() {
        let x = Tensor([Float](repeating: 1, count: 4), shape: [1, 2, 2])
        let p3 = Tensor([Float](repeating: 1, count: 3), shape: [3])
        XCTAssertThrowsError(try SingleOp.run("BatchNormalization", inputs: [x, p3, p3, p3, p3], opset: 15))
    }

    func testGroupNormalization() throws {
        // one sample, 4 channels of 2 values, 2 groups; opset 21 scale/bias per channel
        let v: [Float] = [1, 2, 3, 4, 10, 10, 20, 20]
        let x = Tensor(v, shape: [1, 4, 2])
        let s = Tensor([Float](arrayLiteral: 1, 2, 1, 1), shape: [4]), b = Tensor([Float](arrayLiteral: 0, 0, 1, 0), shape: [4])
        let y = try SingleOp.run("GroupNormalization", inputs: [x, s, b], attributes: ["num_groups": .int(2), "epsilon": .float(0)], opset: 21)[0].toArray(Float.self)
        let sd1 = (1.25 as Double).squareRoot()  // group 1: values 1…4, mean 2.5, var 1.25
        let e1 = [1, 2, 3, 4].enumerated().map { (i, t) in (Double(t) - 2.5) / sd1 * (i < 2 ? 1 : 2) }
        for i in 0..<4 { XCTAssertEqual(Double(y[i]), e1[i], accuracy: 1e-5) }
        XCTAssertEqual(Array(y[4...]), [0, 0, 1, 1])   // group 2: mean 15, sd 5 → ±1, then +bias (1, 0)
    }
}
