import Foundation
import GraphIR
import Runtime
import SegmentationData
import SegformerModels
import Training

/// Prepares `image` with `processor` and runs the model's first input; returns the first output.
func run(_ image: Image, session: Session, processor: SegformerImageProcessor) throws -> Tensor {
    let (pixels, _) = try processor.preprocess(images: [image])
    return try session.run([session.inputs[0].name: pixels])[session.outputs[0].name]!
}

/// The input size a model wants: its static spatial dims when the graph declares them, else `fallback`.
///
/// - Returns: height and width in pixels.
/// - Throws: `SegFormerError.invalid` when the first input is not N×3×H×W pixel values.
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

/// Class names must fit the model's class count (the channel dimension of its first output, when the
/// graph says it).
func requireLabels(_ labels: [Int: String], fit session: Session) throws {
    guard let dims = session.outputs.first?.type.shape, dims.count >= 2, let classes = dims[1].value else { return }
    try Classification.requireNames(labels, fit: classes, source: "the config's id2label")
}

/// Image classification (SegformerForImageClassification): decode → processor → run → softmax top-k.
public struct ImageClassifier {
    // The same three properties and init as SegmentationPredictor (different default size): two small
    // public types read better than a shared base type in the public API.
    /// The session running the classifier (first input N×3×H×W pixel values, first output [1, classes]).
    public let session: Session
    /// HF's `SegformerImageProcessor` at the model's input size.
    public let processor: SegformerImageProcessor
    /// Class id → name (HF `id2label`); classes missing here are reported without a name.
    public let labels: [Int: String]

    /// - Parameters:
    ///   - size: the input height and width in pixels when the model's are symbolic (else the model's own).
    ///   - labels: class id → name, e.g. `Classification.id2label(configPath:)` of the model's config.json.
    /// - Throws: `SegFormerError.invalid` when the model's first input is not N×3×H×W pixel values.
    public init(session: Session, size: Int = 224, labels: [Int: String] = [:]) throws {
        let (h, w) = try modelInputSize(session, fallback: size)
        try self.init(session: session, processor: SegformerImageProcessor(height: h, width: w), labels: labels)
    }

    /// With the model's own processor settings, e.g. a checkpoint folder's `preprocessor_config.json`.
    public init(session: Session, processor: SegformerImageProcessor, labels: [Int: String] = [:]) throws {
        self.session = session
        self.processor = processor
        try requireLabels(labels, fit: session)
        self.labels = labels
    }

    /// The `k` most probable classes of the JPEG or PNG at `path`, most probable first.
    ///
    /// - Throws: `SegFormerError.io` / `.invalid` when the image cannot be read or decoded, `.invalid`
    ///   when the model's output is not [1, classes], and whatever `Session.run` throws.
    public func classify(imageAt path: String, top k: Int) throws -> [(id: Int, label: String?, probability: Double)] {
        try classify(Image(contentsOf: path, fitting: (processor.width, processor.height)), top: k)
    }

    /// The `k` most probable classes of an 8-bit RGB image, most probable first (probabilities are the
    /// softmax of the logits, 0…1).
    ///
    /// - Throws: `SegFormerError.invalid` when the model's output is not [1, classes], and whatever
    ///   `Session.run` throws.
    public func classify(_ image: Image, top k: Int) throws -> [(id: Int, label: String?, probability: Double)] {
        let logits = try run(image, session: session, processor: processor)
        guard logits.rank == 2, logits.shape[0] == 1 else {
            throw SegFormerError.invalid("output '\(session.outputs[0].name)' is \(logits.shape); a classifier gives [1, classes]")
        }
        return try Classification.topK(logits: logits, k: k).map { ($0.id, labels[$0.id], $0.probability) }
    }
}

/// Semantic segmentation (SegformerForSemanticSegmentation): decode → processor → run → upsample
/// logits to the image size (bilinear, align_corners false) → argmax → mask and overlay PNGs.
///
/// An app goes from an image to a class mask without touching tensors:
/// `try SegmentationPredictor(session: Session(model: Model.load(contentsOf: path))).predict(imageAt: photo)`.
public struct SegmentationPredictor {
    // Properties and init as ImageClassifier's, on purpose; see there.
    /// The session running the model (first input N×3×H×W pixel values, first output N×classes×h×w logits).
    public let session: Session
    /// HF's `SegformerImageProcessor` at the model's input size.
    public let processor: SegformerImageProcessor
    /// Class id → name (HF `id2label`); classes missing here are reported without a name.
    public let labels: [Int: String]

    /// - Parameters:
    ///   - size: the input height and width in pixels when the model's are symbolic (else the model's own).
    ///   - labels: class id → name, e.g. `Classification.id2label(configPath:)` of the model's config.json.
    /// - Throws: `SegFormerError.invalid` when the model's first input is not N×3×H×W pixel values.
    public init(session: Session, size: Int = 512, labels: [Int: String] = [:]) throws {
        let (h, w) = try modelInputSize(session, fallback: size)
        try self.init(session: session, processor: SegformerImageProcessor(height: h, width: w), labels: labels)
    }

    /// With the model's own processor settings, e.g. a checkpoint folder's `preprocessor_config.json`.
    public init(session: Session, processor: SegformerImageProcessor, labels: [Int: String] = [:]) throws {
        self.session = session
        self.processor = processor
        try requireLabels(labels, fit: session)
        self.labels = labels
    }

    /// A class mask at the size of the picture it was predicted from.
    public struct Prediction {
        /// The picture, as decoded (8-bit, row-major HWC).
        public var image: Image
        /// Class id per pixel of the original image, row-major (`image.height * image.width` values).
        public var mask: [Int]
        /// Pixel count per class id.
        public var classHistogram: [Int: Int]
        /// Class id → name, from the predictor.
        public var labels: [Int: String]

