import Foundation

/// Mean IoU in the semantics of HuggingFace `evaluate`'s `mean_iou` (from MMSegmentation):
/// intersection, union, predicted and labelled areas are summed over all images, then per-category
/// IoU and accuracy, their NaN-ignoring means, and overall accuracy.
///
/// Pixels labelled `ignoreIndex` are dropped; with `reduceLabels`, label 0 becomes 255 and k becomes
/// k − 1 first. Predictions outside 0..<numLabels on kept pixels count in no category. Only per-class
/// counts are kept, so memory does not grow with the dataset (the known pain of `evaluate`).
public struct MeanIoUAccumulator: Sendable {
    public let numLabels: Int
    public let ignoreIndex: Int
    public let reduceLabels: Bool
    public internal(set) var intersection: [Int64]
    public internal(set) var predictedArea: [Int64]
    public internal(set) var labelArea: [Int64]

    public init(numLabels: Int, ignoreIndex: Int = 255, reduceLabels: Bool = false) {
        self.numLabels = numLabels
        self.ignoreIndex = ignoreIndex
        self.reduceLabels = reduceLabels
        intersection = Array(repeating: 0, count: numLabels)
        predictedArea = Array(repeating: 0, count: numLabels)
        labelArea = Array(repeating: 0, count: numLabels)
    }

    /// Adds one image: predicted class per pixel and the reference label per pixel (same order).
    public mutating func add<P: BinaryInteger, L: BinaryInteger>(prediction: some Collection<P>, reference: some Collection<L>) throws {
        guard prediction.count == reference.count else {
            throw SegFormerMetricError.sizeMismatch(prediction.count, reference.count)
        }
        let n = numLabels
        for (p, l) in zip(prediction, reference) {
            var label = Int(l)
            if reduceLabels { label = label == 0 ? 255 : label - 1; if label == 254 { label = 255 } }
            if label == ignoreIndex { continue }
            let pred = Int(p)
            let predInside = pred >= 0 && pred < n
            if predInside {
                predictedArea[pred] += 1
                if pred == label { intersection[pred] += 1 }
            }
            if label >= 0 && label < n { labelArea[label] += 1 }
        }
    }

    public mutating func merge(_ other: MeanIoUAccumulator) {
        for i in 0..<numLabels {
            intersection[i] += other.intersection[i]
            predictedArea[i] += other.predictedArea[i]
            labelArea[i] += other.labelArea[i]
        }
    }

    public var result: MeanIoUResult {
        var iou = [Double](repeating: .nan, count: numLabels)
        var acc = [Double](repeating: .nan, count: numLabels)
        for i in 0..<numLabels {
            let inter = Double(intersection[i])
            let union = Double(predictedArea[i] + labelArea[i] - intersection[i])
            iou[i] = inter / union          // 0/0 = NaN: the category never appears
            acc[i] = inter / Double(labelArea[i])
        }
        func nanMean(_ v: [Double]) -> Double {
            let kept = v.filter { !$0.isNaN }
            return kept.isEmpty ? .nan : kept.reduce(0, +) / Double(kept.count)
        }
        let overall = Double(intersection.reduce(0, +)) / Double(labelArea.reduce(0, +))
        return MeanIoUResult(meanIoU: nanMean(iou), meanAccuracy: nanMean(acc), overallAccuracy: overall,
                             perCategoryIoU: iou, perCategoryAccuracy: acc)
    }
}

public struct MeanIoUResult: Sendable {
    public var meanIoU: Double
    public var meanAccuracy: Double
    public var overallAccuracy: Double
    /// NaN where a category appears neither in predictions nor labels.
    public var perCategoryIoU: [Double]
    public var perCategoryAccuracy: [Double]

    /// A table of per-category IoU and accuracy (categories that never appear are skipped), then the
    /// summary line `mIoU … mean accuracy … overall accuracy …`.
    public func table(labels: [Int: String] = [:]) -> String {
        var lines = ["class                          IoU     accuracy"]
        for i in perCategoryIoU.indices where !(perCategoryIoU[i].isNaN && perCategoryAccuracy[i].isNaN) {
            let name = (labels[i] ?? "class \(i)").padding(toLength: 28, withPad: " ", startingAt: 0)
            func cell(_ v: Double) -> String { v.isNaN ? "   n/a" : String(format: "%6.4f", v) }
            lines.append(name + "  " + cell(perCategoryIoU[i]) + "  " + cell(perCategoryAccuracy[i]))
        }
        lines.append(summary)
        return lines.joined(separator: "\n")
    }

    public var summary: String {
        String(format: "mIoU %.3f  mean accuracy %.3f  overall accuracy %.3f", meanIoU, meanAccuracy, overallAccuracy)
    }
}

public enum SegFormerMetricError: Error, CustomStringConvertible {
    case sizeMismatch(Int, Int)
    public var description: String {
        switch self {
        case .sizeMismatch(let p, let l): return "mean IoU: prediction has \(p) pixels but the reference \(l)"
        }
    }
}
