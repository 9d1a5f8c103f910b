import Foundation
import XCTest
import GraphIR
import TestSupport

/// Malformed input never crashes the tool: every command given a truncated, bit-flipped or random
/// model, an unknown op, a wrong input shape, a missing or escaping external-data file or a corrupt
/// image exits non-zero (no signal), within a time limit, with an error line naming the problem.
/// Runs the built `segformer` binary (skipped when it has not been built).
final class CLIRobustnessTests: CLITestCase {
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
        try expectError(["step", model, "--pixel-values", x, "--labels", y, "--save-model", model], mentioning: "is an input")
        try expectError(["step", model, "--pixel-values", x, "--labels", y, "--save-model", out], mentioning: "already exists")
        // Every pixel ignored: the fused loss gives 0 (not PyTorch's 0/0 = NaN), so the step runs on.
        let ignored = try run(["step", model, "--pixel-values", x, "--labels", commonFixtures.path("cli/all-ignored.pb")])
        XCTAssertEqual(ignored.status, 0, ignored.stderr)
        XCTAssertEqual(ignored.stdout.split(separator: "\n").filter { $0.hasPrefix("loss ") }, ["loss 0.0", "loss 0.0"], ignored.stdout)
        // Labels of the wrong shape are refused with a message, not a crash.
        try expectError(["step", model, "--pixel-values", x, "--labels", x], mentioning: "error")
    }

    /// A hostile checkpoint folder: one error line naming the file, from every command that takes a
    /// model, and nothing written.
    func testHostileCheckpointFolderIsOneErrorAndWritesNothing() throws {
        let hostile = try commonFixtures.path("hf-checkpoints/bad/hostile")
        let scratch: String = self.scratch, image: String = self.image
        let onnx = scratch + "/out.onnx", folder = scratch + "/hf", masks = scratch + "/masks"
        for args in [["export", hostile, "--out", onnx], ["export-hf", hostile, "--out", folder],
                     ["classify", hostile, image], ["predict", hostile, image, "--out", masks],
                     ["run", hostile, "--output-dir", scratch + "/run"], ["bench", hostile, "--iterations", "1"],
                     ["init", "--encoder", hostile, "--out", onnx], ["inspect", hostile]] {
            let o = try run(args)
            XCTAssertEqual(o.status, 1, "\(args): \(o.stderr)")
            XCTAssertEqual(o.stderr.split(separator: "\n").count, 1, "\(args): \(o.stderr)")
            XCTAssertTrue(o.stderr.contains("pytorch_model.bin") && o.stderr.contains("refused global 'posix.system'"), "\(args): \(o.stderr)")
        }
        for p in [onnx, folder, masks, scratch + "/run"] { XCTAssertFalse(FileManager.default.fileExists(atPath: p), p) }
    }

    /// `classify DIR IMAGE --top 1` names HF's top class with the folder's own processor and labels.
    func testClassifyCheckpointFolder() throws {
        let o = try run(["classify", commonFixtures.path("hf-checkpoints/cls"), image!, "--top", "1"])
        XCTAssertEqual(o.status, 0, o.stderr)
        XCTAssertTrue(o.stdout.hasPrefix("1. class 3") && o.stdout.contains("boat"), o.stdout)
    }

    /// `step --steps 3` on a training-mode export prints PyTorch's 4 losses (1e-4 relative) and saves the
    /// running statistics PyTorch has after 3 steps (1e-3 relative); --seed fixes dropout masks.
    func testStepOnTrainingModeExport() throws {
        let folder = try commonFixtures.path("tiny-segformer-train")
        let x = folder + "/batch/pixel_values.pb", y = folder + "/batch/labels.pb", out = scratch + "/trained.onnx"
        let o = try run(["step", folder + "/model.op17.onnx", "--pixel-values", x, "--labels", y, "--steps", "3", "--lr", "1e-3",
                         "--weight-decay", "0.01", "--save-model", out])
        XCTAssertEqual(o.status, 0, o.stderr)
        let losses = o.stdout.split(separator: "\n").filter { $0.hasPrefix("loss ") }.compactMap { Double($0.dropFirst(5)) }
        let expected = try ONNXImporter.readTensorFile(folder + "/expected/adamw-losses.pb").tensor.doubles()
        XCTAssertEqual(losses.count, 4, o.stdout)
        for (got, want) in zip(losses, expected) { XCTAssertEqual(got, want, accuracy: 1e-4 * abs(want), o.stdout) }
        let saved = try ONNXImporter.load(contentsOf: out).graph.initializers
        let after = try ONNXImporter.load(contentsOf: folder + "/expected/after-3-adamw.onnx").graph.initializers
        for name in ["m.decode_head.batch_norm.running_mean", "m.decode_head.batch_norm.running_var"] {
            let got = try XCTUnwrap(saved[name], name), want = try XCTUnwrap(after[name], name)
            XCTAssertLessThanOrEqual(normOfDifference(got, want), 1e-3 * norm(want), name)
        }
        func dropoutLosses(_ seed: Int, threads: Int = 2) throws -> [Substring] {
            let r = try run(["step", folder + "/model.dropout.op17.onnx", "--pixel-values", x, "--labels", y, "--steps", "2",
                             "--seed", "\(seed)", "--threads", "\(threads)"])
            XCTAssertEqual(r.status, 0, r.stderr)
            return r.stdout.split(separator: "\n").filter { $0.hasPrefix("loss ") }
        }
        let first = try dropoutLosses(1)
        XCTAssertEqual(first.count, 3)
        XCTAssertEqual(try dropoutLosses(1, threads: 1), first, "same seed, other thread count")
        XCTAssertNotEqual(try dropoutLosses(2), first, "another seed")
    }
}
