import Foundation
import XCTest
@testable import Training
import TestSupport

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
        let data = try Data(contentsOf: URL(fileURLWithPath: try SharedFixtures.path("reference/metrics/cases.json")))
        let cases = try FixtureRecord.list(data, file: "reference/metrics/cases.json")
        XCTAssertFalse(cases.isEmpty)
        for c in cases {
            let name: String = try c.required("name")
            var acc = MeanIoUAccumulator(numLabels: try c.required("num_labels"), ignoreIndex: try c.required("ignore_index"),
                                         reduceLabels: try c.required("reduce_labels"))
            let preds: [[[Int]]] = try c.required("predictions"), refs: [[[Int]]] = try c.required("references")
            XCTAssertEqual(preds.count, refs.count, name)
            for (p, r) in zip(preds, refs) { try acc.add(prediction: p.flatMap { $0 }, reference: r.flatMap { $0 }) }
            let got = acc.result
            let e = try c.record("expected")
            XCTAssertEqual(got.meanIoU, try e.required("mean_iou", as: Double.self), accuracy: 1e-9, name)
            XCTAssertEqual(got.meanAccuracy, try e.required("mean_accuracy", as: Double.self), accuracy: 1e-9, name)
            XCTAssertEqual(got.overallAccuracy, try e.required("overall_accuracy", as: Double.self), accuracy: 1e-9, name)
            for (key, values) in [("per_category_iou", got.perCategoryIoU), ("per_category_accuracy", got.perCategoryAccuracy)] {
                let expected = try e.required(key, as: [Any].self)
                XCTAssertEqual(expected.count, values.count, name)
                for (i, v) in expected.enumerated() where i < values.count {
                    if v is NSNull || (v as? String) == "nan" { XCTAssertTrue(values[i].isNaN, "\(name) \(key)[\(i)] should be NaN") }
                    else if let d = v as? Double { XCTAssertEqual(values[i], d, accuracy: 1e-9, "\(name) \(key)[\(i)]") }
                    else { throw e.malformed("\(key)[\(i)] is \(v), not a number, null or \"nan\"") }
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
