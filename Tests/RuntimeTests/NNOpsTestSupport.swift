import XCTest
import GraphIR
@testable import Runtime

/// Helpers shared by the MatMul/Gemm, Conv and pooling tests: deterministic data and comparisons.
enum NNTest {
    /// Deterministic pseudo-random values in [-1, 1) (a small LCG, so tests need no seeding API).
    static func values(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed &* 6364136223846793005 &+ 1442695040888963407
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int((state >> 33) % 2000) - 1000) / 1000
        }
    }

    static func tensor(_ shape: [Int], seed: UInt64) -> Tensor {
        Tensor(values(shape.reduce(1, *), seed: seed), shape: shape)
    }

    static func assertClose(_ actual: Tensor, _ expected: [Double], shape: [Int], tolerance: Double = 1e-4,
                            file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(actual.shape, shape, "shape", file: file, line: line)
        let a = try actual.doubles()
        XCTAssertEqual(a.count, expected.count, "count", file: file, line: line)
        var worst = 0.0, at = -1
        for i in 0..<min(a.count, expected.count) {
            let err = abs(a[i] - expected[i]) / max(1, abs(expected[i]))
            if !(err <= worst) { worst = err; at = i }
        }
        XCTAssert(worst <= tolerance, "max relative error \(worst) at \(at): got \(at >= 0 ? a[at] : .nan), expected \(at >= 0 ? expected[at] : .nan)", file: file, line: line)
    }
}
