import Foundation
import XCTest
import GraphIR
import Applications

/// `PredictionJob` works out a predict run's inputs and outputs before any image is read.
final class PredictionJobTests: XCTestCase {
    func testFoldersExpandAndOutputsAreNamed() throws {
        let root = NSTemporaryDirectory() + "job-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/in", withIntermediateDirectories: true)
        for name in ["b.JPG", "a.png", "notes.txt"] { FileManager.default.createFile(atPath: root + "/in/" + name, contents: Data([1])) }
        let job = try PredictionJob(inputs: [root + "/in"], outputFolder: root + "/out", overwrite: false)
        XCTAssertEqual(job.items.map { ($0.image as NSString).lastPathComponent }, ["a.png", "b.JPG"])
        XCTAssertEqual(job.items[1].mask, root + "/out/b.mask.png")
        XCTAssertEqual(job.items[1].overlay, root + "/out/b.overlay.png")
        XCTAssertThrowsError(try PredictionJob(inputs: [root + "/in", root + "/in/a.png"], outputFolder: root + "/out", overwrite: true)) {
            XCTAssertTrue("\($0)".contains("would both write a.mask.png"), "\($0)")
        }
        try FileManager.default.createDirectory(atPath: root + "/out", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: root + "/out/b.overlay.png", contents: Data([1]))
        XCTAssertThrowsError(try PredictionJob(inputs: [root + "/in"], outputFolder: root + "/out", overwrite: false)) {
            XCTAssertTrue("\($0)".contains("b.overlay.png already exists"), "\($0)")
        }
        XCTAssertEqual(try PredictionJob(inputs: [root + "/in"], outputFolder: root + "/out", overwrite: true).items.count, 2)
        XCTAssertThrowsError(try PredictionJob(inputs: [root + "/missing.png"], outputFolder: root, overwrite: false))
        try FileManager.default.createDirectory(atPath: root + "/empty", withIntermediateDirectories: true)
        XCTAssertThrowsError(try PredictionJob(inputs: [root + "/empty"], outputFolder: root, overwrite: false)) {
            XCTAssertTrue("\($0)".contains("holds no .jpg"), "\($0)")
        }
    }

    func testSizeRequestsMeetFixedDimensions() throws {
        let symbolic = ValueInfo(name: "pixel_values", type: TensorType(.float, [.symbol("batch"), .known(3), .symbol("height"), .symbol("width")]))
        let fixed = ValueInfo(name: "pixel_values", type: TensorType(.float, known: [1, 3, 224, 224]))
        let size = InputSizeRequest(option: "--size", axes: [.height, .width], value: 512)
        XCTAssertNoThrow(try InputSizeRequest.check([size], against: [symbolic]))
        XCTAssertNoThrow(try InputSizeRequest.check([InputSizeRequest(option: "--size", axes: [.height, .width], value: 224)], against: [fixed]))
        XCTAssertThrowsError(try InputSizeRequest.check([size], against: [fixed])) {
            XCTAssertTrue("\($0)".contains("--size 512 cannot apply: the model's input 'pixel_values' has the fixed shape float32[1×3×224×224]"), "\($0)")
        }
        XCTAssertThrowsError(try InputSizeRequest.check([InputSizeRequest(option: "--batch", axes: [.batch], value: 2)], against: [fixed]))
    }
}
