import ArgumentParser
import Foundation
import GraphIR
import Runtime
import SegformerModels
import SegmentationData
import Applications

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify an image with a SegformerForImageClassification export (e.g. nvidia/mit-b0): top-k classes.")

    @Argument(help: "The .onnx model file (a training-form graph runs in its inference form), or a HuggingFace checkpoint folder (its processor settings and labels are used).") var model: String
    @Argument(help: "A JPEG or PNG image.") var image: String
    @Option(help: "How many classes to print.") var top: Int = 5
    @Option(help: "HF config.json whose id2label names the classes.") var config: String?
    @Option(name: .customLong("size"), help: "Input size when the model's height/width are symbolic (default 224; an error on a fixed-size model).") var sizeOption: Int?
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        try reportingErrors {
            let labels = try config.map { try Classification.id2label(configPath: $0) } ?? [:]
            let classifier = try ImageClassifier(modelAt: model, size: size, labels: labels,
                                                 options: SessionOptions(threads: threadOptions.threads))
            try InputSizeRequest.checkImageSize(sizeOption, for: classifier.session)
            for (rank, r) in try classifier.classify(imageAt: image, top: top).enumerated() {
                print(String(format: "%d. class %d  %.4f  ", rank + 1, r.id, r.probability) + (r.label ?? ""))
            }
        }
    }

    var size: Int { sizeOption ?? 224 }
}
