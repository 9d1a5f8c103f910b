import ArgumentParser
import Foundation
import GraphIR
import Runtime
import SegmentationData
import SegformerModels

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a HuggingFace checkpoint folder as an inference ONNX model (opset 17, symbolic batch/height/width).")

    @Argument(help: "A checkpoint folder: config.json + model.safetensors or pytorch_model.bin.") var folder: String
    @Option(help: "Output .onnx path.") var out: String
    @Flag(help: "Replace the output file if it exists.") var overwrite = false

    func run() throws {
        try reportingErrors {
            try OutputGuard.requireWritable(out, overwrite: overwrite)
            guard HFCheckpointFolder.isFolder(folder) else {
                throw SegFormerError.invalid("\(folder) is not a folder (export reads a HuggingFace checkpoint folder)")
            }
            let model = try HFCheckpointFolder(path: folder).loadModel()
            try ONNXExporter.write(model, to: out)
            print("wrote \(out): \(model.metadata["architecture"] ?? "SegFormer"), \(model.graph.parameterCount) parameters")
        }
    }
}

struct ExportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-hf",
        abstract: "Write a model as a HuggingFace checkpoint folder (config.json, model.safetensors with the hub's names, preprocessor_config.json) that from_pretrained loads.")

    @Argument(help: "The model: .onnx (a SegformerForSemanticSegmentation export, `init` or `train` output) or a checkpoint folder.") var model: String
    @Option(help: "Output folder (created if missing).") var out: String
    @Option(help: "HF config.json giving what the weights do not show (strides, attention heads, id2label); default: config.json beside an .onnx model.") var config: String?
    @Option(help: "HF preprocessor_config.json to ship; default: the one beside the model, else HF's defaults (512×512).") var preprocessor: String?
    @Flag(help: "Replace output files that exist.") var overwrite = false

    func run() throws {
        try reportingErrors {
            let written = try HFCheckpointFolder.export(modelAt: model, to: out, configPath: config,
                                                        preprocessorPath: preprocessor, overwrite: overwrite)
            print("wrote \(out)/config.json, model.safetensors, preprocessor_config.json: \(written.numStages) stages, hidden sizes \(written.hiddenSizes), \(written.numLabels) labels")
        }
    }
}
