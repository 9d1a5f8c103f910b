import XCTest
import GraphIR
@testable import Runtime

/// The float32 GEMM libraries (OpenBLAS, and oneDNN where it loads): each gives the same bits from
/// run to run at a given thread count, and both compute the product (checked against Double).
final class GEMMLibraryTests: XCTestCase {
    private var libraries: [GEMMLibrary] { GEMMLibrary.allCases.filter { $0 == .openBLAS || GEMMLibrary.oneDNNAvailable } }

    func testEachLibraryIsBitIdenticalRunToRunAndComputesTheProduct() throws {
        // A SegFormer-like skinny product and a square-ish one (K large enough for a library to split it).
        let shapes: [(m: Int, n: Int, k: Int)] = [(4096, 64, 32), (300, 200, 700)]
        let initial = GEMMLibrary.current
        defer { try? GEMMLibrary.use(initial) }
        for (m, n, k) in shapes {
            let a = NNTest.tensor([m, k], seed: 1), b = NNTest.tensor([k, n], seed: 2)
            let (av, bv) = (try a.doubles(), try b.doubles())
            // The product in Double, and Σ|a·b| per element for float32's worst-case error bound k·ε·Σ|a·b|.
            var expected = [Double](repeating: 0, count: m * n), magnitude = expected
            for i in 0..<m {
                for l in 0..<k {
                    let x = av[i * k + l]
                    for j in 0..<n { expected[i * n + j] += x * bv[l * n + j]; magnitude[i * n + j] += abs(x * bv[l * n + j]) }
                }
            }
            let epsilon = Double(Float.ulpOfOne) / 2
            for library in libraries {
                try GEMMLibrary.use(library)
                XCTAssertEqual(GEMMLibrary.current, library)
                for threads in [1, 2] {
                    let context = ExecutionContext(threads: threads)
                    let runs = try (0..<3).map { _ in try SingleOp.run(OpType.matMul, inputs: [a, b], context: context)[0] }
                    let y = try runs[0].doubles()
                    let outside = (0..<(m * n)).filter { abs(y[$0] - expected[$0]) > Double(k) * epsilon * magnitude[$0] }
                    XCTAssertEqual(runs[0].shape, [m, n])
                    XCTAssertTrue(outside.isEmpty, "\(library), \(threads) threads, \(m)×\(n)×\(k): \(outside.count) elements beyond k·ε·Σ|a·b|, first \(outside.first.map { "\($0): \(y[$0]) vs \(expected[$0])" } ?? "")")
                    let bits = runs.map { y in (0..<y.count).map { y.pointer(Float.self)[$0].bitPattern } }
                    XCTAssertTrue(bits.allSatisfy { $0 == bits[0] }, "\(library), \(threads) threads, \(m)×\(n)×\(k)")
                }
            }
        }
    }
}
