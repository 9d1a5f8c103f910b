import Foundation
import XCTest
import GraphIR
import SegmentationData
import TestSupport

/// Options, outputs, data and messages at the command line (issue 12): every bad value is a usage error
/// naming the option (exit 64), existing outputs and inputs are never replaced, `--resume` with nothing
/// to resume is an error, bad data is an error at once, label names must fit the model, and file errors
/// exit 4 in words. Runs the built `segformer` binary through `CLIRobustnessTests`' helpers.
final class CLIHardeningTests: XCTestCase {
    var cli: CLIRobustnessTests!
    var scratch: String { cli.scratch }
    var model: String { cli.model }
    var classifier: String!

    override func setUpWithError() throws {
        cli = CLIRobustnessTests(name: "helper", testClosure: { _ in })
        try cli.setUpWithError()
        classifier = try commonFixtures.path("tiny-classifier/model.onnx")
    }

    override func tearDownWithError() throws { try cli.tearDownWithError() }

    /// A folder dataset of `count` 32×32 scenes; `mask(i)` gives sample i's label value (0…4 or 255).
    func dataset(_ name: String, count: Int = 4, image: (Int) throws -> Void = { _ in }, mask: (Int) -> UInt8 = { UInt8($0 % 5) }) throws -> [String] {
        let images = scratch + "/\(name)/images", masks = scratch + "/\(name)/masks"
        for dir in [images, masks] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        for i in 0..<count {
            try Image(width: 32, height: 32, channels: 3, pixels: (0..<32 * 32 * 3).map { UInt8(($0 * 7 + i * 13) % 256) })
                .writePNG(to: "\(images)/s\(i).png")
            try Image(width: 32, height: 32, channels: 1, pixels: (0..<32 * 32).map { $0 < 512 ? mask(i) : UInt8(i % 5) })
                .writePNG(to: "\(masks)/s\(i).png")
        }
        return ["--images", images, "--masks", masks]
    }

    /// `train` on the tiny model at 32×32 with `extra` options.
    func train(_ data: [String], _ extra: [String]) -> [String] {
        ["train", model] + data + ["--crop", "32", "--size", "32", "--batch-size", "2", "--threads", "1"] + extra
    }

    func expectUsageError(_ args: [String], naming option: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let o = try cli.run(args)
        XCTAssertEqual(o.status, 64, "\(args): \(o.stderr)", file: file, line: line)
        XCTAssertTrue(o.stderr.contains(option), "\(args): '\(o.stderr)' does not name \(option)", file: file, line: line)
    }

