// fine-tune: fine-tunes a SegFormer ONNX model (an HF export or `segformer init`) on a folder of data.
//
//     swift run -c release --package-path Examples fine-tune MODEL.onnx DATA OUTPUT [STEPS] [SIZE]
//
// DATA is either an ADEChallengeData2016 root (images/training, annotations/training, …) or a folder
// holding images/ (jpg/png) and masks/ (8-bit PNG class ids, paired with the images by file name).
// Trains STEPS optimizer steps (default 10) on SIZE×SIZE crops (default 512) with the defaults of
// `segformer train` (AdamW, poly schedule, 10× decode-head rate), then writes OUTPUT/model.onnx and
// OUTPUT/config.json.
import Foundation
import GraphIR
import SegmentationData
import Applications

let arguments = Array(CommandLine.arguments.dropFirst())
guard (3...5).contains(arguments.count), let steps = Int(arguments.count > 3 ? arguments[3] : "10"),
      let size = Int(arguments.count > 4 ? arguments[4] : "512") else {
    print("usage: fine-tune MODEL.onnx DATA OUTPUT [STEPS] [SIZE]")
    exit(2)
}
let (modelPath, dataPath, output) = (arguments[0], arguments[1], arguments[2])

do {
    let isADE = FileManager.default.fileExists(atPath: dataPath + "/images/training")
    let data = SegmentationDataSource(isADE ? .ade(root: dataPath)
                                            : .folders(images: dataPath + "/images", masks: dataPath + "/masks"))
    var options = FineTuningOptions(outputDirectory: output)
    options.trainer.maxSteps = steps
    options.cropSize = size
    options.imageSize = size

    let job = try FineTuning(model: Model.load(contentsOf: modelPath), data: data, options: options)
    let modelFile = try job.run()   // prints one line per step
    print("wrote \(modelFile) and \(output)/config.json")
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(1)
}
