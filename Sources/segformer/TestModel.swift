import ArgumentParser
import Foundation
import GraphIR
import Runtime

struct TestModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test-model",
        abstract: "Check a model folder (model + test_data_set_N/input_K.pb, output_K.pb) against its expected outputs.")

    @Argument(help: "Folder holding one .onnx and test_data_set_N/ folders.") var folder: String
    @Option(help: "Which .onnx to use when the folder has several.") var model: String?
    @Option(help: "Absolute tolerance.") var atol: Double = 1e-5
    @Option(help: "Relative tolerance.") var rtol: Double = 1e-3
    @OptionGroup var sessionFlags: SessionFlags

    func run() throws {
        try reportingErrors {
            let tester = try ModelTester(folder: folder, modelFile: model)
            let m = try ONNXImporter.load(contentsOf: tester.modelPath)
            let session = try Session(model: m, options: sessionFlags.sessionOptions)
            let results = try tester.run(session: session, tolerance: .init(absolute: atol, relative: rtol)) { r in
                let status = r.passed ? "ok  " : "FAIL"
                var line = "\(status) \(r.dataSet) \(r.name) \(r.shape) max abs diff \(String(format: "%.3g", r.maxAbsDifference))"
                if r.mismatches > 0 { line += ", \(r.mismatches) elements out of tolerance" }
                if let p = r.problem { line += ", \(p)" }
                print(line)
            }
            let failed = results.filter { !$0.passed }.count
            print("\(results.count - failed) passed, \(failed) failed")
            if failed > 0 { throw ExitCode(1) }
        }
    }
}
