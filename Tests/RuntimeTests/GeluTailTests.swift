import Foundation
import XCTest
import GraphIR
@testable import Runtime

/// GELU in both tails against PyTorch in float64 (Tests/RuntimeTests/Fixtures/gelu_tails.json,
/// scripts/fixtures/make_gelu_tail_fixture.py). 1 + erf(x/√2) cancels for large negative x: Gelu
/// gave −80.85 at x = −1e10 where the true value is 0.
final class GeluTailTests: XCTestCase {
    struct Reference: Decodable { let x: [Float]; let exact: [Double]; let tanh: [Double]; let exact_grad: [Double] }

    func reference() throws -> Reference { try JSONDecoder().decode(Reference.self, from: fixtures.data("gelu_tails.json")) }

    /// Float32 results within 1e-5 relative (float32 rounding) plus 1e-12 absolute: PyTorch's own
    /// float64 formula loses digits below ~1e-12 in the far tail (it gives −0 at x = −10).
    func assertClose(_ got: [Float], _ want: [Double], _ xs: [Float], _ what: String) {
        for (i, (g, w)) in zip(got, want).enumerated() {
            XCTAssertLessThanOrEqual(Swift.abs(Double(g) - w), 1e-5 * Swift.abs(w) + 1e-12, "\(what) at x = \(xs[i]): got \(g), PyTorch \(w)")
        }
    }

    func testGeluMatchesPyTorchInBothTails() throws {
        let r = try reference()
        let x = Tensor(r.x, shape: [r.x.count])
        // The bulk C loop (ck_gelu) and the scalar path (a strided view goes element by element).
        assertClose(try SingleOp.run("Gelu", inputs: [x], opset: 20)[0].toArray(Float.self), r.exact, r.x, "Gelu")
        for (i, v) in r.x.enumerated() {
            assertClose([GeluFn().f(v)], [r.exact[i]], [v], "GeluFn.f")
        }
        let tanh = try SingleOp.run("Gelu", inputs: [x], attributes: ["approximate": .string("tanh")], opset: 20)[0]
        assertClose(tanh.toArray(Float.self), r.tanh, r.x, "Gelu tanh")
    }

    func testGeluGradientMatchesPyTorchInBothTails() throws {
        let r = try reference()
        let ones = Tensor([Float](repeating: 1, count: r.x.count), shape: [r.x.count])
        let g = try SingleOp.run("GeluGrad", domain: trainingDomain, inputs: [ones, Tensor(r.x, shape: [r.x.count])], opset: 20)[0]
        assertClose(g.toArray(Float.self), r.exact_grad, r.x, "GeluGrad")
    }
}
