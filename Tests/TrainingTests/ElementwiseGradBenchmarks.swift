import Foundation
import XCTest
import GraphIR
@testable import Runtime

/// Forward vs backward elementwise kernel timings at the size of SegFormer-b0's largest GELU input
/// (batch 2, 128·128 tokens, 128 hidden = 4M elements). Runs only with EWGRAD_BENCH=1, in release:
/// `EWGRAD_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter ElementwiseGradBenchmarks`.
final class ElementwiseGradBenchmarks: XCTestCase, ThreadCPUBenchmark {
    let nameWidth = 40

    func testBenchmarks() throws {
        guard ProcessInfo.processInfo.environment["EWGRAD_BENCH"] == "1" else { return }
        let ctx = ExecutionContext(threads: 1)
        let tr = trainingDomain
        let shape = [2, 16384, 128]
        let x = random(shape), dy = random(shape), c = random([128])
        try time("Mul fwd (same shape)") { _ = try SingleOp.run("Mul", inputs: [x, dy], context: ctx) }
        try time("Mul fwd ([C] broadcast)") { _ = try SingleOp.run("Mul", inputs: [x, c], context: ctx) }
        try time("Erf fwd") { _ = try SingleOp.run("Erf", inputs: [x], context: ctx) }
        try time("ErfGrad") { _ = try SingleOp.run("ErfGrad", domain: tr, inputs: [dy, x], context: ctx) }
        try time("Gelu fwd") { _ = try SingleOp.run("Gelu", inputs: [x], opset: 20, context: ctx) }
        try time("GeluGrad") { _ = try SingleOp.run("GeluGrad", domain: tr, inputs: [dy, x], context: ctx) }
        try time("Relu fwd") { _ = try SingleOp.run("Relu", inputs: [x], context: ctx) }
        try time("ReluGrad") { _ = try SingleOp.run("ReluGrad", domain: tr, inputs: [dy, x], context: ctx) }
        try time("DivGrad ([C] divisor)") { _ = try SingleOp.run("DivGrad", domain: tr, inputs: [dy, x, c], context: ctx) }
        let ln = [2, 16384, 1]
        let v = random(ln)
        try time("DivGrad ([B,N,1] divisor)") { _ = try SingleOp.run("DivGrad", domain: tr, inputs: [dy, x, v], context: ctx) }
        let two = Tensor([Float(2)], shape: [])
        try time("Pow fwd (x^2)") { _ = try SingleOp.run("Pow", inputs: [x, two], context: ctx) }
        try time("PowGrad (x^2)") { _ = try SingleOp.run("PowGrad", domain: tr, inputs: [dy, x, two], context: ctx) }
        try time("SumToShape [B,N,C]→[C]") {
            _ = try sumToShape(dy, [128], ctx)
        }
    }
}
