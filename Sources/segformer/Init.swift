import ArgumentParser
import Foundation
import GraphIR
import Runtime
import SegmentationData
import SegformerModels

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build a fresh SegFormer (b0…b5) as ONNX with HuggingFace's initialisation; optionally fill the encoder from an mit-bN export.",
        discussion: """
            By default the graph is HuggingFace's train mode: decode-head BatchNorm on batch statistics (its running \
            statistics move as training steps), classifier dropout, drop-path over the blocks. `train` trains it and \
            writes model.onnx in inference form. --form inference builds the eval graph (BatchNorm folded, no dropout).
            """)

    @Option(help: "b0, b1, b2, b3, b4 or b5.") var variant: String = "b0"
    @Option(help: "Number of classes of the new decode head.") var numLabels: Int?
    @Option(help: "HF config.json or labels file whose id2label names the classes.") var labels: String?
    @Option(help: "ONNX export or HuggingFace checkpoint folder of SegformerForImageClassification (e.g. nvidia/mit-b0) whose encoder weights to use.") var encoder: String?
    @Option(help: "Seed of the initialisation.") var seed: UInt64 = 0
    @Option(help: "training (HF's train-mode graph) or inference (eval graph).") var form: String = "training"
    @Option(help: "Drop-path (stochastic depth) rate of the last block; earlier blocks get linearly less (HF: 0.1).") var dropPathRate: Double?
    @Option(help: "Dropout before the classifier (HF classifier_dropout_prob: 0.1).") var classifierDropout: Double?
    @Option(help: "Dropout after the attention and MLP projections (HF hidden_dropout_prob: 0).") var hiddenDropout: Double?
    @Option(help: "Dropout on the attention probabilities (HF attention_probs_dropout_prob: 0).") var attentionDropout: Double?
    @Option(help: "Output .onnx path.") var out: String
    @Flag(help: "Replace the output file if it exists.") var overwrite = false

    func run() throws {
        try reportingErrors {
            try OutputGuard.requireWritable([out], overwrite: overwrite, inputs: [labels, encoder].compactMap { $0 })
            let id2label = try labels.map { try SegmentationDataset.loadLabels(path: $0) } ?? [:]
            let count = numLabels ?? (id2label.isEmpty ? 150 : (id2label.keys.max() ?? 0) + 1)
            try Classification.requireNames(id2label, fit: count, source: "labels file \(labels ?? "")")
            var config = try SegformerConfig.variant(variant, numLabels: count, id2label: id2label)
            if let p = dropPathRate { config.dropPathRate = p }
            if let p = classifierDropout { config.classifierDropoutProb = p }
            if let p = hiddenDropout { config.hiddenDropoutProb = p }
            if let p = attentionDropout { config.attentionProbsDropoutProb = p }
            var model = try SegformerBuilder.build(config: config, seed: seed, form: graphForm(form))
            if let encoder {
                let filled = try SegformerBuilder.loadEncoder(from: try ModelFile.load(encoder), into: &model)
                print("encoder: \(filled) tensors from \(encoder)")
            }
            try ONNXExporter.write(model, to: out)
            print("wrote \(out): SegFormer-\(variant) (\(form) graph), \(count) classes, \(model.graph.parameterCount) parameters")
        }
    }
}

/// The graph form `--form` names (`init`, `demo`).
func graphForm(_ option: String) throws -> SegformerBuilder.Form {
    guard let form = SegformerBuilder.Form(rawValue: option) else {
        throw SegFormerError.invalid("--form must be training or inference, not '\(option)'")
    }
    return form
}
