import Foundation
import XCTest
import GraphIR
import Runtime
import SegmentationData
import Applications
import TestSupport

/// The API an app embedding the runtime uses (the one Examples/ and the README show): a picture in
/// memory segments as its file does, class shares are the mask's, and a fine-tuning job trains and
/// writes its model and config.
final class LibraryAPITests: XCTestCase {
    func modelPath() throws -> String { try commonFixtures.path("tiny-segformer/model.op17.onnx") }

    func testPredictFromMemoryMatchesTheFileAndSharesCountTheMask() throws {
        let labels = try Classification.id2label(configPath: try commonFixtures.path("tiny-segformer/config.json"))
        let predictor = try SegmentationPredictor(session: Session(model: Model.load(contentsOf: modelPath())),
                                                  size: 32, labels: labels)
        let imagePath = try commonFixtures.path("images/rgb.png")
        let fromFile = try predictor.predict(imageAt: imagePath)
        let fromMemory = try predictor.predict(Image(contentsOf: imagePath))
        XCTAssertEqual(fromFile.mask, fromMemory.mask)
        XCTAssertEqual(fromFile.mask.count, 37 * 23)

        let shares = fromFile.classShares
        XCTAssertFalse(shares.isEmpty)
        XCTAssertEqual(shares.map(\.share), shares.map(\.share).sorted(by: >))
        XCTAssertEqual(shares.map(\.share).reduce(0, +), 1, accuracy: 1e-12)
        for s in shares {
            let count = fromFile.mask.filter { $0 == s.id }.count
            XCTAssertEqual(s.share, Double(count) / Double(fromFile.mask.count))
            XCTAssertEqual(s.label, "class_\(s.id)")
        }
    }

    func testFineTuningTrainsAndWritesModelAndConfig() throws {
        let root = NSTemporaryDirectory() + "segformer-api-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        for folder in ["images", "masks"] {
            try FileManager.default.createDirectory(atPath: root + "/data/" + folder, withIntermediateDirectories: true)
        }
        // Two 37×23 pictures with striped masks of the model's 5 classes.
        for (name, picture) in [("a", "images/rgb.png"), ("b", "images/rgb.jpg")] {
            try FileManager.default.copyItem(atPath: try commonFixtures.path(picture), toPath: "\(root)/data/images/\(name).\(picture.suffix(3))")
            let mask = (0..<(37 * 23)).map { ($0 % 37) / 8 }
            try Segmentation.writeMaskPNG(mask, width: 37, height: 23, to: "\(root)/data/masks/\(name).png")
        }
        var options = FineTuningOptions(outputDirectory: root + "/run")
        options.trainer.maxSteps = 2
        options.trainer.learningRate = 1e-2
        options.cropSize = 32
        options.imageSize = 32
        let original = try Model.load(contentsOf: modelPath())
        let job = try FineTuning(model: original,
                                 data: SegmentationDataSource(.folders(images: root + "/data/images", masks: root + "/data/masks")),
                                 options: options)
        var steps: [Int] = []
        job.trainer.onLog = { entry, _ in steps.append(entry.step) }
        XCTAssertEqual(job.classCount, 5)
        XCTAssertEqual(job.trainingSet.count, 2)

        let written = try job.run()
        XCTAssertEqual(written, root + "/run/model.onnx")
        XCTAssertEqual(steps, [1, 2])
        let trained = try Model.load(contentsOf: written)
        let changed = original.graph.initializers.filter { name, tensor in
            guard let t = trained.graph.initializers[name], t.dataType == .float, tensor.rank >= 1, t.shape == tensor.shape else { return false }
            return maxAbsDifference(t, tensor) > 0
        }
        XCTAssertFalse(changed.isEmpty, "no parameter changed after 2 steps")
        let config = try Classification.id2label(configPath: root + "/run/config.json")
        XCTAssertEqual(config.count, 5)
    }
}
