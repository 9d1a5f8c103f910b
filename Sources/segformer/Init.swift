import ArgumentParser
import Foundation
import GraphIR
import Runtime
import SegmentationData
import SegformerModels

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build a fresh SegFormer (b0…b5) as ONNX with HuggingFace's initialisation; optionally fill the encoder from an mit-bN export.")

    @Option(help: "b0, b1, b2, b3, b4 or b5.") var variant: String = "b0"
    @Option(help: "Number of classes of the new decode head.") var numLabels: Int?
    @Option(help: "HF config.json or labels file whose id2label names the classes.") var labels: String?
    @Option(help: "ONNX export or HuggingFace checkpoint folder of SegformerForImageClassification (e.g. nvidia/mit-b0) whose encoder weights to use.") var encoder: String?
    @Option(help: "Seed of the initialisation.") var seed: UInt64 = 0
    @Option(help: "Output .onnx path.") var out: String
    @Flag(help: "Replace the output file if it exists.") var overwrite = false

    func run() throws {
        try reportingErrors {
            try OutputGuard.requireWritable([out], overwrite: overwrite, inputs: [labels, encoder].compactMap { $0 })
            let id2label = try labels.map { try SegmentationDataset.loadLabels(path: $0) } ?? [:]
            let count = numLabels ?? (id2label.isEmpty ? 150 : (id2label.keys.max() ?? 0) + 1)
            try Classification.requireNames(id2label, fit: count, source: "labels file \(labels ?? "")")
            let config = try SegformerConfig.variant(variant, numLabels: count, id2label: id2label)
            var model = try SegformerBuilder.build(config: config, seed: seed)
            if let encoder {
                let filled = try SegformerBuilder.loadEncoder(from: try ModelFile.load(encoder), into: &model)
                print("encoder: \(filled) tensors from \(encoder)")
            }
            try ONNXExporter.write(model, to: out)
            print("wrote \(out): SegFormer-\(variant), \(count) classes, \(model.graph.parameterCount) parameters")
        }
    }
}
