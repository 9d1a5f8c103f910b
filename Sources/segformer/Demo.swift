import ArgumentParser
import Foundation
import GraphIR
import Runtime
import Training
import Applications
import SegformerModels

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "The whole fine-tuning job on a generated scene-parsing set: data → SegFormer-b0 (HF's training form) → train → evaluate → overlays + ONNX.")

    // Option declarations look like Bench's and the other commands': the options differ, the shape is ArgumentParser's.
    @Option(help: "Output folder (data, model.onnx, config.json, overlays, logs).") var output: String = "segformer-demo"
    @Option(help: "Optimizer steps.") var steps: Int = 900
    @Option(help: "Training images to generate.") var trainImages: Int = 320
    @Option(help: "Validation images to generate.") var validationImages: Int = 48
    @Option(help: "Seed for data, initialisation and training.") var seed: UInt64 = 0
    @Option(help: "training (HF's train-mode graph, as `segformer init`) or inference (eval graph: BatchNorm folded, no dropout).") var form: String = "training"
    @OptionGroup var threadOptions: ThreadOptions
    @Flag(help: "Reuse a non-empty output folder.") var overwrite = false

    func run() throws {
        try reportingErrors {
            var o = DemoOptions(output: output)
            o.steps = steps
            o.trainImages = trainImages
            o.validationImages = validationImages
            o.seed = seed
            o.form = try graphForm(form)
            o.threads = threadOptions.threads
            o.overwrite = overwrite
            let outcome = try Demo.run(o) { print($0); fflush(stdout) }
            print("wrote \(outcome.modelPath), \(output)/config.json, \(output)/overlays/ in \(Int(outcome.seconds)) s")
            print(outcome.result.table(labels: outcome.labels))
        }
    }
}
