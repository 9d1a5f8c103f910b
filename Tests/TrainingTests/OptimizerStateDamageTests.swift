import Foundation
import XCTest
import GraphIR
@testable import Training

/// Found by fuzzing checkpoints: a restored optimizer state missing a moment trapped when the next
/// checkpoint was written, and moments of another shape would be read past their end.
final class OptimizerStateDamageTests: XCTestCase {
    func testDamagedAdamWStateIsAnErrorNotATrap() throws {
        let p = Tensor([Float](repeating: 1, count: 4), shape: [4])
        let g = Tensor([Float](repeating: 0.5, count: 4), shape: [4])
        let adam = AdamW()
        adam.state = OptimizerState(step: 3, slots: ["w": ["exp_avg": Tensor(zeros: .float, shape: [4])]])
        XCTAssertEqual(adam.state.slots.count, 0, "the incomplete slot is dropped, not unwrapped")
        adam.state = OptimizerState(step: 3, slots: ["w": ["exp_avg": Tensor(zeros: .float, shape: [2]),
                                                           "exp_avg_sq": Tensor(zeros: .float, shape: [2])]])
        XCTAssertThrowsError(try adam.update(parameters: ["w": p], gradients: ["w": g], learningRate: 0.1)) {
            XCTAssertTrue("\($0)".contains("'w'") && "\($0)".contains("[2]"), "\($0)")
        }
    }

    func testSGDMomentumBufferOfAnotherShapeIsAnError() throws {
        let p = Tensor([Float](repeating: 1, count: 4), shape: [4])
        let sgd = SGD(momentum: 0.9)
        sgd.state = OptimizerState(step: 1, slots: ["w": ["momentum_buffer": Tensor(zeros: .float, shape: [3])]])
        XCTAssertThrowsError(try sgd.update(parameters: ["w": p], gradients: ["w": p.copy()], learningRate: 0.1)) {
            XCTAssertTrue("\($0)".contains("momentum buffer for 'w'"), "\($0)")
        }
    }
}
