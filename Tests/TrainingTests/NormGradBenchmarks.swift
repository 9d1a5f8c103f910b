import Foundation
import XCTest
import GraphIR
@testable import Runtime

/// Forward vs backward kernel timings at SegFormer-b0 training sizes (batch 2, 512×512). Runs only
/// with NORMGRAD_BENCH=1, in release:
/// `NORMGRAD_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter NormGradBenchmarks`.
final class NormGradBenchmarks: XCTestCase, ThreadCPUBenchmark {
    let nameWidth = 58

    func testBenchmarks() throws {
        guard ProcessInfo.processInfo.environment["NORMGRAD_BENCH"] == "1" else { return }
        let ctx = ExecutionContext(threads: 1)
        let tr = trainingDomain
        for shape in [[2, 16384, 32], [2, 4096, 64], [2, 256, 256]] {
            let x = random(shape), dy = random(shape), s = random([shape[2]]), b = random([shape[2]])
            try time("LayerNorm fwd \(shape)") { _ = try SingleOp.run("LayerNormalization", inputs: [x, s, b], context: ctx) }
            try time("LayerNormGrad \(shape)") {
                _ = try SingleOp.run("LayerNormGrad", domain: tr, inputs: [dy, x, s], outputCount: 3, context: ctx)
            }
            let ax = Tensor([Int64(-1)], shape: [1])
            try time("ReduceMean fwd \(shape)") { _ = try SingleOp.run("ReduceMean", inputs: [x, ax], opset: 18, context: ctx) }
            let g = random([shape[0], shape[1], 1])
            let shp = Tensor(shape.map { Int64($0) }, shape: [3])
            try time("ReduceGrad mean \(shape)") {
                _ = try SingleOp.run("ReduceGrad", domain: tr, inputs: [g, shp, ax], attributes: ["kind": .string("mean"),
                                     "axes_from_input": .int(1)], context: ctx)
            }
        }
        let att = random([2, 1, 16384, 256]), datt = random([2, 1, 16384, 256])
        let y = try SingleOp.run("Softmax", inputs: [att], opset: 13, context: ctx)[0]
        try time("Softmax fwd [2,1,16384,256]") { _ = try SingleOp.run("Softmax", inputs: [att], opset: 13, context: ctx) }
        try time("SoftmaxGrad [2,1,16384,256]") { _ = try SingleOp.run("SoftmaxGrad", domain: tr, inputs: [datt, y], context: ctx) }

        let linear: [String: Attribute] = ["mode": .string("linear"), "coordinate_transformation_mode": .string("half_pixel")]
        for (inS, outHW) in [([2, 256, 16, 16], 128), ([2, 256, 64, 64], 128), ([2, 150, 128, 128], 512)] {
            let x = random(inS)
            let sizes = Tensor([Int64(inS[0]), Int64(inS[1]), Int64(outHW), Int64(outHW)], shape: [4])
            let dy = random([inS[0], inS[1], outHW, outHW])
            let shp = Tensor(inS.map { Int64($0) }, shape: [4])
            try time("Resize fwd \(inS)→\(outHW)") { _ = try SingleOp.run("Resize", inputs: [x, nil, nil, sizes], attributes: linear, context: ctx) }
            try time("ResizeGrad \(inS)→\(outHW)") {
                _ = try SingleOp.run("ResizeGrad", domain: tr, inputs: [dy, shp, nil, nil, sizes], attributes: linear, context: ctx)
            }
        }
        let scores = random([2, 150, 512, 512])
        let labels = Tensor(uninitialized: .int64, shape: [2, 512, 512])
        let lp = labels.pointer(Int64.self)
        for i in 0..<labels.count { lp[i] = i % 11 == 0 ? 255 : Int64((i * 7) % 150) }
        let attrs: [String: Attribute] = ["ignore_index": .int(255)]
        try time("SoftmaxCrossEntropyLoss fwd [2,150,512,512]", repeats: 2) {
            _ = try SingleOp.run("SoftmaxCrossEntropyLoss", inputs: [scores, labels], attributes: attrs, context: ctx)
        }
        try time("SoftmaxCrossEntropyLossGrad [2,150,512,512]", repeats: 2) {
            _ = try SingleOp.run("SoftmaxCrossEntropyLossGrad", domain: tr, inputs: [Tensor(scalar: Float(1)), scores, labels],
                                 attributes: attrs, context: ctx)
        }
    }
}
