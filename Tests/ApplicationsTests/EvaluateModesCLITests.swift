import Foundation
import XCTest
import TestSupport

/// `segformer evaluate --mode …` end to end on the fixture of EvaluationModeTests: the summary line is
/// the reference's metric (scripts/fixtures/make_eval_mode_fixtures.py), bad options are usage errors.
final class EvaluateModesCLITests: CLITestCase {
    func testModesPrintTheReferenceMetric() throws {
        let root = try commonFixtures.path("eval-modes")
        let expected = try FixtureRecord(XCTUnwrap(JSONSerialization.jsonObject(
            with: commonFixtures.data("eval-modes/expected.json")) as? [String: Any]), origin: "eval-modes/expected.json")
        let modes = try expected.record("modes")
        let data = [root + "/model.onnx", "--images", root + "/images", "--masks", root + "/masks", "--threads", "1"]
        for (name, extra) in [("resize", ["--size", "32"]), ("whole", ["--scale", "64,32"]),
                              ("slide", ["--scale", "64,32", "--crop", "24", "--stride", "16"])] {
            let o = try run(["evaluate"] + data + ["--mode", name] + extra)
            XCTAssertEqual(o.status, 0, "\(name): \(o.stderr)")
            let metric = try modes.record(name).record("metric")
            let line = String(format: "mIoU %.3f  mean accuracy %.3f  overall accuracy %.3f",
                              try metric.required("mean_iou", as: Double.self), try metric.required("mean_accuracy", as: Double.self),
                              try metric.required("overall_accuracy", as: Double.self))
            XCTAssertEqual(o.stdout.split(separator: "\n").last.map(String.init), line, name)
        }
    }

    func testBadModeOptionsAreUsageErrors() throws {
        let root = try commonFixtures.path("eval-modes")
        let data = [root + "/model.onnx", "--images", root + "/images", "--masks", root + "/masks"]
        for (extra, option) in [(["--mode", "tiles"], "--mode"), (["--mode", "slide", "--crop", "24", "--stride", "25"], "--stride"),
                                (["--mode", "whole", "--scale", "32,64"], "--scale")] {
            let o = try run(["evaluate"] + data + extra)
            XCTAssertEqual(o.status, 64, "\(extra): \(o.stderr)")
            XCTAssertTrue(o.stderr.contains(option), "\(extra): \(o.stderr)")
        }
        let train = try run(["train", root + "/model.onnx", "--images", root + "/images", "--masks", root + "/masks",
                             "--eval-mode", "tiles", "--output", scratch + "/run"])
        XCTAssertEqual(train.status, 64, train.stderr)
        XCTAssertTrue(train.stderr.contains("--eval-mode"), train.stderr)
    }
}
