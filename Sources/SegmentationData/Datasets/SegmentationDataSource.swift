import Foundation
import GraphIR

/// Where a segmentation dataset lives and how its labels read — what `segformer train` and `evaluate`
/// take as `--data` or `--images`/`--masks`, `--labels`, `--reduce-labels` and `--skip-bad-samples`.
public struct SegmentationDataSource: Sendable {
    /// The folder layout of the data.
    public enum Layout: Sendable {
        /// ADEChallengeData2016: `ROOT/images/{training,validation}/*.jpg` and
        /// `ROOT/annotations/{training,validation}/*.png`, masks holding 0 ("other") and 1…classes;
        /// `ROOT/objectInfo150.csv`, when present, names the classes.
        case ade(root: String)
        /// A folder of images (jpg/jpeg/png) and a folder of 8-bit PNG masks (class ids), paired by file
        /// stem. It is a single split: training and evaluation read the same pairs.
        case folders(images: String, masks: String)
    }

    /// The folder layout of the data.
    public var layout: Layout
    /// HF config.json (`id2label`) or a labels file (one name per line, or objectInfo150.csv) naming the
    /// classes; nil keeps the layout's own names (if any).
    public var labelsPath: String?
    /// HF's `reduce_labels`: 0 ("other") → 255 (ignored), k → k−1. nil: on for the ADE layout, off otherwise.
    public var reduceLabels: Bool?
    /// Skip samples with a corrupt image or an out-of-range label instead of stopping at the first.
    public var skipBadSamples: Bool

    /// The data in `layout`; the other settings as `segformer train`'s defaults.
    public init(_ layout: Layout, labelsPath: String? = nil, reduceLabels: Bool? = nil, skipBadSamples: Bool = false) {
        self.layout = layout
        self.labelsPath = labelsPath
        self.reduceLabels = reduceLabels
        self.skipBadSamples = skipBadSamples
    }

    /// Whether the layout has a validation split of its own (only ADE does).
    public var hasSplits: Bool { if case .ade = layout { return true } else { return false } }

    /// Whether `reduce_labels` applies (the default: on for the ADE layout).
    public var reducesLabels: Bool { reduceLabels ?? hasSplits }

    /// The samples of `split` (ignored by the `folders` layout), checked against `numLabels` classes.
    ///
    /// - Throws: `SegFormerError.io` when a folder cannot be read, `.invalid` when images and masks do not
    ///   pair up (unless `skipBadSamples`), the labels file is malformed or names another number of classes.
    public func dataset(split: SegmentationDataset.Split, numLabels: Int) throws -> SegmentationDataset {
        let d: SegmentationDataset
        switch layout {
        case .ade(let root):
            d = try SegmentationDataset(adeRoot: root, split: split, numLabels: numLabels, skipBadSamples: skipBadSamples)
        case .folders(let images, let masks):
            d = try SegmentationDataset(imagesDirectory: images, masksDirectory: masks,
                                        numLabels: numLabels, skipBadSamples: skipBadSamples)
            if reduceLabels ?? false { d.maxLabel = numLabels }
        }
        if let labelsPath {
            try d.loadLabels(path: labelsPath)
            try Classification.requireNames(d.id2label, fit: numLabels, source: "labels file \(labelsPath)")
        }
        return d
    }
}