    func testNumericOptionsAreCheckedUpFront() throws {
        let data = try dataset("d")
        for (option, value) in [("--lr", "nan"), ("--weight-decay", "inf"), ("--checkpoint-every", "0"), ("--eval-every", "0"),
                                ("--batch-size", "0"), ("--gradient-accumulation", "0"), ("--warmup-steps", "-1"),
                                ("--head-lr-multiplier", "-1"), ("--max-steps", "0")] {
            try expectUsageError(train(data, [option, value, "--output", scratch + "/never"]), naming: option)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch + "/never"))
        let x = try commonFixtures.path("tiny-segformer/batch/pixel_values.pb"), y = try commonFixtures.path("tiny-segformer/batch/labels.pb")
        try expectUsageError(["step", model, "--pixel-values", x, "--labels", y, "--lr", "nan"], naming: "--lr")
        try expectUsageError(["step", model, "--pixel-values", x, "--labels", y, "--beta2", "1"], naming: "--beta2")
        try expectUsageError(["bench", model, "--iterations", "0"], naming: "--iterations")
        try expectUsageError(["classify", classifier, cli.image, "--top", "0"], naming: "--top")
        try expectUsageError(["init", "--num-labels", "0", "--out", scratch + "/x.onnx"], naming: "--num-labels")
        try expectUsageError(["test-model", scratch, "--atol", "nan"], naming: "--atol")
        try expectUsageError(["evaluate", model, "--data", scratch] + data, naming: "--data")
    }

    func testTrainNeverReplacesOutputsOrItsInputAndResumeNeedsACheckpoint() throws {
        let data = try dataset("d")
        let run = scratch + "/run"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: run + "/config.json"))
        try cli.expectError(train(data, ["--max-steps", "1", "--output", run]), mentioning: "config.json already exists")
        XCTAssertEqual(try String(contentsOfFile: run + "/config.json", encoding: .utf8), "mine")
        // The input model in the output folder is refused even with --overwrite.
        try FileManager.default.copyItem(atPath: model, toPath: run + "/model.onnx")
        let o = try cli.run(["train", run + "/model.onnx"] + Array(train(data, ["--max-steps", "1", "--output", run, "--overwrite"]).dropFirst(2)))
        XCTAssertEqual(o.status, 4, o.stderr)
        XCTAssertTrue(o.stderr.contains("is an input"), o.stderr)
        // Nothing to resume: a typo in --output, a folder without a checkpoint, a checkpoint that is a file.
        try cli.expectError(train(data, ["--max-steps", "1", "--output", scratch + "/typo", "--resume"]), mentioning: "nothing to resume")
        try cli.expectError(train(data, ["--max-steps", "1", "--output", run, "--resume"]), mentioning: "nothing to resume")
        try Data().write(to: URL(fileURLWithPath: run + "/checkpoint"))
        try cli.expectError(train(data, ["--max-steps", "1", "--output", run, "--resume"]), mentioning: "checkpoint is a file")
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch + "/typo"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/last.onnx"))
    }

    func testResumeNamesChangedOptions() throws {
        let data = try dataset("d")
        let run = scratch + "/run"
        XCTAssertEqual(try cli.run(train(data, ["--max-steps", "2", "--output", run])).status, 0)
        try cli.expectError(train(data, ["--max-steps", "3", "--lr", "1e-3", "--output", run, "--resume"]),
                            mentioning: "--lr 6e-05 → 0.001, --max-steps 2 → 3")
        let o = try cli.run(train(data, ["--max-steps", "3", "--output", run, "--resume", "--allow-option-changes"]))
        XCTAssertEqual(o.status, 0, o.stderr)
        XCTAssertTrue(o.stdout.contains("resumed from") && o.stdout.contains("step 3/3"), o.stdout)
    }

    func testRunRefusesOutputsThatWouldBeTheSameFile() throws {
        let x = ValueInfo(name: "x", type: TensorType(.float, known: [2]))
        let graph = Graph(name: "collide", nodes: [Node(name: "n1", opType: OpType.neg, inputs: ["x"], outputs: ["a/b"]),
                                                   Node(name: "n2", opType: OpType.relu, inputs: ["x"], outputs: ["a_b"])],
                          inputs: [x], outputs: [ValueInfo(name: "a/b", type: x.type), ValueInfo(name: "a_b", type: x.type)])
        let path = scratch + "/collide.onnx", input = scratch + "/x.pb"
        try ONNXExporter.write(Model(graph: graph), to: path)
        try ONNXExporter.writeTensorFile(Tensor([Float(1), -2], shape: [2]), name: "x", to: input)
        try cli.expectError(["run", path, "--input", "x=\(input)", "--output-dir", scratch + "/out", "--overwrite"],
                            mentioning: "output 'a/b' and output 'a_b' would both be written")
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch + "/out/a_b.pb"))
    }

    func testBadDataIsAnErrorAtOnce() throws {
        // Every image corrupt, skipping on: an error, not an endless search for a good sample.
        let bad = try dataset("bad")
        for i in 0..<4 { try Data("junk".utf8).write(to: URL(fileURLWithPath: bad[1] + "/s\(i).png")) }
        try cli.expectError(train(bad, ["--max-steps", "1", "--skip-bad-samples", "--output", scratch + "/r1"]),
                            mentioning: "4 of the 4 samples are bad")
        try cli.expectError(["evaluate", model, "--size", "32", "--skip-bad-samples"] + bad, mentioning: "nothing to evaluate")
        // A 16-bit mask value that is no class id is named with its file, not read as its low byte.
        let sixteen = try dataset("sixteen")
        try FileManager.default.copyItem(atPath: try commonFixtures.path("images/labels16_large.png"), toPath: sixteen[3] + "/big.png")
        try Image(width: 6, height: 4, channels: 3, pixels: [UInt8](repeating: 9, count: 72)).writePNG(to: sixteen[1] + "/big.png")
        try cli.expectError(["evaluate", model, "--size", "32"] + sixteen, mentioning: "big.png: 16-bit mask value 300")
    }

    func testBatchesWithoutALabelledPixelAreSkippedWithTheirFiles() throws {
        let data = try dataset("ignored", mask: { $0 < 2 ? 255 : 1 })
        let masks = data[3]
        for i in 0..<2 {   // samples 0 and 1: every pixel ignored
            try Image(width: 32, height: 32, channels: 1, pixels: [UInt8](repeating: 255, count: 1024)).writePNG(to: "\(masks)/s\(i).png")
        }
        let o = try cli.run(train(data, ["--max-steps", "2", "--no-shuffle", "--no-augment", "--output", scratch + "/r"]))
        XCTAssertEqual(o.status, 0, o.stderr)
        XCTAssertTrue(o.stderr.contains("batch skipped") && o.stderr.contains("s0.png") && o.stderr.contains("s1.png"), o.stderr)
        XCTAssertTrue(o.stdout.contains("skipped batches 1"), o.stdout)
    }

    func testLabelNamesMustFitTheModel() throws {
        let data = try dataset("d")
        let three = scratch + "/three.txt", many = scratch + "/many.txt", config = scratch + "/config.json"
        try Data("a\nb\nc\n".utf8).write(to: URL(fileURLWithPath: three))
        try Data((0..<150).map { "n\($0)" }.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: many))
        let id2label = Dictionary(uniqueKeysWithValues: (0..<150).map { (String($0), "n\($0)") })
        try JSONSerialization.data(withJSONObject: ["id2label": id2label]).write(to: URL(fileURLWithPath: config))
        try cli.expectError(train(data, ["--max-steps", "1", "--labels", three, "--output", scratch + "/r"]), mentioning: "names 3 classes")
        try cli.expectError(["init", "--num-labels", "3", "--labels", many, "--out", scratch + "/i.onnx"], mentioning: "names 150 classes")
        try cli.expectError(["classify", classifier, cli.image, "--size", "32", "--config", config], mentioning: "names 150 classes")
        // A classifier is not a segmentation model.
        try cli.expectError(["evaluate", classifier, "--size", "32"] + data, mentioning: "not a segmentation model")
        try cli.expectError(["train", classifier] + Array(train(data, ["--max-steps", "1", "--output", scratch + "/c"]).dropFirst(2)),
                            mentioning: "not a segmentation model")
    }

    func testFileErrorsExitFourInWords() throws {
        let o = try cli.run(["classify", classifier, cli.image, "--config", scratch + "/missing.json"])
        XCTAssertEqual(o.status, 4, o.stderr)
        XCTAssertTrue(o.stderr.contains("missing.json: no such file"), o.stderr)
        let file = scratch + "/a-file"
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        let input = try commonFixtures.path("tiny-segformer/test_data_set_0/input_0.pb")
        let r = try cli.run(["run", model, "--input", "pixel_values=\(input)", "--output-dir", file])
        XCTAssertEqual(r.status, 4, r.stderr)
        XCTAssertTrue(r.stderr.contains("a-file: it already exists"), r.stderr)
        for text in [o.stderr, r.stderr] { XCTAssertFalse(text.contains("NSCocoaErrorDomain") || text.contains("could not be completed"), text) }
    }
}
