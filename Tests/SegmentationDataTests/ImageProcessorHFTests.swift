import XCTest
import GraphIR
@testable import SegmentationData
import TestSupport

/// SegformerImageProcessor against HuggingFace's own outputs on the test images (fixtures made with
/// `transformers` by scripts/fixtures/make_hf_processor_fixtures.py). Criterion of the reference set:
/// pixel values within one 8-bit level after normalisation (0.018), labels exactly equal.
final class ImageProcessorHFTests: XCTestCase {
    func testMatchesTransformers() throws {
        for (image, size, reduce) in [("rgb.png", 16, false), ("rgb.jpg", 48, true), ("rgb.png", 64, true)] {
            let ext = (image as NSString).pathExtension, base = (image as NSString).deletingPathExtension
            let stem = "hf-processor/\(base)_\(ext)_\(size)_\(reduce ? 1 : 0)"
            var processor = SegformerImageProcessor(height: size, width: size)
            processor.doReduceLabels = reduce
            let (pixels, labels) = try processor.preprocess(
                images: [try Image(contentsOf: commonFixtures.path("images/" + image))],
                segmentationMaps: [try Image(labelsAt: commonFixtures.path(stem + "_mask.png"))])
            let expectedPixels = try commonFixtures.tensor(stem + "_pixel_values.pb")
            let expectedLabels = try commonFixtures.tensor(stem + "_labels.pb")
            XCTAssertEqual(pixels.shape, expectedPixels.shape, stem)
            XCTAssertLessThanOrEqual(maxAbsDifference(pixels, expectedPixels), 0.018, stem)
            XCTAssertEqual(labels?.toArray(Int64.self), expectedLabels.toArray(Int64.self), stem)
        }
    }
}
