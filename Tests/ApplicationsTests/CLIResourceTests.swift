import Foundation
import XCTest
import GraphIR
import SegmentationData
import TestSupport

/// Resources, shapes and predict's batch behaviour through the built tool: over the memory budget is
/// one clear error (exit 1), options that cannot apply to a fixed-shape model are errors, and
/// `predict` checks every output before any work.
final class CLIResourceTests: CLITestCase {
    func expectOverBudget(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let o = try run(args)
        XCTAssertFalse(o.signaled, "\(args) died from a signal: \(o.stderr)", file: file, line: line)
        XCTAssertEqual(o.status, 1, "\(args): \(o.stderr)", file: file, line: line)
        XCTAssertTrue(o.stderr.contains("above the memory budget of 200.0 MB (--max-memory)"), "\(args): \(o.stderr)", file: file, line: line)
    }

    /// The 76-byte `ConstantOfShape([100000, 100000])` model: inspect describes it, run refuses it.
    func testHugeConstantModel() throws {
        let node = Node(name: "fill", opType: "ConstantOfShape", inputs: ["shape"], outputs: ["y"])
        let graph = Graph(nodes: [node], outputs: [ValueInfo(name: "y", type: TensorType(.float, nil))],
                          initializers: ["shape": Tensor([Int64(100_000), 100_000], shape: [2])])
        let path = scratch + "/fill.onnx"
        try Model(graph: graph).write(to: path)
        let inspected = try run(["inspect", path])
        XCTAssertEqual(inspected.status, 0, inspected.stderr)
        XCTAssertTrue(inspected.stdout.contains("float32[100000×100000]"), inspected.stdout)
        try expectError(["run", path, "--output-dir", scratch + "/out", "--max-memory", "1G"], mentioning: "ConstantOfShape")
    }

    /// Sizes that would need gigabytes end with the budget's error, not an allocation failure.
    /// (The tiny model at 4096² now fits 200 MB — fused attention holds no score matrix — so 8192².)
    func testLargeSizesEndWithTheBudgetError() throws {
        try expectOverBudget(["bench", model, "--height", "8192", "--width", "8192", "--iterations", "1", "--warmup", "0", "--max-memory", "200M"])
        try expectOverBudget(["predict", model, image, "--size", "8192", "--out", scratch + "/p", "--max-memory", "200M"])
        let data = try tinyDataset()
        try expectOverBudget(["train", model, "--images", data + "/images", "--masks", data + "/masks", "--crop", "8192",
                              "--batch-size", "2", "--max-steps", "1", "--val-split", "none", "--output", scratch + "/run", "--max-memory", "200M"])
        let bad = try run(["bench", model, "--max-memory", "lots"])
        XCTAssertEqual(bad.status, 64, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("--max-memory"), bad.stderr)
    }

    /// Two 40×40 images with masks of classes 0 and 1.
    func tinyDataset() throws -> String {
        let root = scratch + "/data"
        for sub in ["images", "masks"] { try FileManager.default.createDirectory(atPath: root + "/" + sub, withIntermediateDirectories: true) }
        for i in 0..<2 {
            let rgb = (0..<(40 * 40 * 3)).map { UInt8(truncatingIfNeeded: $0 * (i + 3)) }
            try Image(width: 40, height: 40, channels: 3, pixels: rgb).writePNG(to: root + "/images/s\(i).png")
            try Image(width: 40, height: 40, channels: 1, pixels: (0..<1600).map { UInt8($0 % 40 > $0 / 40 ? 1 : 0) })
                .writePNG(to: root + "/masks/s\(i).png")
        }
        return root
    }

    /// A copy of `path` whose first input has the fixed shape `dims`.
    func fixedShapeCopy(_ path: String, _ dims: [Int]) throws -> String {
        var m = try Model.load(contentsOf: path)
        m.graph.inputs[0] = ValueInfo(name: m.graph.inputs[0].name, type: TensorType(.float, known: dims))
        let out = scratch + "/fixed-\((path as NSString).lastPathComponent)"
        try m.write(to: out)
        return out
    }

    /// Size options on fixed-shape exports were silently ignored; now they are errors stating the
    /// model's shape (and the model's own size still works).
    func testSizeOptionsOnFixedShapeModelsAreErrors() throws {
        let fixed = try fixedShapeCopy(model, [1, 3, 64, 64])
        let cases: [[String]] = [["bench", fixed, "--height", "128", "--iterations", "1", "--warmup", "0"],
                                 ["bench", fixed, "--batch", "2", "--iterations", "1", "--warmup", "0"],
                                 ["predict", fixed, image, "--size", "32", "--out", scratch + "/p"]]
        for args in cases { try expectError(args, mentioning: "fixed shape float32[1×3×64×64]") }
        let same = try run(["bench", fixed, "--height", "64", "--width", "64", "--iterations", "1", "--warmup", "0"])
        XCTAssertEqual(same.status, 0, same.stderr)
        let classifier = try fixedShapeCopy(commonFixtures.path("tiny-classifier/model.onnx"), [1, 3, 32, 32])
        try expectError(["classify", classifier, image, "--size", "224"], mentioning: "--size 224 cannot apply")
    }

    func testPredictTakesFoldersAndChecksOutputsUpFront() throws {
        let input = scratch + "/in", out = scratch + "/out"
        try FileManager.default.createDirectory(atPath: input + "/more", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: image, toPath: input + "/a.png")
        try FileManager.default.copyItem(atPath: commonFixtures.path("images/rgb.jpg"), toPath: input + "/b.jpg")
        try FileManager.default.copyItem(atPath: commonFixtures.path("images/truncated.png"), toPath: input + "/c.png")
        try FileManager.default.copyItem(atPath: image, toPath: input + "/more/a.png")
        let size = ["--size", "32"]
        // Duplicate stems: refused before anything is written.
        try expectError(["predict", model, input, input + "/more", "--out", out] + size, mentioning: "would both write a.mask.png")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // A bad image stops the batch; with --skip-bad-images it is listed and the rest is written.
        try expectError(["predict", model, input, "--out", out] + size, mentioning: "c.png")
        let skipping = try run(["predict", model, input, "--out", out, "--skip-bad-images", "--overwrite"] + size)
        XCTAssertEqual(skipping.status, 0, skipping.stderr)
        XCTAssertTrue(skipping.stdout.contains("2 of 3 images segmented, 1 skipped"), skipping.stdout)
        XCTAssertTrue(skipping.stderr.contains("c.png"), skipping.stderr)
        // An existing output is found before any image is segmented: b's files stay untouched.
        try FileManager.default.removeItem(atPath: out + "/a.mask.png")
        let before = try FileManager.default.attributesOfItem(atPath: out + "/b.mask.png")[.modificationDate] as? Date
        try expectError(["predict", model, input, "--out", out, "--skip-bad-images"] + size, mentioning: "already exists")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/a.mask.png"))
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: out + "/b.mask.png")[.modificationDate] as? Date, before)
        // The mask is a palette PNG: class ids as samples, ADE20K colours for a viewer.
        let ids = try Image(labelsAt: out + "/b.mask.png")
        let colours = try Image(contentsOf: out + "/b.mask.png")
        for i in stride(from: 0, to: ids.pixels.count, by: 97) {
            let c = Segmentation.color(forClass: Int(ids.pixels[i]))
            XCTAssertEqual(Array(colours.pixels[3 * i..<3 * i + 3]), [c.0, c.1, c.2])
        }
    }
}
