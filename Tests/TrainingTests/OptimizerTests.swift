import Foundation
import XCTest
import GraphIR
@testable import Training
import TestSupport

/// Optimizer trajectories and schedules against torch.optim and transformers.get_scheduler
/// (fixtures made by scripts/fixtures/make_optimizer_fixtures.py).
final class OptimizerTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            var kind: String
            var initial: [Float], grads: [[Float]], final: [Float], shape: [Int]
            var lr: Double
            var betas: [Double]?
            var eps: Double?
            var weight_decay: Double?
            var momentum: Double?
            var nesterov: Bool?
        }
        struct Schedule: Decodable {
            var name: String
            var warmup: Int, total: Int
            var power: Double, lr_end: Double, base: Double
            var rates: [Double]
        }
        var optimizers: [Case]
        var schedules: [Schedule]
    }

    func load() throws -> Fixture {
        try JSONDecoder().decode(Fixture.self, from: commonFixtures.data("optimizers.json"))
    }

    func testOptimizersMatchTorch() throws {
        for c in try load().optimizers {
            let p = Tensor(c.initial, shape: c.shape)
            let opt: Optimizer
            switch c.kind {
            case "adamw":
                guard let betas = c.betas, betas.count == 2, let eps = c.eps, let weightDecay = c.weight_decay else {
                    XCTFail("adamw case lr \(c.lr): betas, eps or weight_decay missing"); continue
                }
                opt = AdamW(beta1: betas[0], beta2: betas[1], epsilon: eps, weightDecay: weightDecay)
            case "sgd":   // absent options are torch.optim.SGD's defaults
                opt = SGD(momentum: c.momentum ?? 0, weightDecay: c.weight_decay ?? 0, nesterov: c.nesterov ?? false)
            default:
                XCTFail("unknown optimizer kind \(c.kind)"); continue
            }
            XCTAssertEqual(c.final.count, c.initial.count, "\(c.kind) lr \(c.lr): final values")
            for g in c.grads {
                try opt.update(parameters: ["w": p], gradients: ["w": Tensor(g, shape: c.shape)], learningRate: c.lr)
            }
            let got = p.toArray(Float.self)
            for i in got.indices where i < c.final.count {
                XCTAssertEqual(got[i], c.final[i], accuracy: 1e-6 + 1e-5 * abs(c.final[i]), "\(c.kind) lr \(c.lr) element \(i)")
            }
        }
    }

    func testSchedulesMatchTransformers() throws {
        for s in try load().schedules {
            let schedule: LRSchedule
            switch s.name {
            case "linear": schedule = .linear(warmup: s.warmup, total: s.total)
            case "constant_with_warmup": schedule = .constantWithWarmup(warmup: s.warmup)
            case "polynomial": schedule = .polynomial(warmup: s.warmup, total: s.total, power: s.power, endRate: s.lr_end)
            default: XCTFail("unknown schedule \(s.name)"); continue
            }
            for (step, expected) in s.rates.enumerated() {
                XCTAssertEqual(schedule.rate(at: step, base: s.base), expected, accuracy: 1e-12, "\(s.name) step \(step)")
            }
        }
    }

    func testOptimizerStateRoundTrips() throws {
        let p = Tensor([Float(1), 2, 3], shape: [3])
        let g = Tensor([Float(0.5), -1, 2], shape: [3])
        let a = AdamW()
        try a.update(parameters: ["w": p], gradients: ["w": g], learningRate: 0.1)
        let b = AdamW()
        b.state = a.state
        let p2 = p.copy()
        try a.update(parameters: ["w": p], gradients: ["w": g], learningRate: 0.1)
        try b.update(parameters: ["w": p2], gradients: ["w": g], learningRate: 0.1)
        XCTAssertEqual(p.toArray(Float.self), p2.toArray(Float.self))
        XCTAssertEqual(b.step, 2)
    }

    func testShapeMismatchIsAnError() {
        let a = AdamW()
        XCTAssertThrowsError(try a.update(parameters: ["w": Tensor([Float(1)], shape: [1])],
                                          gradients: ["w": Tensor([Float(1), 2], shape: [2])], learningRate: 1)) { e in
            XCTAssertTrue("\(e)".contains("'w'"), "\(e)")
        }
    }
}
