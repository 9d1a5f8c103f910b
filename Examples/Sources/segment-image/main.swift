// segment-image: segments one picture with a SegFormer ONNX export (SegformerForSemanticSegmentation).
//
//     swift run --package-path Examples segment-image MODEL.onnx IMAGE [MASK.png]
//
// Prints the classes present, largest first, with their share of the pixels (named by the config.json
// beside the model, when there is one), and writes the class mask, an 8-bit grey PNG of the picture's
// size whose pixels are class ids (default: mask.png).
import Foundation
import GraphIR
import Runtime
import SegmentationData
import Applications

let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.count == 2 || arguments.count == 3 else {
    print("usage: segment-image MODEL.onnx IMAGE [MASK.png]")
    exit(2)
}
let (modelPath, imagePath) = (arguments[0], arguments[1])
let maskPath = arguments.count == 3 ? arguments[2] : "mask.png"

/// HF's `id2label` from the config.json beside the model, when there is one.
func labels(besideModel path: String) throws -> [Int: String] {
    let config = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("config.json").path
    return FileManager.default.fileExists(atPath: config) ? try Classification.id2label(configPath: config) : [:]
}

do {
    let model = try Model.load(contentsOf: modelPath)
    let predictor = try SegmentationPredictor(session: Session(model: model), labels: labels(besideModel: modelPath))
    let prediction = try predictor.predict(imageAt: imagePath)
    for c in prediction.classShares {
        print(String(format: "%5.1f%%  ", 100 * c.share) + (c.label ?? "class \(c.id)"))
    }
    try prediction.writeMaskPNG(to: maskPath)
    print("wrote \(maskPath) (\(prediction.image.width)×\(prediction.image.height))")
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(1)
}
