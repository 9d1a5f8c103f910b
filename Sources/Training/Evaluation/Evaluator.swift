import Foundation
import GraphIR
import Runtime
import SegmentationData

/// Validation as HuggingFace's semantic-segmentation guide computes it: each image goes through the
/// image processor, the logits are upsampled bilinearly to the *original* label size, argmax gives the
/// prediction, and `evaluate`'s mean_iou accumulates (as per-class counts, so memory stays flat).
public struct SegmentationEvaluator {
    public var processor: SegformerImageProcessor
    public var numLabels: Int
    public var ignoreIndex: Int
    /// Apply reduce_labels to the raw masks (ADE20K: 0 = other → ignored, k → k − 1).
    public var reduceLabels: Bool

    public init(processor: SegformerImageProcessor = SegformerImageProcessor(), numLabels: Int,
                ignoreIndex: Int = 255, reduceLabels: Bool) {
        var p = processor
        p.doReduceLabels = false
        self.processor = p
        self.numLabels = numLabels
        self.ignoreIndex = ignoreIndex
        self.reduceLabels = reduceLabels
    }

    /// Runs every sample of `dataset` (bad samples follow the dataset's skip policy).
    public func evaluate(session: Session, dataset: SegmentationDataset,
                         progress: ((Int, Int) -> Void)? = nil) throws -> MeanIoUResult {
        var acc = MeanIoUAccumulator(numLabels: numLabels, ignoreIndex: ignoreIndex, reduceLabels: reduceLabels)
        let input = session.inputs[0].name, output = session.outputs[0].name
        var evaluated = 0
        for i in 0..<dataset.count {
            guard let (image, label) = try dataset.loadOrSkip(i) else { continue }
            evaluated += 1
            let (pixels, _) = try processor.preprocess(images: [image])
            let logits = try session.run([input: pixels])[output]!
            guard logits.rank == 4, logits.shape[1] == numLabels else {
                throw SegFormerError.invalid("evaluation: model output \(logits.shape) does not have \(numLabels) classes")
            }
            let mask = try Segmentation.argmaxMask(logits: logits, height: label.height, width: label.width)
            try acc.add(prediction: mask, reference: label.pixels)
            progress?(i + 1, dataset.count)
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
