import Foundation
import XCTest
import GraphIR
import Runtime
@testable import Training
import SegmentationData
import TestSupport

/// Training-mode exports (torch.onnx TrainingMode.TRAINING) against PyTorch's own training of the same
/// module: BatchNorm on batch statistics with PyTorch's running-statistics rule, dropout and drop-path
/// from the seeded stream, the eval-mode (inference) form. Fixtures: scripts/fixtures/make_trainmode_fixtures.py.
final class TrainingModeTests: XCTestCase {
    var folder: String!

    override func setUpWithError() throws { folder = try commonFixtures.path("tiny-segformer-train") }
    let runningStatistics = ["m.decode_head.batch_norm.running_mean", "m.decode_head.batch_norm.running_var"]

    func batch() throws -> (Tensor, Tensor) {
        (try ONNXImporter.readTensorFile(folder + "/batch/pixel_values.pb").tensor,
         try ONNXImporter.readTensorFile(folder + "/batch/labels.pb").tensor)
    }

    /// `segformer step --steps 3` on the BatchNorm-in-train-mode export: PyTorch's 4 losses (1e-4
    /// relative), its first gradients, its parameters after 3 AdamW steps (the reference README's
    /// criterion) and its running statistics after 3 steps (1e-3 relative); the 4th loss moves nothing.
    func checkThreeSteps(_ file: String) throws {
        let model = try ONNXImporter.load(contentsOf: folder + "/" + file)
        let (x, labels) = try batch()
        let expectedLosses = try ONNXImporter.readTensorFile(folder + "/expected/adamw-losses.pb").tensor.doubles()
        let expectedGrads = try ONNXImporter.load(contentsOf: folder + "/expected/grads.onnx").graph.initializers
        let after = try ONNXImporter.load(contentsOf: folder + "/expected/after-3-adamw.onnx").graph.initializers

        let training = try TrainingSession(model: model, options: TrainingOptions(threads: 2))
        XCTAssertEqual(training.bufferNames, runningStatistics.sorted(), "running statistics are state, not parameters")
        XCTAssertTrue(Set(training.parameterNames).isDisjoint(with: runningStatistics))
        let initial = training.parameters
        let optimizer = AdamW(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01)
        var losses: [Float] = []
        var firstGradients: [String: Tensor] = [:]
        for step in 1...3 {
            let taken = try training.step(step, batch: SegmentationBatch(pixelValues: x, labels: labels), optimizer: optimizer, learningRate: 1e-3)
            losses.append(taken.losses[0])
            if step == 1 { firstGradients = taken.gradients.mapValues { $0.copy() } }
        }
        let stateAfter3 = training.modelState
        losses.append(try training.lossAndGradients(pixelValues: x, labels: labels).loss)
        for (i, (got, want)) in zip(losses, expectedLosses).enumerated() {
            XCTAssertEqual(Double(got), want, accuracy: 1e-4 * abs(want), "\(file): loss \(i + 1)")
        }
        // The last loss is measured without moving the statistics.
        for name in runningStatistics {
            XCTAssertTrue(training.modelState[name]!.bitwiseEqual(stateAfter3[name]!), "\(name) moved by the last loss")
        }

        let total = expectedGrads.values.reduce(0.0) { $0 + pow(norm($1), 2) }.squareRoot()
        XCTAssertEqual(Set(firstGradients.keys), Set(expectedGrads.keys), "every parameter has a gradient")
        for (name, reference) in expectedGrads {
            guard let g = firstGradients[name] else { continue }
            XCTAssertLessThanOrEqual(normOfDifference(g, reference), 1e-3 * norm(reference) + 1e-7 * total, "\(file): gradient of \(name)")
        }
        for (name, reference) in after {
            if runningStatistics.contains(name) {
                let got = try XCTUnwrap(stateAfter3[name], name)
                XCTAssertLessThanOrEqual(normOfDifference(got, reference), 1e-3 * norm(reference), "\(file): \(name) after 3 steps")
                let before = try XCTUnwrap(model.graph.initializers[name])
                XCTAssertGreaterThan(normOfDifference(reference, before), 1e-3 * norm(reference), "the fixture's statistics move")
                continue
            }
            guard let p = stateAfter3[name], let p0 = initial[name], let gref = expectedGrads[name] else {
                XCTFail("no parameter \(name)"); continue
            }
            if norm(gref) <= 1e-6 * total { continue }
            XCTAssertLessThanOrEqual(normOfDifference(p, reference), 1e-3 * normOfDifference(reference, p0), "\(file): AdamW \(name)")
        }
        // The saved model carries both.
        let saved = training.updatedModel().graph.initializers
        for name in runningStatistics { XCTAssertTrue(saved[name]!.bitwiseEqual(stateAfter3[name]!), name) }
    }

