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

    /// Runs every sample of `dataset` (bad samples follow the dataset's skip policy).
    public func evaluate(session: Session, dataset: SegmentationDataset,
                         progress: ((Int, Int) -> Void)? = nil) throws -> MeanIoUResult {
        var acc = MeanIoUAccumulator(numLabels: numLabels, ignoreIndex: ignoreIndex, reduceLabels: reduceLabels)
        let input = session.inputs[0].name, output = session.outputs[0].name
        for i in 0..<dataset.count {
            guard let (image, label) = try dataset.loadOrSkip(i) else { continue }
            let (pixels, _) = try processor.preprocess(images: [image])
            let logits = try session.run([input: pixels])[output]!
            guard logits.rank == 4, logits.shape[1] == numLabels else {
                throw SegFormerError.invalid("evaluation: model output \(logits.shape) does not have \(numLabels) classes")
            }
            let mask = try Segmentation.argmaxMask(logits: logits, height: label.height, width: label.width)
            try acc.add(prediction: mask, reference: label.pixels)
            (progress ?? self.progress)?(i + 1, dataset.count)
        }
        return acc.result
    }
}
