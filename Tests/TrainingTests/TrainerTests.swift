import Foundation
import XCTest
import GraphIR
import Runtime
@testable import Training
import SegmentationData
import SegformerModels

/// The trainer end to end on a tiny SegFormer and a tiny generated dataset: the loss falls, the JSON
/// log has one object per step, the best model and checkpoint are written, and resuming from a
/// checkpoint reproduces an uninterrupted run bit for bit.
final class TrainerTests: XCTestCase {
    var root: String!

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "trainer-\(UUID().uuidString)"
        _ = try SyntheticScenes.generate(into: root + "/data", trainCount: 8, validationCount: 2, width: 32, height: 32,
                                         seed: 3, imageFormat: .png, progress: nil)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: root) }

    func tinyModel(form: SegformerBuilder.Form = .inference) throws -> Model {
        let config = SegformerConfig(hiddenSizes: [8, 16], depths: [1, 1], numAttentionHeads: [1, 2], srRatios: [2, 1],
                                     patchSizes: [7, 3], strides: [4, 2], mlpRatios: [2, 2], decoderHiddenSize: 16, numLabels: 7)
        return try SegformerBuilder.build(config: config, seed: 1, form: form)
    }

    func makeTrainer(output: String, steps: Int, resume: Bool = false, form: SegformerBuilder.Form = .inference) throws -> Trainer {
        func dataset(_ split: SegmentationDataset.Split) throws -> SegmentationDataset {
            let d = try SegmentationDataset(adeRoot: root + "/data", split: split, numLabels: 255)
            d.labelLookup = SyntheticScenes.trainingLookup
            d.maxLabel = 6
            return d
        }
        var processor = SegformerImageProcessor(height: 32, width: 32)
        processor.doReduceLabels = false
        let loader = try SegmentationDataLoader(dataset: try dataset(.training), batchSize: 2, dropLast: true,
                                                augmentation: SegmentationAugmentation(cropSize: 32, scale: (128, 32)),
                                                processor: processor, seed: 5, prefetch: true)
        var options = TrainerOptions(outputDirectory: output)
        options.maxSteps = steps
        options.learningRate = 2e-3
        options.evaluateEvery = 3
        options.checkpointEvery = 1
        options.logJSONPath = output + "/log.jsonl"
        options.resume = resume
        options.threads = 1
        options.seed = 11
        let trainer = try Trainer(model: try tinyModel(form: form), loader: loader, validation: try dataset(.validation),
                                  evaluator: SegmentationEvaluator(processor: processor, numLabels: 7, reduceLabels: false),
                                  options: options)
        trainer.onLog = { _, _ in }
        return trainer
    }

    func testTrainsLogsAndKeepsTheBestModel() throws {
        let out = root + "/run"
        let trainer = try makeTrainer(output: out, steps: 6)
        let last = try XCTUnwrap(try trainer.run())
        XCTAssertEqual(last.step, 6)
        let lines = try String(contentsOfFile: out + "/log.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 6)
        let entries = try lines.map { try JSONDecoder().decode(TrainingLogEntry.self, from: Data($0.utf8)) }
        XCTAssertEqual(entries.map(\.step), Array(1...6))
        XCTAssertNotNil(entries[2].mIoU)
        XCTAssertTrue(entries.allSatisfy { $0.loss.isFinite && $0.lr > 0 })
        for file in ["model.onnx", "last.onnx", "checkpoint/state.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + file), file)
        }
        XCTAssertNotNil(trainer.bestMIoU)
    }

    func testResumeReproducesAnUninterruptedRun() throws {
        let full = try makeTrainer(output: root + "/full", steps: 5)
        try full.run()
        // Interrupted after 3 steps (the checkpoint of step 3 is what a kill leaves), then resumed.
        let first = try makeTrainer(output: root + "/split", steps: 5)
        first.shouldStop = { step in step == 3 }
        XCTAssertThrowsError(try first.run())
        let resumed = try makeTrainer(output: root + "/split", steps: 5, resume: true)
        try resumed.run()
        for (name, p) in full.training.parameters {
            XCTAssertTrue(p.bitwiseEqual(resumed.training.parameters[name]!), "parameter \(name) differs after resume")
        }
    }

    /// HF's train-mode graph (BatchNorm on batch statistics, dropout, drop-path): resuming reproduces the
    /// uninterrupted run bit for bit (running statistics and the random stream are in the checkpoint),
    /// and the written model is the inference form.
    func testTrainingGraphResumesExactlyAndWritesInferenceForm() throws {
        let full = try makeTrainer(output: root + "/full", steps: 5, form: .training)
        try full.run()
        XCTAssertEqual(full.training.bufferNames.count, 2)
        let first = try makeTrainer(output: root + "/split", steps: 5, form: .training)
        first.shouldStop = { step in step == 3 }
        XCTAssertThrowsError(try first.run())
        let resumed = try makeTrainer(output: root + "/split", steps: 5, resume: true, form: .training)
        try resumed.run()
        let resumedState = resumed.training.modelState
        for (name, p) in full.training.modelState {
            XCTAssertTrue(p.bitwiseEqual(resumedState[name]!), "\(name) differs after resume")
        }
        for file in ["model.onnx", "last.onnx"] {
            let written = try ONNXImporter.load(contentsOf: root + "/full/" + file)
            let ops = written.graph.nodes.map(\.opType)
            XCTAssertFalse(ops.contains(OpType.dropout) || ops.contains(OpType.randomUniformLike), "\(file): \(Set(ops))")
            let bn = try XCTUnwrap(written.graph.nodes.first { $0.opType == OpType.batchNormalization })
            XCTAssertEqual(bn.outputs.count, 1, file)
            if file == "last.onnx" {
                XCTAssertTrue(written.graph.initializers[bn.inputs[3]]!.bitwiseEqual(full.training.modelState[bn.inputs[3]]!),
                              "running statistics written with the model")
            }
        }
    }
}
