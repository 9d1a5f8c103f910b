import Foundation
import XCTest
@testable import Training
import SegFormerTestSupport

final class MeanIoUTests: XCTestCase {
    /// The worked example in the documentation of `evaluate`'s mean_iou, with its published result.
    func testDocumentedExample() throws {
        let predictions = [[[1, 2], [3, 4], [5, 255]], [[2, 7], [9, 2], [3, 6]], [[2, 2, 3], [8, 2, 4], [3, 255, 2]]]
        let references = [[[0, 3], [5, 4], [6, 255]], [[1, 7], [9, 2], [3, 6]], [[1, 2, 2], [8, 2, 1], [3, 255, 1]]]
        var acc = MeanIoUAccumulator(numLabels: 10, ignoreIndex: 255)
        for (p, r) in zip(predictions, references) {
            try acc.add(prediction: p.flatMap { $0 }, reference: r.flatMap { $0 })
        }
        let r = acc.result
        XCTAssertEqual(r.meanIoU, 0.4775, accuracy: 1e-12)
        XCTAssertEqual(r.meanAccuracy, 0.5916666666666666, accuracy: 1e-12)
        XCTAssertEqual(r.overallAccuracy, 0.5263157894736842, accuracy: 1e-12)
        XCTAssertEqual(r.perCategoryIoU, [0, 0, 0.375, 0.4, 0.5, 0, 0.5, 1, 1, 1])
    }

    /// Every case of ../shared/reference/metrics/cases.json to 1e-9 (when ../shared is present).
    func testSharedCases() throws {
        guard let shared = Fixtures.shared else { throw XCTSkip("../shared not present") }
        let data = try Data(contentsOf: URL(fileURLWithPath: shared + "/reference/metrics/cases.json"))
        let cases = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        XCTAssertFalse(cases.isEmpty)
        for c in cases {
            let name = c["name"] as! String
            var acc = MeanIoUAccumulator(numLabels: c["num_labels"] as! Int, ignoreIndex: c["ignore_index"] as! Int,
                                         reduceLabels: c["reduce_labels"] as! Bool)
            let preds = c["predictions"] as! [[[Int]]], refs = c["references"] as! [[[Int]]]
            for (p, r) in zip(preds, refs) { try acc.add(prediction: p.flatMap { $0 }, reference: r.flatMap { $0 }) }
            let got = acc.result
            let e = c["expected"] as! [String: Any]
            XCTAssertEqual(got.meanIoU, e["mean_iou"] as! Double, accuracy: 1e-9, name)
            XCTAssertEqual(got.meanAccuracy, e["mean_accuracy"] as! Double, accuracy: 1e-9, name)
            XCTAssertEqual(got.overallAccuracy, e["overall_accuracy"] as! Double, accuracy: 1e-9, name)
            for (key, values) in [("per_category_iou", got.perCategoryIoU), ("per_category_accuracy", got.perCategoryAccuracy)] {
                let expected = e[key] as! [Any]
                XCTAssertEqual(expected.count, values.count, name)
                for (i, v) in expected.enumerated() {
                    if let d = v as? Double { XCTAssertEqual(values[i], d, accuracy: 1e-9, "\(name) \(key)[\(i)]") }
                    else { XCTAssertTrue(values[i].isNaN, "\(name) \(key)[\(i)] should be NaN") }
                }
            }
        }
    }

    func testReduceLabelsAndOutOfRangePredictions() throws {
        // reduce_labels: 0 → ignored, 1 → class 0, 3 → class 2. Prediction 7 (outside 0..<3) counts nowhere.
        var acc = MeanIoUAccumulator(numLabels: 3, reduceLabels: true)
        try acc.add(prediction: [0, 2, 7, 1], reference: [1, 3, 3, 0])
        let r = acc.result
        XCTAssertEqual(r.perCategoryIoU[0], 1)
        XCTAssertEqual(r.perCategoryIoU[2], 0.5)
        XCTAssertTrue(r.perCategoryIoU[1].isNaN)
        XCTAssertEqual(r.overallAccuracy, 2.0 / 3.0, accuracy: 1e-15)
    }
}
