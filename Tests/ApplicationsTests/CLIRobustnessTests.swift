import Foundation
import XCTest
import TestSupport

/// Malformed input never crashes the tool: every command given a truncated, bit-flipped or random
/// model, an unknown op, a wrong input shape, a missing or escaping external-data file or a corrupt
/// image exits non-zero (no signal), within a time limit, with an error line naming the problem.
/// Runs the built `segformer` binary (skipped when it has not been built).
final class CLIRobustnessTests: XCTestCase {
    var binary: String!
    var scratch: String!
    var model: String!
    var image: String!

    override func setUpWithError() throws {
        let products = productsDirectory
        let candidate = products.appendingPathComponent("segformer").path
        guard FileManager.default.isExecutableFile(atPath: candidate) else {
            throw XCTSkip("segformer binary not built at \(candidate); run `swift build` first")
        }
        binary = candidate
        model = try commonFixtures.path("tiny-segformer/model.op17.onnx")
        image = try commonFixtures.path("images/rgb.png")
        scratch = NSTemporaryDirectory() + "segformer-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let scratch { try? FileManager.default.removeItem(atPath: scratch) }
    }

    struct Outcome { var status: Int32; var signaled: Bool; var stdout: String; var stderr: String }

    func run(_ args: [String], timeout: TimeInterval = 60) throws -> Outcome {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { p.terminate(); XCTFail("\(args) hung for \(timeout) s") }
        p.waitUntilExit()
        return Outcome(status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal,
                       stdout: String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
                       stderr: String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    /// Expects a clean failure whose error line contains `mention`.
    func expectError(_ args: [String], mentioning mention: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let o = try run(args)
        XCTAssertFalse(o.signaled, "\(args) died from a signal: \(o.stderr)", file: file, line: line)
        XCTAssertNotEqual(o.status, 0, "\(args) succeeded on bad input", file: file, line: line)
        XCTAssertTrue(o.stderr.contains("error:"), "\(args): no error line in \(o.stderr)", file: file, line: line)
        XCTAssertTrue(o.stderr.contains(mention), "\(args): error does not mention '\(mention)': \(o.stderr)", file: file, line: line)
    }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = scratch + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func badModels() throws -> [(path: String, mention: String)] {
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: model)))
        var flipped = good
        var rng: UInt64 = 99
        for _ in 0..<64 {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            let i = Int(rng >> 33) % flipped.count
            flipped[i] ^= UInt8(truncatingIfNeeded: rng >> 13) | 1
        }
        var random = [UInt8](repeating: 0, count: 4096)
        for i in random.indices { rng = rng &* 6364136223846793005 &+ 1; random[i] = UInt8(truncatingIfNeeded: rng >> 40) }
        return [
            (try write(Array(good.prefix(good.count / 3)), "truncated.onnx"), "truncated.onnx"),
            (try write(flipped, "flipped.onnx"), "error"),
            (try write(random, "random.onnx"), "random.onnx"),
            (try commonFixtures.path("cli/unknown-op.onnx"), "FancyOp"),
            (try commonFixtures.path("cli/missing-data/model.onnx"), "weights.bin"),
            (try commonFixtures.path("cli/escaping-data/model.onnx"), "outside"),
            (scratch + "/does-not-exist.onnx", "does-not-exist.onnx"),
        ]
    }

    func testEveryCommandRejectsBadModels() throws {
        let input = try commonFixtures.path("tiny-segformer/test_data_set_0/input_0.pb")
        for (path, mention) in try badModels() {
            try expectError(["inspect", path], mentioning: mention)
            try expectError(["run", path, "--input", "pixel_values=\(input)", "--output-dir", scratch + "/out"], mentioning: mention)
            try expectError(["classify", path, image], mentioning: mention)
            try expectError(["predict", path, image, "--out", scratch + "/pred"], mentioning: mention)
            try expectError(["bench", path, "--iterations", "1", "--warmup", "0", "--height", "32", "--width", "32"], mentioning: mention)
            let dir = scratch + "/case-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir + "/test_data_set_0", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: path.hasSuffix("does-not-exist.onnx") ? model : path, toPath: dir + "/model.onnx")
            if path.hasSuffix("does-not-exist.onnx") { continue }
            try FileManager.default.copyItem(atPath: input, toPath: dir + "/test_data_set_0/input_0.pb")
            try FileManager.default.copyItem(atPath: input, toPath: dir + "/test_data_set_0/output_0.pb")
            let o = try run(["test-model", dir])
            XCTAssertFalse(o.signaled, "test-model on \(path) died from a signal")
            XCTAssertNotEqual(o.status, 0, "test-model on \(path) passed")
        }
    }

    func testWrongInputShapeAndCorruptImageAreNamed() throws {
        let wrong = try commonFixtures.path("cli/wrong-shape.pb")   // float32 [1, 4, 32, 32]
        try expectError(["run", model, "--input", "pixel_values=\(wrong)", "--output-dir", scratch], mentioning: "pixel_values")
        let corrupt = try write([0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 0x4A, 0x46, 0x49, 0x46, 0, 1, 2, 3], "corrupt.jpg")
        try expectError(["classify", commonFixtures.path("tiny-classifier/model.onnx"), corrupt], mentioning: "corrupt.jpg")
        try expectError(["predict", model, corrupt, "--out", scratch + "/p"], mentioning: "corrupt.jpg")
        let notImage = try write(Array("hello".utf8), "text.png")
        try expectError(["predict", model, notImage, "--out", scratch + "/p"], mentioning: "text.png")
    }

    func testOutputsAreNotOverwritten() throws {
        let input = try commonFixtures.path("tiny-segformer/test_data_set_0/input_0.pb")
        let first = try run(["run", model, "--input", "pixel_values=\(input)", "--output-dir", scratch])
        XCTAssertEqual(first.status, 0, first.stderr)
        try expectError(["run", model, "--input", "pixel_values=\(input)", "--output-dir", scratch], mentioning: "already exists")
    }

    func testPredictAndClassifyWork() throws {
        let o = try run(["predict", model, image, "--out", scratch + "/pred", "--size", "32"])
        XCTAssertEqual(o.status, 0, o.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: scratch + "/pred/rgb.mask.png"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: scratch + "/pred/rgb.overlay.png"))
        let c = try run(["classify", commonFixtures.path("tiny-classifier/model.onnx"), image, "--size", "32", "--top", "3",
                         "--config", commonFixtures.path("tiny-classifier/config.json")])
        XCTAssertEqual(c.status, 0, c.stderr)
        XCTAssertEqual(c.stdout.split(separator: "\n").count, 3)
        XCTAssertTrue(c.stdout.contains("label_"), c.stdout)
    }

    func testStepTrainsReportsLossesAndRefusesBadInput() throws {
        let x = try commonFixtures.path("tiny-segformer/batch/pixel_values.pb")
        let y = try commonFixtures.path("tiny-segformer/batch/labels.pb")
        let out = scratch + "/trained.onnx", grads = scratch + "/grads.onnx"
        let o = try run(["step", model, "--pixel-values", x, "--labels", y, "--steps", "2", "--lr", "1e-3",
                         "--save-gradients", grads, "--save-model", out])
        XCTAssertEqual(o.status, 0, o.stderr)
        let lines = o.stdout.split(separator: "\n").filter { $0.hasPrefix("loss ") }
        XCTAssertEqual(lines.count, 3, o.stdout)
        XCTAssertEqual(lines.first, "loss 1.6095657", "the HF loss PyTorch computed for this batch")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out) && FileManager.default.fileExists(atPath: grads))
        // Never over the input model, never over an existing file without --overwrite.
        try expectError(["step", model, "--pixel-values", x, "--labels", y, "--save-model", model], mentioning: "input model")
        try expectError(["step", model, "--pixel-values", x, "--labels", y, "--save-model", out], mentioning: "already exists")
        // Every pixel ignored: the fused loss gives 0 (not PyTorch's 0/0 = NaN), so the step runs on.
        let ignored = try run(["step", model, "--pixel-values", x, "--labels", commonFixtures.path("cli/all-ignored.pb")])
        XCTAssertEqual(ignored.status, 0, ignored.stderr)
        XCTAssertEqual(ignored.stdout.split(separator: "\n").filter { $0.hasPrefix("loss ") }, ["loss 0.0", "loss 0.0"], ignored.stdout)
        // Labels of the wrong shape are refused with a message, not a crash.
        try expectError(["step", model, "--pixel-values", x, "--labels", x], mentioning: "error")
    }
}
