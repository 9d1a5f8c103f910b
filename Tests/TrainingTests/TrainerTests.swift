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

    func makeTrainer(output: String, steps: Int, resume: Bool = false, form: SegformerBuilder.Form = .inference,
                     configure: (inout TrainerOptions) -> Void = { _ in }) throws -> Trainer {
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
        configure(&options)
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
        XCTAssertTrue(entries.allSatisfy { ($0.loss ?? .nan).isFinite && $0.lr > 0 && $0.skippedBatches == nil })
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

    /// A batch whose labels are all ignored has no loss (0/0): it is skipped with a warning, counted in
    /// the log, and no update is applied for it — training goes on.
    func testBatchesWithOnlyIgnoredLabelsAreSkipped() throws {
        let masks = root + "/data/annotations/training"
        for name in try FileManager.default.contentsOfDirectory(atPath: masks) {
            try Image(width: 32, height: 32, channels: 1, pixels: [UInt8](repeating: 0, count: 32 * 32))   // ADE 0 → ignored
                .writePNG(to: masks + "/" + name)
        }
        let out = root + "/ignored"
        let trainer = try makeTrainer(output: out, steps: 2)
        let before = trainer.training.parameters
        let last = try XCTUnwrap(try trainer.run())
        XCTAssertNil(last.loss)
        XCTAssertEqual(last.skippedBatches, 2)
        XCTAssertEqual(trainer.optimizer.step, 0, "a step without a labelled pixel applies no update")
        for (name, p) in before { XCTAssertTrue(p.bitwiseEqual(trainer.training.parameters[name]!), name) }
        let lines = try String(contentsOfFile: out + "/log.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(try lines.map { try JSONDecoder().decode(TrainingLogEntry.self, from: Data($0.utf8)).skippedBatches }, [1, 2])
    }

    /// Every sample bad (and skipped): an error at the first batch, not an endless search for one.
    func testADatasetWithoutOneGoodSampleIsAnErrorAtOnce() throws {
        let corrupt = root + "/corrupt.png"
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: corrupt))
        let samples = (0..<3).map { SegmentationSample(stem: "s\($0)", imagePath: corrupt, labelPath: corrupt) }
        let dataset = SegmentationDataset(samples: samples, numLabels: 7, skipBadSamples: true)
        let loader = try SegmentationDataLoader(dataset: dataset, batchSize: 1, augmentation: nil,
                                                processor: SegformerImageProcessor(height: 32, width: 32), seed: 1)
        XCTAssertThrowsError(try loader.next()) { e in XCTAssertTrue("\(e)".contains("3 of the 3 samples are bad"), "\(e)") }
    }

    /// `bench --train`'s memory report plans the training graph with its BatchNorm running statistics
    /// fed (they are inputs of the graph, not parameters): the plan exists and has a peak.
    func testTrainingGraphPlansWithItsRunningStatistics() throws {
        let training = try TrainingSession(model: try tinyModel(form: .training))
        XCTAssertFalse(training.bufferNames.isEmpty)
        let pixels = Tensor(zeros: .float, shape: [2, 3, 32, 32])
        let labels = Tensor([Int64](repeating: 1, count: 2 * 32 * 32), shape: [2, 32, 32])
        let plan = try training.executionPlan(pixelValues: pixels, labels: labels)
        XCTAssertGreaterThan(plan.activationPeak.bytes, 0)
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
