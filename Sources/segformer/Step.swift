import ArgumentParser
import Foundation
import GraphIR
import Runtime
import Training
import SegmentationData

struct Step: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a SegFormer ONNX graph for N steps on one batch (HF loss, autodiff, AdamW/SGD).",
        discussion: """
            Prints `loss <value>` before each step and once after the last (N+1 lines). Training-mode exports \
            train as PyTorch trains: BatchNorm on batch statistics, its running statistics moved by each step \
            (not by the last loss), dropout and drop-path masks drawn from --seed.
            """)

    @Argument(help: "The .onnx model (SegformerForSemanticSegmentation export).") var model: String
    @Option(help: "pixel_values tensor (.pb), float32 B×3×H×W.") var pixelValues: String
    @Option(help: "labels tensor (.pb), int64 B×H×W; 255 = ignore.") var labels: String
    @Option(help: "Optimizer steps on this batch.") var steps: Int = 1
    @Option(help: "adamw or sgd.") var optimizer: String = "adamw"
    @Option(help: "Learning rate.") var lr: Double = 6e-5
    @Option(help: "Weight decay (AdamW: decoupled; SGD: L2 added to the gradient).") var weightDecay: Double = 0.01
    @Option(help: "AdamW beta1.") var beta1: Double = 0.9
    @Option(help: "AdamW beta2.") var beta2: Double = 0.999
    @Option(help: "AdamW epsilon.") var eps: Double = 1e-8
    @Option(help: "SGD momentum.") var momentum: Double = 0.9
    @Option(help: "Label value the loss ignores.") var ignoreIndex: Int = 255
    @Option(name: .customLong("freeze"), help: "Freeze parameters whose name contains this (repeatable).") var freeze: [String] = []
    @Option(help: "Write the first step's gradients as a node-less ONNX model (initializers named by parameter).") var saveGradients: String?
    @Option(help: "Write the updated model as ONNX (parameters and BatchNorm running statistics after the N steps).") var saveModel: String?
    @Option(help: "Seed of dropout / drop-path masks in training-mode graphs.") var seed: UInt64 = 0
    @OptionGroup var threadOptions: ThreadOptions
    @Flag(help: "Replace output files that already exist.") var overwrite = false

    func run() throws {
        try reportingErrors {
            try OutputGuard.requireWritable([saveGradients, saveModel].compactMap { $0 }, overwrite: overwrite,
                                            inputs: [model, pixelValues, labels])
            let m = try ONNXImporter.load(contentsOf: model)
            let pixels = try ONNXImporter.readTensorFile(pixelValues).tensor
            let labelTensor = try ONNXImporter.readTensorFile(labels).tensor
            let training = try TrainingSession(model: m, options: TrainingOptions(
                freezePatterns: freeze, ignoreIndex: ignoreIndex, threads: threadOptions.threads, seed: seed))
            let opt: Optimizer
            switch optimizer.lowercased() {
            case "adamw": opt = AdamW(beta1: beta1, beta2: beta2, epsilon: eps, weightDecay: weightDecay)
            case "sgd": opt = SGD(momentum: momentum, weightDecay: weightDecay)
            default: throw SegFormerError.invalid("--optimizer must be adamw or sgd, not '\(optimizer)'")
            }
            let batch = SegmentationBatch(pixelValues: pixels, labels: labelTensor)
            func save(_ gradients: [String: Tensor]) throws {
                guard let path = saveGradients else { return }
                let bundle = TrainingSession.tensorBundle(training.parameterNames.map { ($0, gradients[$0]!) }, opset: m.opset)
                try ONNXExporter.write(bundle, to: path)
            }
            for index in 0..<steps {
                let taken = try training.step(index + 1, batch: batch, optimizer: opt, learningRate: lr)
                print("loss \(taken.losses[0])")
                fflush(stdout)
                if index == 0 { try save(taken.gradients) }
            }
            // The loss the trained parameters give (and, with --steps 0, the gradients to save).
            let (loss, gradients) = try training.lossAndGradients(pixelValues: pixels, labels: labelTensor)
            print("loss \(loss)")
            fflush(stdout)
            try TrainingSession.requireFinite(loss: loss, step: steps + 1)
            if steps == 0 { try save(gradients) }
            if let path = saveModel { try ONNXExporter.write(training.updatedModel(), to: path) }
        }
    }
}
