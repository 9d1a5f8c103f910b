import Foundation
import XCTest
import GraphIR
@testable import Training
import SegmentationData

/// `resume` verifies the checkpoint before continuing: its manifest (files, checksums, tensors, the
/// run's options), then the state against this run (parameters of this model, finite, a step within
/// the run, a sane loader epoch). Each damage is an error naming what is wrong; nothing to resume is an
/// error too, never a silent fresh start. Uses `TrainerTests`' tiny model and data.
final class TrainerResumeTests: XCTestCase {
    var base: TrainerTests!
    var run: String!

    override func setUpWithError() throws {
        base = TrainerTests(name: "helper", testClosure: { _ in })
        try base.setUpWithError()
        run = base.root + "/run"
        let trainer = try base.makeTrainer(output: run, steps: 4)
        trainer.shouldStop = { $0 == 2 }
        XCTAssertThrowsError(try trainer.run())   // leaves the checkpoint of step 2
    }

    override func tearDownWithError() throws { try base.tearDownWithError() }

    var checkpoint: String { run + "/checkpoint" }

    /// Resuming the damaged run fails with an error containing each of `mentions`.
    func expectResumeError(_ mentions: [String], configure: (inout TrainerOptions) -> Void = { _ in },
                           file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try base.makeTrainer(output: run, steps: 4, resume: true, configure: configure).run(),
                             file: file, line: line) { e in
            for m in mentions { XCTAssertTrue("\(e)".contains(m), "'\(e)' does not mention '\(m)'", file: file, line: line) }
        }
    }

    func editState(_ edit: (inout [String: Any]) -> Void) throws {
        let path = checkpoint + "/state.json"
        var state = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        edit(&state)
        try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: path))
    }

    func rewriteParameters(_ edit: (inout Graph) -> Void) throws {
        let path = checkpoint + "/parameters.onnx"
        var model = try ONNXImporter.load(contentsOf: path)
        edit(&model.graph)
        try FileManager.default.removeItem(atPath: path)
        try ONNXExporter.write(model, to: path)
    }

    func dropManifest() throws { try FileManager.default.removeItem(atPath: checkpoint + "/" + CheckpointManifest.fileName) }

    func testAnIntactCheckpointResumes() throws {
        let manifest = try XCTUnwrap(try Checkpoint.read(from: checkpoint).manifest)
        XCTAssertEqual(Set(manifest.files.keys), ["parameters.onnx", "optimizer.onnx", "state.json"])
        XCTAssertEqual(manifest.options["lr"], "0.002")
        XCTAssertEqual(try base.makeTrainer(output: run, steps: 4, resume: true).run()?.step, 4)
    }

    func testDamagedFilesAreNamed() throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: checkpoint + "/parameters.onnx")))
        bytes[bytes.count / 2] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: checkpoint + "/parameters.onnx"))
        expectResumeError(["parameters.onnx", "corrupt"])
        try FileManager.default.removeItem(atPath: checkpoint + "/parameters.onnx")
        expectResumeError(["parameters.onnx", "missing"])
    }

    func testAnExtraFileIsNamed() throws {
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: checkpoint + "/stray.bin"))
        expectResumeError(["stray.bin", "unexpected"])
    }

    func testMissingAndNonFiniteParametersAreNamedWithoutAManifest() throws {
        try dropManifest()
        let original = try Data(contentsOf: URL(fileURLWithPath: checkpoint + "/parameters.onnx"))
        var removed = ""
        try rewriteParameters { g in
            removed = g.initializerOrder.last!
            g.removeInitializer(removed)
        }
        expectResumeError(["parameter '\(removed)'", "missing"])
        try original.write(to: URL(fileURLWithPath: checkpoint + "/parameters.onnx"))
        var poisoned = ""
        try rewriteParameters { g in
            poisoned = g.initializerOrder.first!
            let t = g.initializers[poisoned]!.copy()
            t.pointer(Float.self)[0] = .nan
            g.setInitializer(poisoned, t)
        }
        expectResumeError(["parameter '\(poisoned)'", "nan"])
    }

    func testImpossibleStepsAndEpochsAreRefused() throws {
        try dropManifest()   // otherwise the checksum of state.json reports any edit first
        try editState { $0["step"] = -5 }
        expectResumeError(["step -5"])
        try editState { $0["step"] = 2; $0["optimizerStep"] = Int.max }
        expectResumeError(["optimizer step \(Int.max)"])
        try editState { $0["step"] = 100; $0["optimizerStep"] = 100 }
        expectResumeError(["step 100", "0…4"])
        try editState { s in
            s["step"] = 2; s["optimizerStep"] = 2
            var pipeline = s["pipelineState"] as! [String: [String]]
            pipeline["loader"]![0] = "1000"
            s["pipelineState"] = pipeline
        }
        expectResumeError(["epoch 1000"])
    }

    func testAnEditedStateFailsItsChecksum() throws {
        try editState { $0["step"] = 3 }
        expectResumeError(["state.json", "corrupt"])
    }

    func testChangedOptionsNeedAnExplicitFlag() throws {
        expectResumeError(["--lr 0.002 → 0.001", "--allow-option-changes"]) { $0.learningRate = 1e-3 }
        let trainer = try base.makeTrainer(output: run, steps: 4, resume: true) { o in
            o.learningRate = 1e-3
            o.allowOptionChanges = true
        }
        XCTAssertEqual(try trainer.run()?.step, 4)
    }

    func testNothingToResumeIsAnError() throws {
        for (output, mention) in [(base.root + "/typo", "does not exist"), (base.root + "/data", "there is no \(base.root!)/data/checkpoint")] {
            XCTAssertThrowsError(try base.makeTrainer(output: output, steps: 2, resume: true)) { e in
                XCTAssertTrue("\(e)".contains("nothing to resume") && "\(e)".contains(mention), "\(e)")
            }
        }
        let asFile = base.root + "/file-run"
        try FileManager.default.createDirectory(atPath: asFile, withIntermediateDirectories: true)
        try Data().write(to: URL(fileURLWithPath: asFile + "/checkpoint"))
        XCTAssertThrowsError(try base.makeTrainer(output: asFile, steps: 2, resume: true)) { e in
            XCTAssertTrue("\(e)".contains("is a file"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: base.root + "/typo"), "a failed resume created its output folder")
    }

    func testAFreshRunRefusesAnotherRunsOutputs() throws {
        XCTAssertThrowsError(try base.makeTrainer(output: run, steps: 2)) { e in XCTAssertTrue("\(e)".contains("--overwrite"), "\(e)") }
        let other = base.root + "/other"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: other + "/config.json"))
        XCTAssertThrowsError(try base.makeTrainer(output: other, steps: 2)) { e in XCTAssertTrue("\(e)".contains("config.json"), "\(e)") }
        XCTAssertNoThrow(try base.makeTrainer(output: other, steps: 2) { $0.replaceExistingRun = true })
        // The input is never an output, even when replacing.
        XCTAssertThrowsError(try base.makeTrainer(output: other, steps: 2) { o in
            o.replaceExistingRun = true
            o.inputPaths = [other + "/model.onnx"]
        }) { e in XCTAssertTrue("\(e)".contains("input"), "\(e)") }
    }

    func testIntervalsAndRatesAreValidated() throws {
        for (configure, mention) in [({ (o: inout TrainerOptions) in o.checkpointEvery = 0 }, "checkpoint-every"),
                                     ({ (o: inout TrainerOptions) in o.evaluateEvery = 0 }, "eval-every"),
                                     ({ (o: inout TrainerOptions) in o.learningRate = .nan }, "lr"),
                                     ({ (o: inout TrainerOptions) in o.weightDecay = .infinity }, "weight-decay")] {
            XCTAssertThrowsError(try base.makeTrainer(output: base.root + "/v", steps: 2, configure: configure)) { e in
                XCTAssertTrue("\(e)".contains(mention), "\(e)")
            }
        }
    }
}
