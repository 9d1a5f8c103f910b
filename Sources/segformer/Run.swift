import ArgumentParser
import Foundation
import GraphIR
import Runtime
import SegformerModels
import SegmentationData

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model once on TensorProto (.pb) inputs and write each output as NAME.pb.")

    @Argument(help: "The .onnx model file (a training-form graph runs in its inference form: BatchNorm on running statistics, no dropout), or a HuggingFace checkpoint folder.") var model: String
    @Option(name: .customLong("input"), help: "NAME=FILE.pb (repeat for each input; FILE.pb alone for a single-input model).") var inputs: [String] = []
    @Option(help: "Folder for the output .pb files (created if missing).") var outputDir: String = "."
    @OptionGroup var sessionFlags: SessionFlags
    @Flag(help: "Replace output files that already exist.") var overwrite = false

    func run() throws {
        try reportingErrors {
            let m = try ModelFile.loadForInference(model)
            let session = try Session(model: m, options: sessionFlags.sessionOptions)
            var feeds: [String: Tensor] = [:], feedFiles: [String] = []
            for spec in inputs {
                // NAME=FILE.pb, or FILE.pb alone when the model has a single input.
                let name: String, file: String
                if let eq = spec.firstIndex(of: "=") {
                    (name, file) = (String(spec[..<eq]), String(spec[spec.index(after: eq)...]))
                } else if session.inputs.count == 1 {
                    (name, file) = (session.inputs[0].name, spec)
                } else {
                    throw SegFormerError.invalid("--input '\(spec)': expected NAME=FILE.pb (the model has \(session.inputs.count) inputs)")
                }
                guard feeds[name] == nil else { throw SegFormerError.invalid("--input: '\(name)' is given twice") }
                feeds[name] = try ONNXImporter.readTensorFile(file).tensor
                feedFiles.append(file)
            }
            // Every output file is checked before the model runs (collisions such as `a/b` and `a_b` included).
            let paths = session.outputs.map { (outputDir as NSString).appendingPathComponent(safeFileName($0.name) + ".pb") }
            try OutputGuard.requireWritable(paths, names: session.outputs.map { "output '\($0.name)'" }, overwrite: overwrite,
                                            inputs: [model] + feedFiles)
            let outputs = try session.run(feeds)
            try FileManager.default.createDirectory(atPath: outputDir, withIntermediateDirectories: true)
            for (info, path) in zip(session.outputs, paths) {
                let t = outputs[info.name]!
                try ONNXExporter.writeTensorFile(t, name: info.name, to: path)
                print("\(info.name): \(t.dataType) \(t.shape) -> \(path)")
            }
        }
    }
}

/// A file name made from a value name (exporters use '/', ':' and '.' freely).
func safeFileName(_ name: String) -> String {
    let cleaned = name.map { c -> Character in (c.isLetter || c.isNumber || c == "_" || c == "-" || c == ".") ? c : "_" }
    let s = String(cleaned).trimmingCharacters(in: CharacterSet(charactersIn: "."))
    return s.isEmpty ? "output" : s
}
