import Foundation
import XCTest
import GraphIR
@testable import Runtime

/// Forward vs backward timings of the shape-family kernels at SegFormer-b0 training sizes (batch 2,
/// 512×512). Runs only with SHAPEGRAD_BENCH=1, in release:
/// `SHAPEGRAD_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter ShapeGradBenchmarks`.
final class ShapeGradBenchmarks: XCTestCase {
    func time(_ name: String, threads: Int, repeats: Int = 5, _ body: () throws -> Void) rethrows {
        let best = try BenchHarness.best(repeats: repeats, clock: .wall, body)
        print(String(format: "%-60@ %9.2f ms (%d threads, wall)", name as NSString, best, threads))
    }

    func random(_ shape: [Int]) -> Tensor { BenchHarness.random(shape) }

    func ints(_ v: [Int]) -> Tensor { Tensor(v.map { Int64($0) }, shape: [v.count]) }

    func testBenchmarks() throws {
        guard ProcessInfo.processInfo.environment["SHAPEGRAD_BENCH"] == "1" else { return }
        let tr = trainingDomain
        for threads in [1, 2] {
            let ctx = ExecutionContext(threads: threads)
            // Decode head: 4 × [2, 256, 128, 128] concatenated on channels.
            let parts = (0..<4).map { _ in random([2, 256, 128, 128]) }
            let dy = random([2, 1024, 128, 128])
            let shape = ints([2, 256, 128, 128])
            try time("Concat fwd 4×[2,256,128,128] axis 1", threads: threads) {
                _ = try SingleOp.run("Concat", inputs: parts, attributes: ["axis": .int(1)], context: ctx)
            }
            try time("ConcatGrad [2,1024,128,128] → 4 parts", threads: threads) {
                _ = try SingleOp.run("ConcatGrad", domain: tr, inputs: [dy, shape, shape, shape, shape],
                                     attributes: ["axis": .int(1), "select": .ints([0, 1, 2, 3])], outputCount: 4, context: ctx)
            }
            // Patch-embedding transpose [2, 32, 16384] ↔ [2, 16384, 32] and its backward.
            let x = random([2, 32, 16384]), g = random([2, 16384, 32])
            try time("Transpose fwd [2,32,16384] perm [0,2,1]", threads: threads) {
                _ = try SingleOp.run("Transpose", inputs: [x], attributes: ["perm": .ints([0, 2, 1])], context: ctx)
            }
            try time("Transpose bwd [2,16384,32] perm [0,2,1]", threads: threads) {
                _ = try SingleOp.run("Transpose", inputs: [g], attributes: ["perm": .ints([0, 2, 1])], context: ctx)
            }
            // Slice of half the channels with step 2 and its scatter.
            let s = random([2, 64, 128, 128])
            let sl = try SingleOp.run("Slice", inputs: [s, ints([1]), ints([64]), ints([1]), ints([2])], context: ctx)[0]
            try time("Slice fwd [2,64,128,128] step 2 axis 1", threads: threads) {
                _ = try SingleOp.run("Slice", inputs: [s, ints([1]), ints([64]), ints([1]), ints([2])], context: ctx)
            }
            try time("SliceGrad → [2,64,128,128]", threads: threads) {
                _ = try SingleOp.run("SliceGrad", domain: tr, inputs: [sl, ints([2, 64, 128, 128]), ints([1]), ints([64]), ints([1]), ints([2])], context: ctx)
            }
            // Embedding-like gather rows.
            let table = random([4096, 256]), idx = Tensor((0..<8192).map { Int64(($0 * 7919) % 4096) }, shape: [8192])
            let gy = random([8192, 256])
            try time("Gather fwd [4096,256] × 8192 rows", threads: threads) {
                _ = try SingleOp.run("Gather", inputs: [table, idx], context: ctx)
            }
            try time("GatherGrad 8192 rows → [4096,256]", threads: threads) {
                _ = try SingleOp.run("GatherGrad", domain: tr, inputs: [gy, idx, ints([4096, 256])], context: ctx)
            }
        }
    }
}
