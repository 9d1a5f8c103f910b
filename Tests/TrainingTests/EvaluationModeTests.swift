import Foundation
import XCTest
import GraphIR
import Runtime
import SegmentationData
import Training
import TestSupport

/// The three evaluation modes against a PyTorch + onnxruntime re-implementation of HF's evaluation and
/// MMSegmentation's whole / slide inference (scripts/fixtures/make_eval_mode_fixtures.py): the scores
/// before the final resize, image by image, and the metric over the three images.
final class EvaluationModeTests: XCTestCase {
    func testModesMatchTheReference() throws {
        let root = try commonFixtures.path("eval-modes")
        let expected = try FixtureRecord(XCTUnwrap(JSONSerialization.jsonObject(
            with: commonFixtures.data("eval-modes/expected.json")) as? [String: Any]), origin: "eval-modes/expected.json")
        let scale: [Int] = try expected.required("scale")
        let crop: Int = try expected.required("crop"), stride: Int = try expected.required("stride")
        let size: Int = try expected.required("size")
        let session = try Session(model: ONNXImporter.load(contentsOf: root + "/model.onnx"))
        let dataset = try SegmentationDataset(imagesDirectory: root + "/images", masksDirectory: root + "/masks", numLabels: 5)
        let modes = try expected.record("modes")
        for name in ["resize", "whole", "slide"] {
            let reference = try modes.record(name)
            var evaluator = SegmentationEvaluator(processor: SegformerImageProcessor(height: size, width: size),
                                                  numLabels: 5, reduceLabels: false)
            evaluator.mode = try EvaluationMode(name: name, scale: "\(scale[0]),\(scale[1])", crop: crop, stride: stride)
            let images = try reference.objects("images") { r in
                (stem: try r.required("stem", as: String.self), scores: try r.required("scores", as: String.self))
            }
            XCTAssertEqual(images.map(\.stem), dataset.samples.map(\.stem))
            for (i, entry) in images.enumerated() {
                let ours = try evaluator.scores(session: session, image: dataset.load(i).image)
                let theirs = try commonFixtures.tensor("eval-modes/" + entry.scores)
                XCTAssertEqual(ours.shape, theirs.shape, "\(name) \(entry.stem)")
                guard ours.shape == theirs.shape else { continue }
                // Scores reach ~80 (the sharpened classifier); float32 rounding of two implementations.
                XCTAssertLessThan(maxAbsDifference(ours, theirs), 1e-3, "\(name) \(entry.stem)")
            }
            // The smallest top-1/top-2 margin of the reference is far above the score error, so the
            // predictions, and with them the metric, must be the reference's exactly.
            let margin: Double = try reference.required("min_margin")
            XCTAssertGreaterThan(margin, 4e-3)
            let metric = try reference.record("metric")
            let result = try evaluator.evaluate(session: session, dataset: dataset)
            XCTAssertEqual(result.meanIoU, try metric.required("mean_iou"), accuracy: 1e-12, name)
            XCTAssertEqual(result.meanAccuracy, try metric.required("mean_accuracy"), accuracy: 1e-12, name)
            XCTAssertEqual(result.overallAccuracy, try metric.required("overall_accuracy"), accuracy: 1e-12, name)
        }
    }

    /// mmcv's `rescale_size` with the ADE20K scale (2048, 512), worked by hand from its formula:
    /// factor = min(2048 / long side, 512 / short side), sides int(side × factor + 0.5).
    func testPaperScaleIsMMCVsRescaleSize() {
        let ade = EvaluationMode.PaperScale()
        XCTAssertTrue(ade.resized(width: 500, height: 375) == (683, 512))     // 512/375: 682.67 → 683
        XCTAssertTrue(ade.resized(width: 375, height: 500) == (512, 683))
        XCTAssertTrue(ade.resized(width: 2000, height: 300) == (2048, 307))   // long side limits: 1.024
        XCTAssertTrue(ade.resized(width: 1024, height: 1024) == (512, 512))
        XCTAssertTrue(ade.resized(width: 256, height: 171) == (767, 512))     // 512/171 = 2.9942: 766.50 → 767
    }

    func testBadModeOptionsNameTheOption() {
        func message(_ name: String, _ scale: String = "2048,512", crop: Int = 512, stride: Int = 341) -> String {
            do { _ = try EvaluationMode(name: name, scale: scale, crop: crop, stride: stride); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(message("tiles").contains("--mode"))
        XCTAssertTrue(message("slide", stride: 600).contains("--stride"))
        XCTAssertTrue(message("slide", stride: 0).contains("--stride"))
        XCTAssertTrue(message("whole", crop: 0).contains("--crop"))
        XCTAssertTrue(message("whole", "512,2048").contains("--scale"))
        XCTAssertTrue(message("whole", "2048").contains("--scale"))
        XCTAssertEqual(message("slide"), "")
    }
}
