import Foundation
import XCTest
import GraphIR
import Runtime
@testable import Training

/// The multi-tensor AdamW (one pass over flat moment buffers, split across threads) against AdamW
/// applied one parameter at a time with torch.optim.AdamW's per-element formula (the update this
/// project used before, itself checked against PyTorch in `OptimizerTests` and the reference run):
/// the same bits, at every thread count, and across a checkpoint round trip.
final class MultiTensorAdamWTests: XCTestCase {
    /// Sizes around the 16-lane width and one large enough to be split across threads.
    let shapes: [String: [Int]] = ["a.weight": [1], "b.bias": [15], "c.weight": [16], "decode_head.w": [17, 3],
                                   "e.weight": [300, 301], "f.norm": [64]]
    let groups = [ParameterGroup(names: ["decode_head.w"], learningRateMultiplier: 10),
                  ParameterGroup(names: ["f.norm", "b.bias"], weightDecay: 0)]

    func testSameBitsAsOneParameterAtATimeAtEveryThreadCount() throws {
        let expected = referenceRun(steps: 4)
        for threads in [1, 2, 3] {
            let (params, grads) = initial()
            let adam = AdamW(weightDecay: 0.05, groups: groups)
            let context = ExecutionContext(threads: threads)
            for s in 0..<4 {
                try adam.update(parameters: params, gradients: grads[s], learningRate: 1e-2 / Double(s + 1), context: context)
            }
            for (name, p) in params {
                XCTAssertEqual(bits(p), bits(expected[name]!), "\(name) at \(threads) threads")
            }
        }
    }

    func testStateRoundTripResumesWithTheSameBits() throws {
        let expected = referenceRun(steps: 4)
        let (params, grads) = initial()
        let first = AdamW(weightDecay: 0.05, groups: groups)
        for s in 0..<2 { try first.update(parameters: params, gradients: grads[s], learningRate: 1e-2 / Double(s + 1)) }
        let resumed = AdamW(weightDecay: 0.05, groups: groups)
        resumed.state = first.state
        XCTAssertEqual(Set(resumed.state.slots.keys), Set(shapes.keys))
        for s in 2..<4 {
            try resumed.update(parameters: params, gradients: grads[s], learningRate: 1e-2 / Double(s + 1),
                               context: ExecutionContext(threads: 2))
        }
        for (name, p) in params { XCTAssertEqual(bits(p), bits(expected[name]!), name) }
    }

    /// A parameter without a gradient in some step is left alone and keeps its moments.
    func testAParameterWithoutAGradientKeepsItsMoments() throws {
        let (params, grads) = initial()
        let adam = AdamW()
        try adam.update(parameters: params, gradients: grads[0], learningRate: 1e-2)
        let before = adam.state.slots["c.weight"]!
        let frozen = params["c.weight"]!.copy()
        var partial = grads[1]
        partial["c.weight"] = nil
        try adam.update(parameters: params, gradients: partial, learningRate: 1e-2)
        XCTAssertEqual(bits(params["c.weight"]!), bits(frozen))
        XCTAssertEqual(bits(adam.state.slots["c.weight"]!["exp_avg"]!), bits(before["exp_avg"]!))
        try adam.update(parameters: params, gradients: grads[2], learningRate: 1e-2)
        XCTAssertNotEqual(bits(params["c.weight"]!), bits(frozen))
    }

    // MARK: helpers

    func initial() -> ([String: Tensor], [[String: Tensor]]) {
        var state: UInt64 = 12345
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1_000_000
        }
        // Drawn in name order: a dictionary's own order differs from one instance to the next.
        let names = shapes.keys.sorted()
        var params: [String: Tensor] = [:]
        for name in names { params[name] = Tensor((0..<Tensor.elementCount(shapes[name]!)).map { _ in next() }, shape: shapes[name]!) }
        var grads: [[String: Tensor]] = []
        for _ in 0..<4 {
            var g: [String: Tensor] = [:]
            for name in names { g[name] = Tensor((0..<params[name]!.count).map { _ in next() * 0.1 }, shape: shapes[name]!) }
            grads.append(g)
        }
        return (params, grads)
    }

    /// torch.optim.AdamW's update written out per element, one parameter at a time, in float32.
    func referenceRun(steps: Int) -> [String: Tensor] {
        let (params, grads) = initial()
        let table = ParameterGroups(groups)
        var m = params.mapValues { [Float](repeating: 0, count: $0.count) }, v = m
        for s in 0..<steps {
            let t = Double(s + 1), lr = 1e-2 / Double(s + 1)
            let bc1 = 1 - pow(0.9, t), bc2 = 1 - pow(0.999, t)
            for (name, p) in params {
                let (groupLR, wd) = table.settings(name, learningRate: lr, weightDecay: 0.05)
                let decay = Float(1 - groupLR * wd), stepSize = Float(groupLR / bc1), sqrtBC2 = Float(bc2.squareRoot())
                let b1 = Float(0.9), b2 = Float(0.999), eps = Float(1e-8)
                let pp = p.pointer(Float.self), gp = grads[s][name]!.pointer(Float.self)
                for i in 0..<p.count {
                    let gi = gp[i]
                    var x = pp[i] * decay
                    let mi = m[name]![i] * b1 + (1 - b1) * gi
                    let vi = v[name]![i] * b2 + (1 - b2) * gi * gi
                    m[name]![i] = mi
                    v[name]![i] = vi
                    x -= stepSize * mi / (vi.squareRoot() / sqrtBC2 + eps)
                    pp[i] = x
                }
            }
        }
        return params
    }

    func bits(_ t: Tensor) -> [UInt32] { t.toArray(Float.self).map(\.bitPattern) }
}
