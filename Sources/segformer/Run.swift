import ArgumentParser
import Foundation
import GraphIR
import Runtime
import SegmentationData

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model once on TensorProto (.pb) inputs and write each output as NAME.pb.")

    @Argument(help: "The .onnx model file.") var model: String
    @Option(name: .customLong("input"), help: "NAME=FILE.pb (repeat for each input).") var inputs: [String] = []
    @Option(help: "Folder for the output .pb files (created if missing).") var outputDir: String = "."
    @Option(help: "Intra-op threads (default: all cores).") var threads: Int?
    @Flag(help: "Replace output files that already exist.") var overwrite = false

    func run() throws {
        try reportingErrors {
            let m = try ONNXImporter.load(contentsOf: model)
            let session = try InferenceSession(model: m, options: SessionOptions(threads: threads))
            var feeds: [String: Tensor] = [:]
            for spec in inputs {
                guard let eq = spec.firstIndex(of: "=") else {
                    throw SegFormerError.invalid("--input '\(spec)': expected NAME=FILE.pb")
                }
                let name = String(spec[..<eq]), file = String(spec[spec.index(after: eq)...])
                feeds[name] = try ONNXImporter.readTensorFile(file).tensor
            }
            // A single unnamed-by-user input may be given as FILE.pb alone.
            let outputs = try session.run(feeds)
            try FileManager.default.createDirectory(atPath: outputDir, withIntermediateDirectories: true)
            for info in session.outputs {
                let t = outputs[info.name]!
                let path = (outputDir as NSString).appendingPathComponent(safeFileName(info.name) + ".pb")
                try OutputGuard.requireWritable(path, overwrite: overwrite)
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
