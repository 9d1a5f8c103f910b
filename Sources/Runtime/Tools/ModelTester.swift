import Foundation
import GraphIR

/// Runs a model folder in the onnxruntime `onnx_test_runner` layout: one `*.onnx` and
/// `test_data_set_N/` folders holding `input_K.pb` / `output_K.pb`.
public struct ModelTester {
    public struct Tolerance: Sendable {
        public var absolute: Double
        public var relative: Double
        public init(absolute: Double = 1e-5, relative: Double = 1e-3) {
            self.absolute = absolute
            self.relative = relative
        }
    }

    /// One output of one data set.
    public struct OutputResult: Sendable {
        public var dataSet: String
        public var name: String
        public var shape: [Int]
        public var maxAbsDifference: Double
        public var mismatches: Int
        public var passed: Bool
        public var problem: String?
    }

    public let modelPath: String
    public let folder: String

    /// Finds the model in `folder` (`modelFile` picks one when there are several `.onnx`).
    public init(folder: String, modelFile: String? = nil) throws {
        self.folder = folder
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw SegFormerError.io("\(folder): not a folder")
        }
        if let modelFile {
            let path = modelFile.hasPrefix("/") || FileManager.default.fileExists(atPath: modelFile)
                ? modelFile : (folder as NSString).appendingPathComponent(modelFile)
            guard FileManager.default.fileExists(atPath: path) else { throw SegFormerError.io("\(path): no such model file") }
            modelPath = path
        } else {
            let models = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".onnx") }.sorted()
            guard !models.isEmpty else { throw SegFormerError.io("\(folder): no .onnx model in this folder") }
            guard models.count == 1 else {
                throw SegFormerError.invalid("\(folder): several models (\(models.joined(separator: ", "))); pick one with --model FILE")
            }
            modelPath = (folder as NSString).appendingPathComponent(models[0])
        }
    }

    /// The `test_data_set_N` folders, in numeric order.
    public func dataSets() throws -> [String] {
        let names = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("test_data_set_") }
        let sets = names.sorted { (Int($0.dropFirst(14)) ?? 0) < (Int($1.dropFirst(14)) ?? 0) }
        if sets.isEmpty { throw SegFormerError.io("\(folder): no test_data_set_N folders") }
        return sets
    }

    /// Numbered tensor files `prefix_K.pb` in a data set, in K order.
    static func numberedFiles(_ dir: String, prefix: String) throws -> [String] {
        let names = try FileManager.default.contentsOfDirectory(atPath: dir)
            .filter { $0.hasPrefix(prefix + "_") && $0.hasSuffix(".pb") }
        return names.sorted { (Int($0.dropFirst(prefix.count + 1).dropLast(3)) ?? 0) < (Int($1.dropFirst(prefix.count + 1).dropLast(3)) ?? 0) }
            .map { (dir as NSString).appendingPathComponent($0) }
    }

    /// Runs every data set; `report` is called once per output as results come in.
    public func run(session: Session, tolerance: Tolerance,
                    report: (OutputResult) -> Void = { _ in }) throws -> [OutputResult] {
        var results: [OutputResult] = []
        for set in try dataSets() {
            let dir = (folder as NSString).appendingPathComponent(set)
            let inputFiles = try ModelTester.numberedFiles(dir, prefix: "input")
            let outputFiles = try ModelTester.numberedFiles(dir, prefix: "output")
            let inputs = session.inputs
            guard inputFiles.count <= session.graph.inputs.count else {
                throw SegFormerError.invalid("\(dir): \(inputFiles.count) input files but the model has \(session.graph.inputs.count) inputs")
            }
            var feeds: [String: Tensor] = [:]
            for (k, file) in inputFiles.enumerated() {
                let (name, tensor) = try ONNXImporter.readTensorFile(file)
                // Inputs bind by the name stored in the file when it matches, else by position.
                let target = session.graph.inputs.contains(where: { $0.name == name }) && !name.isEmpty ? name
                    : (k < inputs.count ? inputs[k].name : session.graph.inputs[k].name)
                feeds[target] = tensor
            }
            if outputFiles.isEmpty { throw SegFormerError.invalid("\(dir): no output_K.pb files to compare against") }
            let outputs = try session.run(feeds)
            guard outputFiles.count <= session.outputs.count else {
                throw SegFormerError.invalid("\(dir): \(outputFiles.count) expected outputs but the model has \(session.outputs.count)")
            }
            for (k, file) in outputFiles.enumerated() {
                let (_, expected) = try ONNXImporter.readTensorFile(file)
                let name = session.outputs[k].name
                let got = outputs[name]!
                let r = ModelTester.compare(got, expected, tolerance: tolerance, dataSet: set, name: name)
                report(r)
                results.append(r)
            }
        }
        return results
    }

    /// |got − expected| ≤ atol + rtol·|expected| element-wise, NaN equal to NaN.
    public static func compare(_ got: Tensor, _ expected: Tensor, tolerance: Tolerance, dataSet: String, name: String) -> OutputResult {
        var r = OutputResult(dataSet: dataSet, name: name, shape: got.shape, maxAbsDifference: 0, mismatches: 0, passed: true, problem: nil)
        if got.shape != expected.shape {
            r.passed = false
            r.problem = "shape \(got.shape), expected \(expected.shape)"
            return r
        }
        if got.dataType != expected.dataType {
            r.passed = false
            r.problem = "element type \(got.dataType), expected \(expected.dataType)"
            return r
        }
        if got.dataType == .string {
            r.mismatches = zip(got.strings, expected.strings).filter { $0 != $1 }.count
            r.passed = r.mismatches == 0
            return r
        }
        guard let a = try? got.doubles(), let b = try? expected.doubles() else {
            r.passed = false
            r.problem = "cannot compare element type \(got.dataType)"
            return r
        }
        for i in 0..<a.count {
            let x = a[i], y = b[i]
            if x.isNaN || y.isNaN {
                if x.isNaN != y.isNaN { r.mismatches += 1; r.maxAbsDifference = .nan }
                continue
            }
            if x == y { continue }   // equal infinities included
            let d = abs(x - y)
            if !(d <= r.maxAbsDifference) && !r.maxAbsDifference.isNaN { r.maxAbsDifference = d }
            if !(d <= tolerance.absolute + tolerance.relative * abs(y)) { r.mismatches += 1 }
        }
        r.passed = r.mismatches == 0
        return r
    }
}
