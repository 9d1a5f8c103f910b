import Foundation
import XCTest
import GraphIR
@testable import Runtime

final class ResizeTests: XCTestCase {
    func testFixtureCases() {
        _ = NormOpsFixtures.run(ops: ["Resize"])
        _ = NormOpsFixtures.run(ops: ["Resize"], threads: 2)
    }

    /// Bilinear, half_pixel, ×2 on a 2×2 plane, computed by hand:
    /// source coordinates of outputs 0…3 are -0.25, 0.25, 0.75, 1.25 → clamp/lerp weights.
    func testBilinearByHand() throws {
        let x = Tensor([Float](arrayLiteral: 0, 4, 8, 12), shape: [1, 1, 2, 2])
        let y = try SingleOp.run("Resize", inputs: [x, nil, Tensor([Float](arrayLiteral: 1, 1, 2, 2), shape: [4])],
                                 attributes: ["mode": .string("linear")], opset: 13)[0]
        XCTAssertEqual(y.shape, [1, 1, 4, 4])
        let lerp1 = [0, 1, 3, 4] as [Float]          // along a row of (0, 4)
        var expected: [Float] = []
        for r in [0, 0.25, 0.75, 1] as [Float] { for c in lerp1 { expected.append(c + r * 8) } }
        XCTAssertEqual(y.toArray(Float.self), expected)
    }

    func testNearestGathersIntegers() throws {
        let x = Tensor([Int64](arrayLiteral: 1, 2, 3, 4), shape: [1, 1, 2, 2])
        let y = try SingleOp.run("Resize", inputs: [x, nil, nil, Tensor([Int64](arrayLiteral: 1, 1, 3, 3), shape: [4])],
                                 attributes: ["mode": .string("nearest"), "coordinate_transformation_mode": .string("asymmetric"),
                                              "nearest_mode": .string("floor")], opset: 13)[0]
        // asymmetric: x = o · 2/3 → floor → 0, 0, 1
        XCTAssertEqual(y.toArray(Int64.self), [1, 1, 2, 1, 1, 2, 3, 3, 4])
    }

    func testScalesGiveFlooredSize() throws {
        let x = Tensor([Float](repeating: 1, count: 15), shape: [1, 1, 3, 5])
        let y = try SingleOp.run("Resize", inputs: [x, nil, Tensor([Float](arrayLiteral: 1, 1, 0.6, 0.6), shape: [4])],
                                 attributes: ["mode": .string("linear")], opset: 13)[0]
        XCTAssertEqual(y.shape, [1, 1, 1, 3])
        XCTAssertEqual(y.toArray(Float.self), [1, 1, 1])
    }

    /// The fused 4-D path against the generic per-axis passes (a 3-D input takes the generic path
    /// for the first axis): same values for a SegFormer-like ×4 upsampling.
    func testFusedPlanePathMatchesPerAxisPasses() throws {
        let c = 3, h = 5, w = 6
        let v = (0..<(c * h * w)).map { Float(($0 * 31) % 17) - 8 }
        let sizes = Tensor([Int64](arrayLiteral: 1, Int64(c), Int64(h * 4), Int64(w * 4)), shape: [4])
        for mode in ["linear", "cubic"] {
            let attrs: [String: Attribute] = ["mode": .string(mode), "coordinate_transformation_mode": .string("pytorch_half_pixel")]
            let fused = try SingleOp.run("Resize", inputs: [Tensor(v, shape: [1, c, h, w]), nil, nil, sizes], attributes: attrs, opset: 13)[0]
            // resize H only, then W only (both via the generic single-axis pass on 4-D, never fused)
            let hOnly = try SingleOp.run("Resize", inputs: [Tensor(v, shape: [1, c, h, w]), nil, nil,
                                                           Tensor([Int64](arrayLiteral: 1, Int64(c), Int64(h * 4), Int64(w)), shape: [4])],
                                         attributes: attrs, opset: 13)[0]
            let both = try SingleOp.run("Resize", inputs: [hOnly.reshaped([1, c * h * 4, w, 1]), nil, nil,
                                                          Tensor([Int64](arrayLiteral: 1, Int64(c * h * 4), Int64(w * 4), 1), shape: [4])],
                                        attributes: attrs, opset: 13)[0]
            let a = fused.toArray(Float.self), b = both.toArray(Float.self)
            XCTAssertEqual(a.count, b.count)
            for i in 0..<a.count { XCTAssertEqual(a[i], b[i], accuracy: 1e-4, "\(mode) \(i)") }
        }
    }

    func testInvalidInputsThrow() {
        let x = Tensor([Float](repeating: 1, count: 4), shape: [1, 1, 2, 2])
        XCTAssertThrowsError(try SingleOp.run("Resize", inputs: [x, nil, Tensor([Float](arrayLiteral: 1, 2), shape: [2])], opset: 13))
        XCTAssertThrowsError(try SingleOp.run("Resize", inputs: [x, nil, Tensor([Float](arrayLiteral: 1, 1, -2, 2), shape: [4])], opset: 13))
        XCTAssertThrowsError(try SingleOp.run("Resize", inputs: [x, nil, nil, Tensor([Int64](arrayLiteral: 1, 1, 1 << 40, 1 << 40), shape: [4])], opset: 13))
        XCTAssertThrowsError(try SingleOp.run("Resize", inputs: [x], opset: 13))
    }
}
