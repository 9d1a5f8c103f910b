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

    /// GeluGrad on float32 against g·(Φ(x) + x·φ(x)) in float64 from libm's erfc and exp, every 1/1024
    /// on [−12, 12]: within half an ulp of the result (rounding once) plus |g| times the rational erf's
    /// error in Φ — 3.8e-10 up to |x/√2| = 4 (scripts/fixtures/fit_erf.py), 7.7e-9 beyond, where it
    /// stops at erf(4) = 1 − 1.5e-8. Checks the vectorised C loop (operands of one shape) and the
    /// per-element path (a broadcast). The float exp of a float argument used before gave 15× the bound.
    func testGeluGradientIsRoundedOnceFromDouble() throws {
        let xs = (-12 * 1024...12 * 1024).map { Float($0) / 1024 }
        let gs = xs.indices.map { Float(sin(Double($0) * 0.37) * 2) }
        let reference = zip(gs, xs).map { g, x -> Double in
            let v = Double(x)
            return Double(g) * (0.5 * erfc(-v / 2.0.squareRoot()) + v * exp(-0.5 * v * v) / (2 * Double.pi).squareRoot())
        }
        let x = Tensor(xs, shape: [xs.count])
        for (path, dy) in [("bulk", Tensor(gs, shape: [gs.count])), ("per element", Tensor(gs, shape: [1, gs.count]))] {
            let got = try SingleOp.run("GeluGrad", domain: trainingDomain, inputs: [dy, x], opset: 20)[0].toArray(Float.self)
            var worst = 0.0, worstAt: Float = 0
            for i in xs.indices {
                let erfError: Double = Swift.abs(Double(xs[i])) <= 4 * 2.0.squareRoot() ? 5e-10 : 8e-9
                let bound = 0.5 * Double(Float(reference[i]).ulp) + erfError * Double(Swift.abs(gs[i]))
                let ratio = Swift.abs(Double(got[i]) - reference[i]) / bound
                if !(ratio <= worst) { worst = ratio; worstAt = xs[i] }
            }
            XCTAssertLessThanOrEqual(worst, 1, "GeluGrad (\(path)): worst error \(worst) × the bound at x = \(worstAt)")
        }
    }

    func testGeluGradientMatchesPyTorchInBothTails() throws {
        let r = try reference()
        let ones = Tensor([Float](repeating: 1, count: r.x.count), shape: [r.x.count])
        let g = try SingleOp.run("GeluGrad", domain: trainingDomain, inputs: [ones, Tensor(r.x, shape: [r.x.count])], opset: 20)[0]
        assertClose(g.toArray(Float.self), r.exact_grad, r.x, "GeluGrad")
    }
}
