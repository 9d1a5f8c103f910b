import Foundation
import XCTest
import GraphIR
@testable import Training

final class CheckpointTests: XCTestCase {
    func testRoundTripAndExactResume() throws {
        let dir = NSTemporaryDirectory() + "ckpt-\(UUID().uuidString)/last"
        defer { try? FileManager.default.removeItem(atPath: (dir as NSString).deletingLastPathComponent) }
        let p = Tensor([Float(1), -2, 3.5], shape: [3])
        let g = Tensor([Float(0.25), 1, -0.5], shape: [3])
        let a = AdamW()
        try a.update(parameters: ["w": p], gradients: ["w": g], learningRate: 0.01)
        let ck = Checkpoint(step: 1, parameters: ["w": p.copy()], optimizer: a.state,
                            pipelineState: ["rng": [UInt64.max, 12345]], metadata: ["seed": "7"])
        try ck.write(to: dir)
        try ck.write(to: dir)   // overwriting an existing checkpoint is atomic too
        let back = try Checkpoint.read(from: dir)
        XCTAssertEqual(back.step, 1)
        XCTAssertEqual(back.pipelineState["rng"], [UInt64.max, 12345])
        XCTAssertEqual(back.metadata["seed"], "7")
        XCTAssertTrue(back.parameters["w"]!.bitwiseEqual(p))

        // Continue from the checkpoint and from the live optimizer: identical bits.
        let b = AdamW()
        b.state = back.optimizer
        let p2 = back.parameters["w"]!
        try a.update(parameters: ["w": p], gradients: ["w": g], learningRate: 0.01)
        try b.update(parameters: ["w": p2], gradients: ["w": g], learningRate: 0.01)
        XCTAssertTrue(p.bitwiseEqual(p2))
    }

    func testMissingOrCorruptCheckpointIsNamed() throws {
        XCTAssertThrowsError(try Checkpoint.read(from: "/nonexistent/ckpt")) { e in
            XCTAssertTrue("\(e)".contains("/nonexistent/ckpt"), "\(e)")
        }
        let dir = NSTemporaryDirectory() + "ckpt-bad-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: dir + "/state.json"))
        XCTAssertThrowsError(try Checkpoint.read(from: dir)) { e in XCTAssertTrue("\(e)".contains("state.json"), "\(e)") }
    }

    /// A restored optimizer state with an impossible step count is an error at the next update, not a trap.
    func testAnImpossibleOptimizerStepIsAnErrorNotATrap() throws {
        let p = Tensor([Float(1)], shape: [1]), g = Tensor([Float(0.5)], shape: [1])
        for optimizer in [AdamW(), SGD()] as [Optimizer] {
            for step in [Int.max, -5] {
                optimizer.state = OptimizerState(step: step, slots: [:])
                XCTAssertThrowsError(try optimizer.update(parameters: ["w": p], gradients: ["w": g], learningRate: 0.1)) { e in
                    XCTAssertTrue("\(e)".contains("step count \(step)"), "\(e)")
                }
            }
        }
        XCTAssertEqual(p.pointer(Float.self)[0], 1, "a refused update changes nothing")
    }
}
