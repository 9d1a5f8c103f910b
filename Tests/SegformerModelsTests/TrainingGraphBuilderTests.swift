import Foundation
import XCTest
import GraphIR
import Runtime
@testable import SegformerModels
import SegmentationData
import Training
import TestSupport

/// The builder's training form (what `segformer init` writes) against HuggingFace's train mode, through
/// the training-mode exports of scripts/fixtures/make_trainmode_fixtures.py: with their weights loaded,
/// the built graph trains as PyTorch trained it and its inference form gives PyTorch's eval logits.
final class TrainingGraphBuilderTests: XCTestCase {
    var folder: String!

    override func setUpWithError() throws { folder = try commonFixtures.path("tiny-segformer-train") }

    /// make_tiny_segformer.py's tiny_config.
    func tinyConfig(dropPath: Double, classifierDropout: Double) -> SegformerConfig {
        var c = SegformerConfig(hiddenSizes: [8, 16], depths: [1, 1], numAttentionHeads: [1, 2], srRatios: [2, 1],
                                patchSizes: [7, 3], strides: [4, 2], mlpRatios: [2, 2], decoderHiddenSize: 16, numLabels: 5)
        c.dropPathRate = dropPath
        c.classifierDropoutProb = classifierDropout
        return c
    }

    func built(from file: String, dropPath: Double, classifierDropout: Double) throws -> Model {
        var model = try SegformerBuilder.build(config: tinyConfig(dropPath: dropPath, classifierDropout: classifierDropout),
                                               form: .training)
        let source = try ONNXImporter.load(contentsOf: folder + "/" + file)
        let filled = try SegformerBuilder.loadParameters(from: source, into: &model, scopes: ["segformer.", "decode_head."])
        XCTAssertEqual(filled, model.graph.initializers.keys.filter { $0.hasPrefix("segformer.") || $0.hasPrefix("decode_head.") }.count)
        return model
    }

    func testTrainingFormMatchesHuggingFaceTrainMode() throws {
        let model = try built(from: "model.op17.onnx", dropPath: 0, classifierDropout: 0)
        let bn = model.graph.nodes.filter { $0.opType == OpType.batchNormalization }
        XCTAssertEqual(bn.count, 1)
        XCTAssertEqual(try bn.first?.int("training_mode"), 1)
        let x = try ONNXImporter.readTensorFile(folder + "/batch/pixel_values.pb").tensor
        let labels = try ONNXImporter.readTensorFile(folder + "/batch/labels.pb").tensor
        let expected = try ONNXImporter.readTensorFile(folder + "/expected/adamw-losses.pb").tensor.doubles()
        let training = try TrainingSession(model: model, options: TrainingOptions(threads: 2))
        XCTAssertEqual(training.bufferNames, ["decode_head.batch_norm.running_mean", "decode_head.batch_norm.running_var"])
        let optimizer = AdamW(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01)
        var losses: [Double] = []
        for step in 1...3 {
            losses.append(Double(try training.step(step, batch: SegmentationBatch(pixelValues: x, labels: labels),
                                                   optimizer: optimizer, learningRate: 1e-3).losses[0]))
        }
        losses.append(Double(try training.lossAndGradients(pixelValues: x, labels: labels).loss))
        for (i, (got, want)) in zip(losses, expected).enumerated() {
            XCTAssertEqual(got, want, accuracy: 1e-4 * abs(want), "loss \(i + 1)")
        }
        let after = try ONNXImporter.load(contentsOf: folder + "/expected/after-3-adamw.onnx").graph.initializers
        for stat in ["running_mean", "running_var"] {
            let got = try XCTUnwrap(training.modelState["decode_head.batch_norm.\(stat)"])
            let want = try XCTUnwrap(after["m.decode_head.batch_norm.\(stat)"])
            XCTAssertLessThanOrEqual(normOfDifference(got, want), 1e-3 * norm(want), stat)
        }
    }

    func testInferenceFormGivesEvalLogits() throws {
        let model = try built(from: "model.dropout.op17.onnx", dropPath: 0.1, classifierDropout: 0.1)
        let ops = model.graph.nodes.map(\.opType)
        XCTAssertEqual(ops.filter { $0 == OpType.randomUniformLike }.count, 2, "drop-path in the second block only (rates 0, 0.1)")
        XCTAssertEqual(ops.filter { $0 == OpType.dropout }.count, 1, "classifier dropout (hidden and attention dropout are 0)")
        let inference = try Passes.inferenceForm(model.graph, opset: model.opset)
        XCTAssertTrue(Set(inference.nodes.map(\.opType)).isDisjoint(with: [OpType.dropout, OpType.randomUniformLike]))
        let x = try ONNXImporter.readTensorFile(folder + "/batch/pixel_values.pb").tensor
        let expected = try ONNXImporter.readTensorFile(folder + "/expected/dropout-eval-logits.pb").tensor
        var m = model
        m.graph = inference
        let logits = try XCTUnwrap(Session(model: m).run(["pixel_values": x])["logits"])
        XCTAssertLessThanOrEqual(maxAbsDifference(logits, expected), 1e-4)
    }
}
