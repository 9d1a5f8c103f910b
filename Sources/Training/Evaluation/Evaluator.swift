import Foundation
import GraphIR
import Runtime
import SegmentationData

/// Validation as HuggingFace's semantic-segmentation guide computes it: each image goes through the
/// image processor, the logits are upsampled bilinearly to the *original* label size, argmax gives the
/// prediction, and `evaluate`'s mean_iou accumulates (as per-class counts, so memory stays flat).
/// `mode` selects the paper's (MMSegmentation's) whole-image or sliding-window inference instead.
public struct SegmentationEvaluator {
    public var processor: SegformerImageProcessor
    public var numLabels: Int
    public var ignoreIndex: Int
    /// Apply reduce_labels to the raw masks (ADE20K: 0 = other → ignored, k → k − 1).
    public var reduceLabels: Bool
    /// How an image becomes class scores (`EvaluationMode`): HF's processor size by default. The other
    /// modes use the processor's resampling filter and normalisation at their own sizes.
    public var mode: EvaluationMode = .resize
    /// Told (images done, images in total) after each image when `evaluate` is given no progress of
    /// its own — how the trainer's validation passes report progress.
    public var progress: (@Sendable (Int, Int) -> Void)?

    public init(processor: SegformerImageProcessor = SegformerImageProcessor(), numLabels: Int,
                ignoreIndex: Int = 255, reduceLabels: Bool) {
        var p = processor
        p.doReduceLabels = false
        self.processor = p
        self.numLabels = numLabels
        self.ignoreIndex = ignoreIndex
        self.reduceLabels = reduceLabels
    }

    /// Runs every sample of `dataset` (bad samples follow the dataset's skip policy). In a data-parallel
    /// job (`group`) each process scores every size-th sample and the per-class areas are summed over the
    /// processes, so every process gets the single-process result (the sums are integers: exactly).
    public func evaluate(session: Session, dataset: SegmentationDataset, group: (any ProcessGroup)? = nil,
                         progress: ((Int, Int) -> Void)? = nil) throws -> MeanIoUResult {
        var acc = MeanIoUAccumulator(numLabels: numLabels, ignoreIndex: ignoreIndex, reduceLabels: reduceLabels)
        let rank = group?.rank ?? 0, size = group?.size ?? 1
        var evaluated = 0
        for i in stride(from: rank, to: dataset.count, by: size) {
            guard let (image, label) = try dataset.loadOrSkip(i) else { continue }
            evaluated += 1
            let mask = try Segmentation.argmaxMask(logits: scores(session: session, image: image),
                                                   height: label.height, width: label.width)
            try acc.add(prediction: mask, reference: label.pixels)
            (progress ?? self.progress)?(i + 1, dataset.count)
        }
        if let group {
            // The areas and the count of evaluated samples, summed over the processes (integers: exact).
            var areas = acc.intersection + acc.predictedArea + acc.labelArea + [Int64(evaluated)]
            try group.allReduce(&areas, .sum)
            let n = numLabels
            acc.intersection = Array(areas[0..<n])
            acc.predictedArea = Array(areas[n..<2 * n])
            acc.labelArea = Array(areas[2 * n..<3 * n])
            evaluated = Int(areas[3 * n])
        }
        // A mean over nothing is NaN: say why instead of printing `mIoU nan`.
        guard evaluated > 0 else {
            throw SegFormerError.invalid("evaluation: all \(dataset.count) samples are bad (skipped); nothing to evaluate")
        }
        guard acc.labelArea.contains(where: { $0 > 0 }) else {
            throw SegFormerError.invalid("evaluation: no labelled pixel in the \(evaluated) samples (every label is ignored or outside 0…\(numLabels - 1))")
        }
        return acc.result
    }
}