    func testThreeStepsMatchPyTorchOpset17() throws { try checkThreeSteps("model.op17.onnx") }

    /// Opsets 9–13: torch.onnx marks training by asking for BatchNormalization's 5 outputs.
    func testThreeStepsMatchPyTorchOpset12() throws { try checkThreeSteps("model.op12.onnx") }

    /// The inference form of a training-mode export computes PyTorch's eval-mode logits.
    func testInferenceFormGivesEvalLogits() throws {
        let (x, _) = try batch()
        for (file, logits) in [("model.op17.onnx", "eval-logits.pb"), ("model.op12.onnx", "eval-logits.pb"),
                               ("model.dropout.op17.onnx", "dropout-eval-logits.pb")] {
            let model = try ONNXImporter.load(contentsOf: folder + "/" + file)
            let inference = try TrainingSession(model: model).inferenceModel()
            let ops = Set(inference.graph.nodes.map(\.opType))
            XCTAssertTrue(ops.isDisjoint(with: [OpType.dropout, OpType.randomUniformLike, OpType.floor]), "\(file): \(ops)")
            for n in inference.graph.nodes where n.opType == OpType.batchNormalization {
                XCTAssertEqual(n.outputs.count, 1, file)
                XCTAssertNil(n.attributes["training_mode"], file)
            }
            let expected = try ONNXImporter.readTensorFile(folder + "/expected/" + logits).tensor
            let got = try XCTUnwrap(Session(model: inference).run(["pixel_values": x])["logits"])
            XCTAssertLessThanOrEqual(maxAbsDifference(got, expected), 1e-4, file)
        }
    }

    func losses(_ model: Model, seed: UInt64, threads: Int, steps: Int = 3) throws -> [Float] {
        let (x, labels) = try batch()
        let training = try TrainingSession(model: model, options: TrainingOptions(threads: threads, seed: seed))
        let optimizer = AdamW(weightDecay: 0.01)
        return try (1...steps).map { try training.step($0, batch: SegmentationBatch(pixelValues: x, labels: labels), optimizer: optimizer,
                                                        learningRate: 1e-3).losses[0] }
    }

    /// Drop-path 0.1 and classifier dropout 0.1: finite losses; the seed decides the masks, the
    /// thread count does not.
    func testDropoutExportTrainsReproducibly() throws {
        let model = try ONNXImporter.load(contentsOf: folder + "/model.dropout.op17.onnx")
        let a = try losses(model, seed: 1, threads: 2)
        XCTAssertTrue(a.allSatisfy(\.isFinite), "\(a)")
        XCTAssertEqual(try losses(model, seed: 1, threads: 1), a, "same seed, one thread")
        XCTAssertEqual(try losses(model, seed: 1, threads: 2), a, "same seed again")
        XCTAssertNotEqual(try losses(model, seed: 2, threads: 2), a, "another seed")
    }

    /// Stopping after 2 steps and resuming from the model state, optimizer state and random stream
    /// gives the uninterrupted run's 3rd step exactly.
    func testResumeContinuesTheRandomStream() throws {
        let model = try ONNXImporter.load(contentsOf: folder + "/model.dropout.op17.onnx")
        let (x, labels) = try batch()
        let uninterrupted = try losses(model, seed: 7, threads: 2)

        let first = try TrainingSession(model: model, options: TrainingOptions(threads: 2, seed: 7))
        let optimizer = AdamW(weightDecay: 0.01)
        for s in 1...2 { _ = try first.step(s, batch: SegmentationBatch(pixelValues: x, labels: labels), optimizer: optimizer, learningRate: 1e-3) }
        let resumed = try TrainingSession(model: model, options: TrainingOptions(threads: 2, seed: 99))
        try resumed.loadParameters(first.modelState)
        resumed.randomState = try RandomStream(words: first.randomState.words)
        let optimizer2 = AdamW(weightDecay: 0.01)
        optimizer2.state = optimizer.state
        let third = try resumed.step(3, batch: SegmentationBatch(pixelValues: x, labels: labels), optimizer: optimizer2, learningRate: 1e-3)
        XCTAssertEqual(third.losses[0], uninterrupted[2])
    }
}
