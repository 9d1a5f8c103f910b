import Foundation
import GraphIR
import Runtime
import SegformerModels
import Training

/// The b0 that SegformerBuilder builds (with the export's weights loaded) vs the imported op17
/// export: forward at 1×3×512×512 and loss+gradients at batch 1, 2 threads. Needs the export in
/// ../shared/reference/segformer-b0-ade beside the checkout; without it the suite says so and is skipped.
func builtVersusExport() throws {
    let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()   // Sources/kernel-benchmarks/BuilderVersusExport.swift → package root
    let exportPath = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/reference/segformer-b0-ade/model.op17.onnx").path
    guard FileManager.default.fileExists(atPath: exportPath) else {
        print("skipped: \(exportPath) not found")
        return
    }
    let timer = Timer(.wall, threads: 2, repeats: 3)
    let export = try ONNXImporter.load(contentsOf: exportPath)
    var built = try SegformerBuilder.build(config: SegformerConfig.variant("b0", numLabels: 150))
    _ = try SegformerBuilder.loadParameters(from: export, into: &built, scopes: ["segformer.", "decode_head."])
    let pixels = try random([1, 3, 512, 512])
    for (label, model) in [("export", export), ("built", built)] {
        let session = try Session(model: model, options: SessionOptions(threads: 2))
        try timer.time("\(label) forward 1×3×512×512") { _ = try session.run(["pixel_values": pixels]) }
    }
    let labels = Tensor([Int64](repeating: 3, count: 512 * 512), shape: [1, 512, 512])
    for (label, model) in [("export", export), ("built", built)] {
        let session = try TrainingSession(model: model, options: TrainingOptions(threads: 2))
        try timer.time("\(label) loss+gradients batch 1") { _ = try session.lossAndGradients(pixelValues: pixels, labels: labels) }
    }
}
