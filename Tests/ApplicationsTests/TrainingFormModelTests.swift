import Foundation
import XCTest
import GraphIR
import Runtime
import SegmentationData
import Applications
import TestSupport

/// Models as `segformer init` and training-mode exports give them, used for predictions, and
/// checkpoint folders used as the starting model of `train`.
final class TrainingFormModelTests: CLITestCase {
    /// `run` on a training-mode export (drop-path 0.1, classifier dropout 0.1, BatchNorm on batch
    /// statistics) gives PyTorch's eval-mode logits (scripts/fixtures/make_trainmode_fixtures.py), the
    /// same bits every time, and says once that it ran the inference form.
    func testRunOnATrainingFormGraphGivesEvalLogits() throws {
        let model = try commonFixtures.path("tiny-segformer-train/model.dropout.op17.onnx")
        let input = try commonFixtures.path("tiny-segformer-train/batch/pixel_values.pb")
        var outputs: [Data] = []
        for i in 0..<2 {
            let o = try run(["run", model, "--input", input, "--output-dir", scratch + "/out\(i)", "--threads", "\(i + 1)"])
            XCTAssertEqual(o.status, 0, o.stderr)
            XCTAssertEqual(o.stderr.components(separatedBy: "\n").filter { $0.hasPrefix("note: ") && $0.contains("training-form graph") }.count,
                           1, o.stderr)
            outputs.append(try Data(contentsOf: URL(fileURLWithPath: scratch + "/out\(i)/logits.pb")))
        }
        XCTAssertEqual(outputs[0], outputs[1], "two runs (1 and 2 threads) differ")
        let ours = try ONNXImporter.readTensorFile(scratch + "/out0/logits.pb").tensor
        let pytorch = try commonFixtures.tensor("tiny-segformer-train/expected/dropout-eval-logits.pb")
        XCTAssertEqual(ours.shape, pytorch.shape)
        XCTAssertLessThan(maxAbsDifference(ours, pytorch), 1e-4)
    }

    /// `init`'s default training graph and `init --form inference` with the same seed hold the same
    /// weights: `run` on the training form gives the inference form's logits (BatchNorm on running
    /// statistics 0 / 1 against BatchNorm folded into the convolution: equal up to float rounding).
    func testInitTrainingFormRunsAsItsInferenceForm() throws {
        let input = scratch + "/x.pb"
        let values: [Float] = (0..<(3 * 64 * 64)).map { i in Float((i * 37) % 101) / 50 - 1 }
        try ONNXExporter.writeTensorFile(Tensor(values, shape: [1, 3, 64, 64]), name: "pixel_values", to: input)
        var logits: [Tensor] = []
        for form in ["training", "inference"] {
            let model = scratch + "/\(form).onnx"
            let made = try run(["init", "--variant", "b0", "--num-labels", "3", "--seed", "7", "--form", form, "--out", model])
            XCTAssertEqual(made.status, 0, made.stderr)
            let o = try run(["run", model, "--input", input, "--output-dir", scratch + "/\(form)"])
            XCTAssertEqual(o.status, 0, o.stderr)
            XCTAssertEqual(o.stderr.contains("training-form graph"), form == "training", o.stderr)
            logits.append(try ONNXImporter.readTensorFile(scratch + "/\(form)/logits.pb").tensor)
        }
        XCTAssertEqual(logits[0].shape, logits[1].shape)
        let largest = maxAbsDifference(logits[1], Tensor(zeros: .float, shape: logits[1].shape))
        XCTAssertGreaterThan(largest, 0)
        XCTAssertLessThan(maxAbsDifference(logits[0], logits[1]), 1e-5 * largest)
    }

    /// predict on the training form is predict on its inference form (whose logits the test above
    /// holds to PyTorch's); an eval graph says nothing.
    func testPredictUsesTheInferenceForm() throws {
        let path = try commonFixtures.path("tiny-segformer-train/model.dropout.op17.onnx")
        let loaded = try ONNXImporter.load(contentsOf: path)
        var eval = loaded
        eval.graph = try Passes.inferenceForm(loaded.graph, opset: loaded.opset)
        let fromPath = try SegmentationPredictor(modelAt: path, size: 40).predict(imageAt: image)
        let fromEval = try SegmentationPredictor(session: Session(model: eval), size: 40).predict(imageAt: image)
        XCTAssertEqual(fromPath.mask, fromEval.mask)
        let o = try run(["predict", path, image, "--out", scratch + "/masks", "--size", "40"])
        XCTAssertEqual(o.status, 0, o.stderr)
        XCTAssertTrue(o.stderr.contains("training-form graph"), o.stderr)
        let plain = try run(["predict", self.model, image, "--out", scratch + "/plain", "--size", "40"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertFalse(plain.stderr.contains("note:"), plain.stderr)
    }

    /// `train DIR` writes the folder's class names into config.json (not class_0…), so classify and
    /// predict name the classes of the fine-tuned model.
    func testTrainFromAFolderKeepsItsLabels() throws {
        let folder = try commonFixtures.path("hf-checkpoints/seg-v5")
        let images = scratch + "/images", masks = scratch + "/masks"
        for dir in [images, masks] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        for i in 0..<2 {
            try Image(width: 32, height: 32, channels: 3, pixels: (0..<32 * 32 * 3).map { UInt8(($0 * 5 + i * 11) % 256) })
                .writePNG(to: "\(images)/s\(i).png")
            try Image(width: 32, height: 32, channels: 1, pixels: (0..<32 * 32).map { UInt8(($0 / 64 + i) % 4) })
                .writePNG(to: "\(masks)/s\(i).png")
        }
        let o = try run(["train", folder, "--images", images, "--masks", masks, "--max-steps", "1", "--batch-size", "2",
                         "--crop", "32", "--size", "32", "--threads", "1", "--output", scratch + "/run"])
        XCTAssertEqual(o.status, 0, o.stderr)
        let config = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: scratch + "/run/config.json"))) as? [String: Any])
        XCTAssertEqual(config["id2label"] as? [String: String], ["0": "wall", "1": "floor", "2": "sky", "3": "tree"])
        XCTAssertEqual(config["label2id"] as? [String: Int], ["wall": 0, "floor": 1, "sky": 2, "tree": 3])
        let p = try SegmentationPredictor(modelAt: scratch + "/run/model.onnx", size: 32,
                                          labels: Classification.id2label(configPath: scratch + "/run/config.json"))
        XCTAssertEqual(p.labels[2], "sky")
    }
}
