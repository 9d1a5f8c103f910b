import XCTest
import GraphIR
@testable import Runtime

/// Kernels prepared with a constant weight (`ConstantPreparedKernel`, `PackedWeights`: oneDNN's matmul
/// primitive reading B packed once) compute the product — checked against Double with float32's
/// worst-case bound k·ε·Σ|a·b| — give the same bits from run to run and from kernel to kernel at
/// 1, 2 and 3 threads, and fall back to sgemm on OpenBLAS.
final class PackedWeightsTests: XCTestCase {
    private var libraries: [GEMMLibrary] { GEMMLibrary.allCases.filter { $0 == .openBLAS || GEMMLibrary.oneDNNAvailable } }
    private let epsilon = Double(Float.ulpOfOne) / 2

    /// Runs `run` with each library in use and each thread count (restoring the library in use).
    private func forEachLibraryAndThreadCount(_ body: (GEMMLibrary, ExecutionContext) throws -> Void) throws {
        let initial = GEMMLibrary.current
        defer { try? GEMMLibrary.use(initial) }
        for library in libraries {
            try GEMMLibrary.use(library)
            for threads in [1, 2, 3] { try body(library, ExecutionContext(threads: threads)) }
        }
    }

    /// Two kernels prepared alike, each run twice: the four results.
    private func runs(_ makeKernel: () throws -> Kernel, _ inputs: [Tensor?], _ context: ExecutionContext) throws -> [Tensor] {
        try (0..<2).flatMap { _ in
            let kernel = try makeKernel()
            return try (0..<2).map { _ in try kernel.run(inputs, context)[0] }
        }
    }

    private func assertSameBits(_ results: [Tensor], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let bits = results.map { y in (0..<y.count).map { y.pointer(Float.self)[$0].bitPattern } }
        XCTAssertTrue(bits.allSatisfy { $0 == bits[0] }, "\(what): results differ between runs", file: file, line: line)
    }

    /// Elements of `y` farther from `expected` than `bound` allows, described.
    private func outliers(_ y: Tensor, _ expected: [Double], _ bound: [Double]) throws -> String? {
        let v = try y.doubles()
        let outside = v.indices.filter { abs(v[$0] - expected[$0]) > bound[$0] }
        return outside.first.map { "\(outside.count) elements beyond the bound, first \($0): \(v[$0]) vs \(expected[$0])" }
    }

    func testFusedMatMulWithAConstantWeightComputesTheProductWithTheSameBits() throws {
        // Row blocks (4096 rows at 1 and 2 threads; 16 blocks of 256 rows run side by side on the
        // threads with 256 columns), one GEMM (3 threads; 300 rows), B read transposed.
        for (m, k, n, transB) in [(4096, 64, 96, false), (4096, 64, 256, false), (1024, 640, 160, false), (300, 700, 200, true)] {
            let a = NNTest.tensor([1, m, k], seed: 1), b = NNTest.tensor(transB ? [n, k] : [k, n], seed: 2)
            let (av, bv) = (try a.doubles(), try b.doubles())
            var expected = [Double](repeating: 0, count: m * n), magnitude = expected
            for i in 0..<m {
                for l in 0..<k {
                    let x = av[i * k + l]
                    for j in 0..<n {
                        let p = x * bv[transB ? j * k + l : l * n + j]
                        expected[i * n + j] += p
                        magnitude[i * n + j] += abs(p)
                    }
                }
            }
            let bound = magnitude.map { Double(k) * epsilon * $0 }
            let attributes: [String: Attribute] = transB ? ["transB": .int(1)] : [:]
            try forEachLibraryAndThreadCount { library, context in
                let what = "\(library), \(context.threads) threads, \(m)×\(k)×\(n)"
                let results = try runs({
                    try SingleOp.preparedKernel(OpType.fusedMatMul, domain: fusedDomain, constants: [nil, b], attributes: attributes)
                }, [a, b], context)
                XCTAssertEqual(results[0].shape, [1, m, n])
                XCTAssertNil(try outliers(results[0], expected, bound), what)
                assertSameBits(results, what)
            }
        }
    }

    func testChannelsLastConvWithAConstantWeightComputesTheConvWithTheSameBits() throws {
        // A spatial reduction (kernel = stride) and a patch embedding (3×3, stride 2, pad 1), with bias.
        for (side, c, mOut, kernel, stride, pad) in [(32, 16, 24, 4, 4, 0), (17, 8, 64, 3, 2, 1)] {
            let x = NNTest.tensor([1, side, side, c], seed: 3), w = NNTest.tensor([mOut, kernel, kernel, c], seed: 4)
            let b = NNTest.tensor([mOut], seed: 5)
            let (xv, wv, bv) = (try x.doubles(), try w.doubles(), try b.doubles())
            let out = (side + 2 * pad - kernel) / stride + 1
            var expected = [Double](repeating: 0, count: out * out * mOut), bound = expected
            for oh in 0..<out {
                for ow in 0..<out {
                    for o in 0..<mOut {
                        var sum = 0.0, magnitude = 0.0
                        for kh in 0..<kernel {
                            for kw in 0..<kernel {
                                let ih = oh * stride - pad + kh, iw = ow * stride - pad + kw
                                guard ih >= 0, ih < side, iw >= 0, iw < side else { continue }
                                for ch in 0..<c {
                                    let p = xv[(ih * side + iw) * c + ch] * wv[((o * kernel + kh) * kernel + kw) * c + ch]
                                    sum += p
                                    magnitude += abs(p)
                                }
                            }
                        }
                        let at = (oh * out + ow) * mOut + o
                        expected[at] = sum + bv[o]
                        bound[at] = Double(kernel * kernel * c + 1) * epsilon * (magnitude + abs(bv[o]))
                    }
                }
            }
            let attributes: [String: Attribute] = ["kernel_shape": .ints([kernel, kernel]), "strides": .ints([stride, stride]),
                                                   "pads": .ints([pad, pad, pad, pad]), "channels_last_input": .int(1)]
            try forEachLibraryAndThreadCount { library, context in
                let what = "\(library), \(context.threads) threads, side \(side), kernel \(kernel)"
                let results = try runs({
                    try SingleOp.preparedKernel(OpType.channelsLastConv, domain: fusedDomain, constants: [nil, w, b], attributes: attributes)
                }, [x, w, b], context)
                XCTAssertEqual(results[0].shape, [1, out, out, mOut])
                XCTAssertNil(try outliers(results[0], expected, bound), what)
                assertSameBits(results, what)
            }
        }
    }

    /// With oneDNN in use the weight is packed once, however many GEMMs of one shape read it.
    func testTheWeightIsPackedOnceForRepeatedProducts() throws {
        guard let packed = PackedWeights(NNTest.tensor([64, 80], seed: 6), rows: 64, transB: false) else {
            throw XCTSkip("oneDNN's matmul primitive is not available")
        }
        let initial = GEMMLibrary.current
        defer { try? GEMMLibrary.use(initial) }
        try GEMMLibrary.use(.oneDNN)
        let a = NNTest.tensor([256, 64], seed: 7), c = Tensor(uninitialized: .float, shape: [256, 80])
        for _ in 0..<3 {
            BLAS.gemm(Float.self, ExecutionContext(threads: 2), m: 256, n: 80, k: 64, a: a.pointer(Float.self), lda: 64,
                      b: packed.weights.pointer(Float.self), ldb: 80, c: c.pointer(Float.self), ldc: 80, packedB: packed)
        }
        XCTAssertEqual(packed.packedCopies, 1)
    }
}
