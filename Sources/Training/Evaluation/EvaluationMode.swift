import Foundation
import GraphIR
import Runtime
import SegmentationData

/// How an image becomes the class scores whose argmax, at the label's size, is the prediction.
///
/// `resize` is HuggingFace's evaluation; `whole` and `slide` are the paper's (MMSegmentation's ADE20K test
/// pipeline, `Resize(scale=(2048, 512), keep_ratio=True)`, then `EncoderDecoder.whole_inference` or
/// `slide_inference`). In every mode the final step is the same: the scores are resized bilinearly
/// (align_corners false) to the label's size and the argmax taken.
public enum EvaluationMode: Equatable, Sendable {
    /// The image processor's size (HF): the logits are upsampled straight to the label's size.
    case resize
    /// The image resized keeping its aspect ratio so that its short side is `scale.short` unless that
    /// makes the long side exceed `scale.long` (mmcv's `rescale_size`: factor min(long / long side,
    /// short / short side), sides rounded half up); the logits are upsampled to that size, then to the label's.
    case whole(scale: PaperScale)
    /// The image resized as in `whole`, then `crop`×`crop` windows every `stride` pixels (the last
    /// window of a row or column flush with the edge; a side shorter than `crop` is one window of that
    /// side, not padded): each window's logits are upsampled to the window, summed where windows
    /// overlap and divided by the count, then resized to the label's size.
    case slide(scale: PaperScale, crop: Int, stride: Int)

    /// mmseg's `scale=(long, short)`: the ADE20K test pipeline's is (2048, 512).
    public struct PaperScale: Equatable, Sendable {
        public var long: Int
        public var short: Int
        public init(long: Int = 2048, short: Int = 512) {
            self.long = long
            self.short = short
        }

        /// The size mmseg resizes a `width`×`height` image to (mmcv `rescale_size`, keep_ratio).
        public func resized(width: Int, height: Int) -> (width: Int, height: Int) {
            let factor = min(Double(long) / Double(max(width, height)), Double(short) / Double(min(width, height)))
            return (max(1, Int(Double(width) * factor + 0.5)), max(1, Int(Double(height) * factor + 0.5)))
        }
    }
}

extension SegmentationEvaluator {
    /// The class scores of one image in `mode`: [1, classes, h, w] logits whose bilinear resize to the
    /// label's size gives the prediction (`Segmentation.argmaxMask`). `resize`: the model's logits;
    /// `whole`: the logits upsampled to the resized image; `slide`: the windows' averaged logits at the
    /// resized image's size.
    ///
    /// - Throws: `SegFormerError.invalid` when the model's output is not [1, `numLabels`, h, w] logits,
    ///   and whatever the processor or `Session.run` throw (e.g. a model whose input size is fixed).
    public func scores(session: Session, image: Image) throws -> Tensor {
        switch mode {
        case .resize:
            return try logits(session: session, pixels: processor.preprocess(images: [image]).pixelValues)
        case .whole(let scale):
            let pixels = try resizedPixels(image, scale: scale)
            return try Segmentation.upsampleLogits(logits(session: session, pixels: pixels),
                                                   height: pixels.shape[2], width: pixels.shape[3])
        case .slide(let scale, let crop, let stride):
            return try slidingWindowScores(session: session, pixels: resizedPixels(image, scale: scale), crop: crop, stride: stride)
        }
    }

    /// The processor's normalisation of `image` at the size `scale` gives it.
    func resizedPixels(_ image: Image, scale: EvaluationMode.PaperScale) throws -> Tensor {
        var p = processor
        (p.width, p.height) = scale.resized(width: image.width, height: image.height)
        p.doResize = true
        return try p.preprocess(images: [image]).pixelValues
    }

