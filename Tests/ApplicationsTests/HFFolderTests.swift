import Foundation
import XCTest
import GraphIR
import Runtime
import SegmentationData
import Applications
import TestSupport

/// A HuggingFace checkpoint folder used as the model of classify / predict: its own processor settings
/// (preprocessor_config.json) and class names (config.json id2label), checked against HF's own
/// processor + model (fixtures: scripts/fixtures/make_hf_checkpoint_fixtures.py).
final class HFFolderTests: XCTestCase {
    func testClassifierFolderNamesHFsTopClasses() throws {
        let expected = try FixtureRecord(XCTUnwrap(JSONSerialization.jsonObject(
            with: commonFixtures.data("hf-checkpoints/cls-expected.json")) as? [String: Any]), origin: "cls-expected.json")
        let top = try expected.objects("top") { r in
            (id: try r.required("id", as: Int.self), label: try r.required("label", as: String.self),
             probability: try r.required("probability", as: Double.self))
        }
        let classifier = try ImageClassifier(modelAt: commonFixtures.path("hf-checkpoints/cls"))
        XCTAssertEqual([classifier.processor.height, classifier.processor.width], [40, 48])
        XCTAssertEqual(classifier.processor.imageMean, [0.5, 0.5, 0.5])
        let ours = try classifier.classify(imageAt: commonFixtures.path(expected.required("image", as: String.self)), top: top.count)
        XCTAssertEqual(ours.map(\.id), top.map(\.id))
        XCTAssertEqual(ours.map(\.label), top.map(\.label))
        // PIL and our resampler agree within one 8-bit level, so probabilities agree closely, not exactly.
        for (o, t) in zip(ours, top) { XCTAssertEqual(o.probability, t.probability, accuracy: 1e-3) }
    }

    func testSegmentationFolderUsesItsProcessorAndLabels() throws {
        let predictor = try SegmentationPredictor(modelAt: commonFixtures.path("hf-checkpoints/seg-bin"))
        XCTAssertEqual([predictor.processor.height, predictor.processor.width], [40, 52])
        XCTAssertEqual(predictor.labels, [0: "wall", 1: "floor", 2: "sky", 3: "tree"])
        let p = try predictor.predict(imageAt: commonFixtures.path("images/rgb.png"))
        XCTAssertEqual(p.mask.count, p.image.width * p.image.height)
    }

    func testFolderWithoutProcessorConfigIsOneError() throws {
        let dir = NSTemporaryDirectory() + "hf-noproc-\(UUID().uuidString)"
        try FileManager.default.copyItem(atPath: commonFixtures.path("hf-checkpoints/seg-v5"), toPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.removeItem(atPath: dir + "/preprocessor_config.json")
        XCTAssertThrowsError(try SegmentationPredictor(modelAt: dir)) { error in
            XCTAssertTrue("\(error)".contains("preprocessor_config.json: missing"), "\(error)")
        }
    }
}
