import ArgumentParser
import Foundation
import GraphIR
import Runtime
import SegformerModels
import SegmentationData
import Applications

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Segment images with a SegformerForSemanticSegmentation export: NAME.mask.png (class ids, ADE20K palette) and NAME.overlay.png (with a legend).")

    @Argument(help: "The .onnx model file (a training-form graph runs in its inference form), or a HuggingFace checkpoint folder (its processor settings and labels are used).") var model: String
    @Argument(help: "JPEG or PNG images, or folders of them.") var images: [String]
    @Option(help: "Output folder (created if missing).") var out: String
    @Option(help: "HF config.json whose id2label names the classes in the summary.") var config: String?
    @Option(name: .customLong("size"), help: "Input size when the model's height/width are symbolic (default 512; an error on a fixed-size model).") var sizeOption: Int?
    @OptionGroup var threadOptions: ThreadOptions
    @Flag(help: "Replace output files that already exist.") var overwrite = false
    @Flag(help: "Skip images that cannot be read or decoded (listed at the end) instead of stopping.") var skipBadImages = false

    func run() throws {
        try reportingErrors {
            // Every output is checked before the model is even loaded.
            let job = try PredictionJob(inputs: images, outputFolder: out, overwrite: overwrite)
            let labels = try config.map { try Classification.id2label(configPath: $0) } ?? [:]
            let predictor = try SegmentationPredictor(modelAt: model, size: size, labels: labels,
                                                      options: SessionOptions(threads: threadOptions.threads))
            try InputSizeRequest.checkImageSize(sizeOption, for: predictor.session)
            var skipped: [(path: String, reason: String)] = []
            for item in job.items {
                let started = Benchmark.now()
                let picture: Image
                do {
                    picture = try predictor.image(at: item.image)
                } catch let e as SegFormerError where skipBadImages {
                    printErr("skipped \(item.image): \(e)")
                    skipped.append((item.image, "\(e)"))
                    continue
                }
                let p = try predictor.predict(picture)
                try predictor.write(p, to: item)
                let top = p.classShares.prefix(5)
                    .map { String(format: "%@ %.1f%%", ($0.label ?? "class \($0.id)") as NSString, 100 * $0.share) }
                print("\(item.image): \(p.image.width)x\(p.image.height), \(String(format: "%.0f", Benchmark.now() - started)) ms -> \(item.mask), \(item.overlay)")
                print("  " + top.joined(separator: ", "))
            }
            if skipBadImages {
                print("\(job.items.count - skipped.count) of \(job.items.count) images segmented, \(skipped.count) skipped")
                for s in skipped { print("  skipped \(s.path)") }
            }
            if skipped.count == job.items.count {
                throw SegFormerError.invalid("none of the \(job.items.count) images could be read")
            }
        }
    }

    var size: Int { sizeOption ?? 512 }
}