    /// The model's logits for one batch of pixel values, checked to be [1, numLabels, h, w].
    func logits(session: Session, pixels: Tensor) throws -> Tensor {
        let logits = try session.run([session.inputs[0].name: pixels])[session.outputs[0].name]!
        guard logits.rank == 4, logits.shape[0] == 1, logits.shape[1] == numLabels else {
            throw SegFormerError.invalid("evaluation: model output \(logits.shape) does not have \(numLabels) classes")
        }
        return logits
    }

    /// mmseg's `slide_inference` on pixel values [1, 3, H, W]: window origins every `stride` pixels,
    /// each window moved back to end at the edge (y1 = max(min(y1 + crop, H) − crop, 0)), its logits
    /// upsampled to the window and added in window order, then divided by how many windows cover each pixel.
    func slidingWindowScores(session: Session, pixels: Tensor, crop: Int, stride: Int) throws -> Tensor {
        let height = pixels.shape[2], width = pixels.shape[3], classes = numLabels
        try MemoryBudget.require(Tensor.checkedByteCount([classes, height, width], .float),
                                 for: "slide evaluation: summed logits of \(classes)×\(height)×\(width)")
        let sum = Tensor(zeros: .float, shape: [1, classes, height, width])
        var count = [Float](repeating: 0, count: height * width)
        let acc = sum.pointer(Float.self)
        func grids(_ size: Int) -> Int { max(size - crop + stride - 1, 0) / stride + 1 }
        for row in 0..<grids(height) {
            for column in 0..<grids(width) {
                let y2 = min(row * stride + crop, height), x2 = min(column * stride + crop, width)
                let y1 = max(y2 - crop, 0), x1 = max(x2 - crop, 0)
                let h = y2 - y1, w = x2 - x1
                let window = Tensor(uninitialized: .float, shape: [1, 3, h, w])
                let src = pixels.pointer(Float.self), dst = window.pointer(Float.self)
                for c in 0..<3 {
                    for y in 0..<h {
                        (dst + (c * h + y) * w).update(from: src + (c * height + y1 + y) * width + x1, count: w)
                    }
                }
                let up = try Segmentation.upsampleLogits(logits(session: session, pixels: window), height: h, width: w)
                let u = up.pointer(Float.self)
                for c in 0..<classes {
                    for y in 0..<h {
                        let a = acc + (c * height + y1 + y) * width + x1, b = u + (c * h + y) * w
                        for x in 0..<w { a[x] += b[x] }
                    }
                }
                for y in y1..<y2 { for x in x1..<x2 { count[y * width + x] += 1 } }
            }
        }
        let plane = height * width
        for c in 0..<classes { for i in 0..<plane { acc[c * plane + i] /= count[i] } }
        return sum
    }
}

extension EvaluationMode {
    /// The mode a command line names — `resize`, `whole` or `slide` — with mmseg's scale `LONG,SHORT`
    /// and the slide window's side and step (defaults: the paper's); a bad value is an error naming its option.
    public init(name: String, scale: String = "2048,512", crop: Int = 512, stride: Int = 341) throws {
        let sides = scale.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard sides.count == 2, let long = sides[0], let short = sides[1], short >= 1, long >= short else {
            throw SegFormerError.invalid("--scale must be LONG,SHORT with LONG ≥ SHORT ≥ 1 (mmseg's ADE20K: 2048,512), got '\(scale)'")
        }
        try OptionRange.atLeast(1, ["crop": crop, "stride": stride])
        // A step longer than the window would leave pixels no window covers.
        guard stride <= crop else { throw SegFormerError.invalid("--stride (\(stride)) must be at most --crop (\(crop))") }
        let paper = PaperScale(long: long, short: short)
        switch name {
        case "resize": self = .resize
        case "whole": self = .whole(scale: paper)
        case "slide": self = .slide(scale: paper, crop: crop, stride: stride)
        default: throw SegFormerError.invalid("--mode must be resize, whole or slide, not '\(name)'")
        }
    }

    /// The mode's command-line name.
    public var name: String {
        switch self {
        case .resize: return "resize"
        case .whole: return "whole"
        case .slide: return "slide"
        }
    }
}
