import Foundation

/// The discoverable way in for an app: `Model.load(contentsOf:)` and `model.write(to:)`. They are the
/// importer and the exporter under names a reader finds on the type itself; the work stays there.
extension Model {
    /// Loads an ONNX model file (e.g. a `SegformerForSemanticSegmentation` export). External data
    /// files are resolved relative to the model's folder.
    ///
    /// - Parameter path: the `.onnx` file.
    /// - Throws: `SegFormerError.io` when the file cannot be read, `.invalid` when it is not a well-formed
    ///   ONNX model (naming the tensor, node or value at fault), `.unsupported` for valid features this
    ///   runtime lacks.
    public static func load(contentsOf path: String) throws -> Model {
        try ONNXImporter.load(contentsOf: path)
    }

    /// Writes the model as an ONNX file, atomically (a crash never leaves half a file at `path`).
    ///
    /// - Parameter path: the `.onnx` file to create or replace.
    /// - Throws: `SegFormerError.io` when the file cannot be written, `.invalid` when the model exceeds
    ///   protobuf's 2 GB limit.
    public func write(to path: String) throws {
        try ONNXExporter.write(self, to: path)
    }
}