        /// The classes present, largest first (ties by class id): id, name when known, and the
        /// fraction of the image's pixels (0…1) predicted as that class.
        public var classShares: [(id: Int, label: String?, share: Double)] {
            let total = Double(max(1, mask.count))
            return classHistogram.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
                .map { ($0.key, labels[$0.key], Double($0.value) / total) }
        }

        /// Writes the mask as an 8-bit grey PNG of the image's size, each pixel its class id.
        /// - Throws: `SegFormerError.unsupported` when a class id exceeds 255, `.io` when writing fails.
        public func writeMaskPNG(to path: String) throws {
            try Segmentation.writeMaskPNG(mask, width: image.width, height: image.height, to: path)
        }

        /// Writes the image with the mask blended over it in the ADE20K palette, as an RGB PNG.
        /// - Throws: `SegFormerError.io` when writing fails.
        public func writeOverlayPNG(to path: String) throws {
            try Segmentation.writeOverlayPNG(image: image, mask: mask, to: path)
        }
    }

    /// Segments the JPEG or PNG at `path`.
    ///
    /// - Throws: `SegFormerError.io` / `.invalid` when the image cannot be read or decoded, `.invalid`
    ///   when the model's output is not [1, classes, h, w], and whatever `Session.run` throws.
    public func predict(imageAt path: String) throws -> Prediction {
        try predict(image(at: path))
    }

    /// The picture at `path` as `predict(imageAt:)` reads it: a JPEG far larger than the model's
    /// input is decoded at reduced scale (see `Image.init(contentsOf:mode:fitting:)`).
    public func image(at path: String) throws -> Image {
        try Image(contentsOf: path, fitting: (processor.width, processor.height))
    }

    /// Segments an 8-bit RGB image (any size: it is resized for the model and the mask is upsampled
    /// back to `image.width` × `image.height`).
    ///
    /// - Throws: `SegFormerError.invalid` when the model's output is not [1, classes, h, w], and whatever
    ///   `Session.run` throws.
    public func predict(_ image: Image) throws -> Prediction {
        let logits = try run(image, session: session, processor: processor)
        guard logits.rank == 4, logits.shape[0] == 1 else {
            throw SegFormerError.invalid("output '\(session.outputs[0].name)' is \(logits.shape); a segmentation model gives [1, classes, h, w]")
        }
        let mask = try Segmentation.argmaxMask(logits: logits, height: image.height, width: image.width)
        var histogram: [Int: Int] = [:]
        for c in mask { histogram[c, default: 0] += 1 }
        return Prediction(image: image, mask: mask, classHistogram: histogram, labels: labels)
    }

    /// Writes `NAME.mask.png` and `NAME.overlay.png` into `folder` (created if missing); returns their paths.
    ///
    /// - Throws: `SegFormerError.io` when a file exists and `overwrite` is false, or writing fails.
    public func write(_ p: Prediction, name: String, to folder: String, overwrite: Bool) throws -> (mask: String, overlay: String) {
        let maskPath = (folder as NSString).appendingPathComponent("\(name).mask.png")
        let overlayPath = (folder as NSString).appendingPathComponent("\(name).overlay.png")
        for path in [maskPath, overlayPath] { try OutputGuard.requireWritable(path, overwrite: overwrite) }
        try write(p, to: PredictionJob.Item(image: "", mask: maskPath, overlay: overlayPath))
        return (maskPath, overlayPath)
    }

    /// Writes the mask and overlay of one item of a `PredictionJob` (whose outputs were checked up front).
    public func write(_ p: Prediction, to item: PredictionJob.Item) throws {
        let folder = (item.mask as NSString).deletingLastPathComponent
        if !folder.isEmpty { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        try p.writeMaskPNG(to: item.mask)
        try p.writeOverlayPNG(to: item.overlay)
    }
}

// MARK: - From a model path

/// What a pipeline needs for the model at `path`: an `.onnx` file (input size: the model's, else `size`;
/// class names `labels`; a training-form graph runs in its inference form, see `ModelFile.loadForInference`),
/// or a HuggingFace checkpoint folder, which brings its own processor settings
/// (preprocessor_config.json) and class names (config.json id2label; `labels`, when not empty, win).
func pipelineParts(modelAt path: String, size: Int, labels: [Int: String], options: SessionOptions) throws
    -> (session: Session, processor: SegformerImageProcessor, labels: [Int: String]) {
    let companions = try ModelFile.companions(path)
    let session = try Session(model: ModelFile.loadForInference(path), options: options)
    if let companions { return (session, companions.processor, labels.isEmpty ? companions.id2label : labels) }
    let (h, w) = try modelInputSize(session, fallback: size)
    return (session, SegformerImageProcessor(height: h, width: w), labels)
}

extension ImageClassifier {
    /// A classifier for the model at `path`: an `.onnx` file or a HuggingFace checkpoint folder (see
    /// `pipelineParts(modelAt:size:labels:options:)` for where size and labels come from).
    public init(modelAt path: String, size: Int = 224, labels: [Int: String] = [:], options: SessionOptions = SessionOptions()) throws {
        let parts = try pipelineParts(modelAt: path, size: size, labels: labels, options: options)
        try self.init(session: parts.session, processor: parts.processor, labels: parts.labels)
    }
}

extension SegmentationPredictor {
    /// A predictor for the model at `path` (as `ImageClassifier.init(modelAt:size:labels:options:)`).
    public init(modelAt path: String, size: Int = 512, labels: [Int: String] = [:], options: SessionOptions = SessionOptions()) throws {
        let parts = try pipelineParts(modelAt: path, size: size, labels: labels, options: options)
        try self.init(session: parts.session, processor: parts.processor, labels: parts.labels)
    }
}
