import ArgumentParser
import Foundation
import GraphIR
import Runtime
import SegformerModels
import SegmentationData
import Applications

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Segment images with a SegformerForSemanticSegmentation export: NAME.mask.png (class ids) and NAME.overlay.png.")

    @Argument(help: "The .onnx model file, or a HuggingFace checkpoint folder (its processor settings and labels are used).") var model: String
    @Argument(help: "JPEG or PNG images.") var images: [String]
    @Option(help: "Output folder (created if missing).") var out: String
    @Option(help: "HF config.json whose id2label names the classes in the summary.") var config: String?
    @Option(help: "Input size when the model's height/width are symbolic.") var size: Int = 512
    @OptionGroup var threadOptions: ThreadOptions
    @Flag(help: "Replace output files that already exist.") var overwrite = false

    func run() throws {
        try reportingErrors {
            guard !images.isEmpty else { throw SegFormerError.invalid("no images given") }
            let labels = try config.map { try Classification.id2label(configPath: $0) } ?? [:]
            let predictor = try SegmentationPredictor(modelAt: model, size: size, labels: labels,
                                                      options: SessionOptions(threads: threadOptions.threads))
            for path in images {
                let started = Benchmark.now()
                let p = try predictor.predict(imageAt: path)
                let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
                let files = try predictor.write(p, name: name, to: out, overwrite: overwrite)
                let top = p.classShares.prefix(5)
                    .map { String(format: "%@ %.1f%%", ($0.label ?? "class \($0.id)") as NSString, 100 * $0.share) }
                print("\(path): \(p.image.width)x\(p.image.height), \(String(format: "%.0f", Benchmark.now() - started)) ms -> \(files.mask), \(files.overlay)")
                print("  " + top.joined(separator: ", "))
            }
        }
    }
}
