import Foundation
import XCTest
import GraphIR
@testable import Runtime
@testable import Training

/// Backward kernels vs the forward of the same layer at SegFormer-b0 shapes (batch 2, 512×512).
/// Skipped unless NNGRAD_BENCH=1; meant for release builds:
///   NNGRAD_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter NNGradBenchmarks
final class NNGradBenchmarks: XCTestCase {
    /// Best of 3 wall-time runs in ms, after a warm-up (buffer pool, OpenBLAS threads).
    func time(_ body: () throws -> Void) rethrows -> Double { try BenchHarness.best(repeats: 3, clock: .wall, body) }

    func filled(_ shape: [Int]) -> Tensor {
        let t = Tensor(uninitialized: .float, shape: shape)
        let p = t.pointer(Float.self)
        for i in 0..<t.count { p[i] = Float((i &* 2654435761) % 1000) / 1000 - 0.5 }
        return t
    }

    func shape(_ s: [Int]) -> Tensor { Tensor(s.map { Int64($0) }, shape: [s.count]) }

    func testSegFormerB0Shapes() throws {
        guard ProcessInfo.processInfo.environment["NNGRAD_BENCH"] == "1" else { throw XCTSkip("set NNGRAD_BENCH=1") }
        let context = ExecutionContext(threads: 2)
        let d = trainingDomain
        print("layer | forward ms | dX ms | dW ms | dB ms | backward/forward")
        let convs: [(String, [Int], [Int], [String: Attribute])] = [
            ("patch embed 1 (7×7 s4)", [2, 3, 512, 512], [32, 3, 7, 7], ["strides": .ints([4, 4]), "pads": .ints([3, 3, 3, 3])]),
            ("spatial reduction 1 (8×8 s8)", [2, 32, 128, 128], [32, 32, 8, 8], ["strides": .ints([8, 8])]),
            ("MixFFN dwconv 1 (3×3, 128 ch, 128²)", [2, 128, 128, 128], [128, 1, 3, 3], ["group": .int(128), "pads": .ints([1, 1, 1, 1])]),
            ("patch embed 2 (3×3 s2)", [2, 32, 128, 128], [64, 32, 3, 3], ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])]),
            ("spatial reduction 2 (4×4 s4)", [2, 64, 64, 64], [64, 64, 4, 4], ["strides": .ints([4, 4])]),
            ("MixFFN dwconv 2 (3×3, 256 ch, 64²)", [2, 256, 64, 64], [256, 1, 3, 3], ["group": .int(256), "pads": .ints([1, 1, 1, 1])]),
            ("patch embed 3 (3×3 s2)", [2, 64, 64, 64], [160, 64, 3, 3], ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])]),
            ("MixFFN dwconv 4 (3×3, 1024 ch, 16²)", [2, 1024, 16, 16], [1024, 1, 3, 3], ["group": .int(1024), "pads": .ints([1, 1, 1, 1])]),
            ("decode fuse (1×1 1024→256, 128²)", [2, 1024, 128, 128], [256, 1024, 1, 1], [:]),
        ]
        var totalF = 0.0, totalB = 0.0
        for (name, xs, ws, attrs) in convs {
            let x = filled(xs), w = filled(ws), b = filled([ws[0]])
            var y: Tensor!
            let f = try time { y = try SingleOp.run("Conv", inputs: [x, w, b], attributes: attrs, context: context)[0] }
            let dy = filled(y.shape)
            let dx = try time { _ = try SingleOp.run("ConvGradInput", domain: d, inputs: [dy, w, shape(xs)], attributes: attrs, context: context) }
            let dw = try time { _ = try SingleOp.run("ConvGradWeight", domain: d, inputs: [dy, x, shape(ws)], attributes: attrs, context: context) }
            let db = try time { _ = try SingleOp.run("ConvGradBias", domain: d, inputs: [dy], context: context) }
            totalF += f; totalB += dx + dw + db
            print("\(name) | " + String(format: "%.2f | %.2f | %.2f | %.2f | %.2f", f, dx, dw, db, (dx + dw + db) / f))
        }
        let matmuls: [(String, [Int], [Int])] = [
            ("MixFFN fc1 1 [2,16384,32]×[32,128]", [2, 16384, 32], [32, 128]),
            ("MixFFN fc2 1 [2,16384,128]×[128,32]", [2, 16384, 128], [128, 32]),
            ("attention QKᵀ 1 [2,1,16384,32]×[2,1,32,256]", [2, 1, 16384, 32], [2, 1, 32, 256]),
            ("attention PV 1 [2,1,16384,256]×[2,1,256,32]", [2, 1, 16384, 256], [2, 1, 256, 32]),
            ("attention QKᵀ 2 [2,2,4096,32]×[2,2,32,256]", [2, 2, 4096, 32], [2, 2, 32, 256]),
            ("decode MLP 4 [2,256,256]×[256,256]", [2, 256, 256], [256, 256]),
        ]
        for (name, as_, bs) in matmuls {
            let a = filled(as_), b = filled(bs)
            var y: Tensor!
            let f = try time { y = try SingleOp.run("MatMul", inputs: [a, b], context: context)[0] }
            let dy = filled(y.shape)
            let da = try time { _ = try SingleOp.run("MatMulGrad", domain: d, inputs: [dy, b, shape(as_)], attributes: ["input": .int(0)], context: context) }
            let db = try time { _ = try SingleOp.run("MatMulGrad", domain: d, inputs: [dy, a, shape(bs)], attributes: ["input": .int(1)], context: context) }
            totalF += f; totalB += da + db
            print("\(name) | " + String(format: "%.2f | %.2f (dA) | %.2f (dB) | - | %.2f", f, da, db, (da + db) / f))
        }
        print(String(format: "total forward %.1f ms, backward %.1f ms", totalF, totalB))
    }
}
