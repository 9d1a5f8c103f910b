import Foundation
import XCTest
import GraphIR
import Runtime

/// Timings of the SegFormer-sized cases. Runs only with NORMOPS_BENCH=1 (use a release build:
/// `NORMOPS_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter NormOpsBenchmarks`).
final class NormOpsBenchmarks: XCTestCase {
    func time(_ name: String, repeats: Int = 5, _ body: () throws -> Void) rethrows {
        let best = try BenchHarness.bestThreadCPU(repeats: repeats, body)
        print(String(format: "%-50@ %8.3f ms (1 thread CPU)", name as NSString, best))
    }

    func random(_ shape: [Int]) -> Tensor { BenchHarness.random(shape) }

    func testBenchmarks() throws {
        guard ProcessInfo.processInfo.environment["NORMOPS_BENCH"] == "1" else { return }
        let ctx = ExecutionContext(threads: 1)
        for shape in [[1, 1, 16384, 256], [1, 2, 4096, 256], [1, 8, 256, 256]] {
            let x = random(shape)
            try time("Softmax \(shape)") { _ = try SingleOp.run("Softmax", inputs: [x], opset: 13, context: ctx) }
        }
        let x1 = random([1, 16384, 32])
        let ax = Tensor([Int64(-1)], shape: [1])
        try time("ReduceMean last [1,16384,32]") { _ = try SingleOp.run("ReduceMean", inputs: [x1, ax], opset: 18, context: ctx) }
        try time("ReduceMean last opset13 [1,16384,32]") {
            _ = try SingleOp.run("ReduceMean", inputs: [x1], attributes: ["axes": .ints([-1])], opset: 13, context: ctx)
        }
        let x2 = random([1, 256, 256])
        try time("ReduceMean last [1,256,256]") { _ = try SingleOp.run("ReduceMean", inputs: [x2, ax], opset: 18, context: ctx) }
        let w = random([32]), b = random([32])
        try time("LayerNorm [1,16384,32]") { _ = try SingleOp.run("LayerNormalization", inputs: [x1, w, b], opset: 17, context: ctx) }
        let x3 = random([1, 256, 16, 16])
        let sz = Tensor([Int64](arrayLiteral: 1, 256, 128, 128), shape: [4])
        try time("Resize bilinear [1,256,16,16]->128") {
            _ = try SingleOp.run("Resize", inputs: [x3, nil, nil, sz], attributes: ["mode": .string("linear")], opset: 13, context: ctx)
        }
        let x4 = random([1, 150, 128, 128])
        let sz4 = Tensor([Int64](arrayLiteral: 1, 150, 512, 512), shape: [4])
        try time("Resize bilinear [1,150,128,128]->512", repeats: 3) {
            _ = try SingleOp.run("Resize", inputs: [x4, nil, nil, sz4], attributes: ["mode": .string("linear")], opset: 13, context: ctx)
        }
        let x5 = random([2, 150, 128, 128])
        try time("ArgMax axis1 [2,150,128,128]") {
            _ = try SingleOp.run("ArgMax", inputs: [x5], attributes: ["axis": .int(1)], opset: 13, context: ctx)
        }
        try time("ReduceMax axis1 [2,150,128,128]") {
            _ = try SingleOp.run("ReduceMax", inputs: [x5, Tensor([Int64(1)], shape: [1])], opset: 18, context: ctx)
        }
    }
}
