import Foundation
import GraphIR
import Runtime
import SegmentationData
import SegformerModels
import Training

/// Decodes the image at `path`, prepares it with `processor`, runs the model's first input and
/// returns the image with the first output.
func runImage(at path: String, session: Session, processor: SegformerImageProcessor) throws -> (Image, Tensor) {
    let image = try Image(contentsOf: path)
    let (pixels, _) = try processor.preprocess(images: [image])
    return (image, try session.run([session.inputs[0].name: pixels])[session.outputs[0].name]!)
}

/// The input size a model wants: its static spatial dims when the graph declares them, else `fallback`.
public func modelInputSize(_ session: Session, fallback: Int) throws -> (height: Int, width: Int) {
    guard let input = session.inputs.first else { throw SegFormerError.invalid("the model has no inputs") }
    guard let dims = input.type.shape, dims.count == 4 else {
        throw SegFormerError.invalid("input '\(input.name)' is \(input.type); expected pixel values of rank 4 (N×3×H×W)")
    }
    if case .known(let c) = dims[1], c != 3 {
        throw SegFormerError.invalid("input '\(input.name)' has \(c) channels; expected 3 (RGB)")
    }
    return (dims[2].value ?? fallback, dims[3].value ?? fallback)
}

/// Image classification (SegformerForImageClassification): decode → processor → run → softmax top-k.
public struct ImageClassifier {
    public let session: Session
    public let processor: SegformerImageProcessor
    public let labels: [Int: String]

    public init(session: Session, size: Int = 224, labels: [Int: String] = [:]) throws {
        self.session = session
        let (h, w) = try modelInputSize(session, fallback: size)
        processor = SegformerImageProcessor(height: h, width: w)
        self.labels = labels
    }

    public func classify(imageAt path: String, top k: Int) throws -> [(id: Int, label: String?, probability: Double)] {
        let (_, logits) = try runImage(at: path, session: session, processor: processor)
        guard logits.rank == 2, logits.shape[0] == 1 else {
            throw SegFormerError.invalid("output '\(session.outputs[0].name)' is \(logits.shape); a classifier gives [1, classes]")
        }
        return try Classification.topK(logits: logits, k: k).map { ($0.id, labels[$0.id], $0.probability) }
    }
}

/// Semantic segmentation (SegformerForSemanticSegmentation): decode → processor → run → upsample
/// logits to the image size (bilinear, align_corners false) → argmax → mask and overlay PNGs.
public struct SegmentationPredictor {
    public let session: Session
    public let processor: SegformerImageProcessor

    public init(session: Session, size: Int = 512) throws {
        self.session = session
        let (h, w) = try modelInputSize(session, fallback: size)
        processor = SegformerImageProcessor(height: h, width: w)
    }

    public struct Prediction {
        public var image: Image
        /// Class id per pixel of the original image, row-major.
        public var mask: [Int]
        /// Pixel count per class id.
        public var classHistogram: [Int: Int]
    }

    public func predict(imageAt path: String) throws -> Prediction {
        let (image, logits) = try runImage(at: path, session: session, processor: processor)
        guard logits.rank == 4, logits.shape[0] == 1 else {
            throw SegFormerError.invalid("output '\(session.outputs[0].name)' is \(logits.shape); a segmentation model gives [1, classes, h, w]")
        }
        let mask = try Segmentation.argmaxMask(logits: logits, height: image.height, width: image.width)
        var histogram: [Int: Int] = [:]
        for c in mask { histogram[c, default: 0] += 1 }
        return Prediction(image: image, mask: mask, classHistogram: histogram)
    }

    /// Writes `NAME.mask.png` and `NAME.overlay.png` into `folder`; returns their paths.
    public func write(_ p: Prediction, name: String, to folder: String, overwrite: Bool) throws -> (mask: String, overlay: String) {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let maskPath = (folder as NSString).appendingPathComponent("\(name).mask.png")
        let overlayPath = (folder as NSString).appendingPathComponent("\(name).overlay.png")
        for path in [maskPath, overlayPath] { try OutputGuard.requireWritable(path, overwrite: overwrite) }
        try Segmentation.writeMaskPNG(p.mask, width: p.image.width, height: p.image.height, to: maskPath)
        try Segmentation.writeOverlayPNG(image: p.image, mask: p.mask, to: overlayPath)
        return (maskPath, overlayPath)
    }
}
