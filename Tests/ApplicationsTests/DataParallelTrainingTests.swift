import Foundation
import XCTest
import GraphIR
import SegmentationData
import TestSupport

/// `mpirun -np 2 segformer train … --batch-size 1` against one process with `--batch-size 2`: the same
/// losses at every step and the same parameters at the end (the images' slices hold different numbers
/// of ignored pixels, so averaging the processes' means, as PyTorch DDP does, would fail this); the whole
/// job ends, non-zero and soon, when one process is killed or meets a bad image; a sharded evaluation
/// prints the single-process table. Runs the built `segformer` binary and Open MPI's `mpirun` (CI
/// installs openmpi-bin; skipped, saying why, only where either is missing).
final class DataParallelTrainingTests: XCTestCase {
    var binary: String!
    var mpirun: String!
    var scratch: String!
    var model: String!

    override func setUpWithError() throws {
        let candidate = productsDirectory.appendingPathComponent("segformer").path
        guard FileManager.default.isExecutableFile(atPath: candidate) else {
            throw XCTSkip("segformer binary not built at \(candidate); run `swift build` first")
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        guard let found = path.split(separator: ":").map({ "\($0)/mpirun" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("mpirun not on PATH (apt-get install openmpi-bin libopenmpi-dev): data-parallel tests not run")
        }
        binary = candidate
        mpirun = found
        model = try commonFixtures.path("tiny-segformer/model.op17.onnx")
        scratch = NSTemporaryDirectory() + "segformer-mpi-\(UUID().uuidString)"
        try makeDataset(at: scratch + "/data")
    }

    override func tearDownWithError() throws {
        if let scratch { try? FileManager.default.removeItem(atPath: scratch) }
    }

    /// Four 37×23 pictures (shifted colours of the rgb fixture) with striped masks of the model's 5
    /// classes; picture k has its top 4k rows ignored (255).
    func makeDataset(at root: String) throws {
        for folder in ["images", "masks"] {
            try FileManager.default.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
        }
        let base = try Image(contentsOf: try commonFixtures.path("images/rgb.png"))
        for k in 0..<4 {
            var picture = base
            picture.pixels = base.pixels.enumerated().map { i, v in UInt8((Int(v) + 40 * k + i % 7) % 256) }
            try picture.writePNG(to: "\(root)/images/s\(k).png")
            let mask = (0..<(base.width * base.height)).map { i in
                i / base.width < 4 * k ? 255 : ((i % base.width) / 8 + k) % 5
            }
            try Segmentation.writeMaskPNG(mask, width: base.width, height: base.height, to: "\(root)/masks/s\(k).png")
        }
    }

    struct Outcome { var status: Int32; var seconds: Double; var stdout: String; var stderr: String }

    /// Runs `executable` with `args`; `whileRunning` is called with the process (to kill one of its ranks).
    func run(_ executable: String, _ args: [String], timeout: TimeInterval = 120,
             whileRunning: ((Process) throws -> Void)? = nil) throws -> Outcome {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        let outPath = scratch + "/out-\(UUID().uuidString)", errPath = outPath + ".err"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        let started = Date()
        try p.run()
        try whileRunning?(p)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { p.terminate(); XCTFail("\(args) still running after \(timeout) s") }
        p.waitUntilExit()
        return Outcome(status: p.terminationStatus, seconds: Date().timeIntervalSince(started),
                       stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                       stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    func mpirun(_ n: Int, _ args: [String], whileRunning: ((Process) throws -> Void)? = nil) throws -> Outcome {
        try run(mpirun, ["--allow-run-as-root", "--oversubscribe", "-np", "\(n)", binary] + args, whileRunning: whileRunning)
    }

    func trainArgs(batch: Int, steps: Int, output: String, data: String? = nil, model: String? = nil) -> [String] {
        let d = data ?? scratch + "/data"
        return ["train", model ?? self.model, "--images", d + "/images", "--masks", d + "/masks", "--max-steps", "\(steps)",
                "--batch-size", "\(batch)", "--no-shuffle", "--no-augment", "--crop", "32", "--size", "32",
                "--lr", "1e-2", "--lr-schedule", "constant", "--threads", "1",
                "--log-json", output + ".jsonl", "--output", output]
    }

    func losses(_ logPath: String) throws -> [Double] {
        try String(contentsOfFile: logPath, encoding: .utf8).split(separator: "\n").map { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            return object["loss"] as! Double
        }
    }

    /// The losses of both logs agree at every step (1e-5 relative), and so do the trained models
    /// (`assertSameParameters`, leaving out `noise`).
    func assertSameTraining(_ parallel: String, as single: String, steps: Int, noise: [String] = [], elementwise: Bool = true,
                            file: StaticString = #filePath, line: UInt = #line) throws {
        let expected = try losses(single + ".jsonl"), got = try losses(parallel + ".jsonl")
        XCTAssertEqual(got.count, steps, file: file, line: line)
        XCTAssertEqual(expected.count, steps, file: file, line: line)
        for (s, (a, b)) in zip(got, expected).enumerated() {
            XCTAssertLessThanOrEqual(abs(a - b), 1e-5 * abs(b), "step \(s + 1): loss \(a) with 2 processes, \(b) with one", file: file, line: line)
        }
        try assertSameParameters(parallel + "/last.onnx", single + "/last.onnx", noise: noise, elementwise: elementwise,
                                 file: file, line: line)
    }

    func testTwoProcessesOfBatchOneEqualOneProcessOfBatchTwo() throws {
        let steps = 6   // three epochs of two global batches
        let single = scratch + "/single", parallel = scratch + "/parallel"
        let one = try run(binary, trainArgs(batch: 2, steps: steps, output: single))
        XCTAssertEqual(one.status, 0, one.stderr)
        let two = try mpirun(2, trainArgs(batch: 1, steps: steps, output: parallel))
        XCTAssertEqual(two.status, 0, two.stderr)
        XCTAssertTrue(two.stdout.contains("on 2 processes"), two.stdout)
        // Rank 0 alone reports: one line per step.
        XCTAssertEqual(two.stdout.components(separatedBy: "step 1/\(steps) ").count - 1, 1, two.stdout)
        try assertSameTraining(parallel, as: single, steps: steps)

        // Resuming needs the same number of processes.
        let resumed = try run(binary, trainArgs(batch: 2, steps: steps + 2, output: parallel) + ["--resume", "--allow-option-changes"])
        XCTAssertEqual(resumed.status, 1, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("2 process"), resumed.stderr)

        // Sharded evaluation: the same table as one process.
        let evalArgs = ["evaluate", single + "/last.onnx", "--images", scratch + "/data/images", "--masks",
                        scratch + "/data/masks", "--size", "32", "--threads", "1"]
        let alone = try run(binary, evalArgs), sharded = try mpirun(2, evalArgs)
        XCTAssertEqual(alone.status, 0, alone.stderr)
        XCTAssertEqual(sharded.status, 0, sharded.stderr)
        XCTAssertTrue(alone.stdout.contains("mIoU"), alone.stdout)
        XCTAssertEqual(sharded.stdout, alone.stdout)
    }

    /// The training-mode export (BatchNorm on batch statistics in the decode head): with --sync-batchnorm,
    /// 2 processes of batch 1 normalise with the statistics of the global batch of 2, so losses, parameters
    /// and the running mean and variance equal one process's with --batch-size 2; without it each process
    /// normalises its one image alone, and the losses differ. A checkpoint records the option.
    func testSyncBatchNormTwoProcessesOfBatchOneEqualOneProcessOfBatchTwo() throws {
        let trainMode = try commonFixtures.path("tiny-segformer-train/model.op17.onnx")
        func train(_ name: String, processes: Int, steps: Int, _ extra: [String] = []) throws -> String {
            let output = scratch + "/" + name
            let args = trainArgs(batch: 2 / processes, steps: steps, output: output, model: trainMode) + extra
            let o = processes == 1 ? try run(binary, args) : try mpirun(processes, args)
            XCTAssertEqual(o.status, 0, o.stderr)
            return output
        }
        // The biases that reach the BatchNorm through linear maps only (the decode head's projections, and the
        // last stage's LayerNorm, which feeds only them) shift its input by a per-channel constant, which its
        // mean removes: their gradient is zero in exact arithmetic, so they hold AdamW-amplified rounding noise
        // that differs with the batch split (as the attention key biases do), and the running mean follows them.
        // After one step the running mean is still the data's alone: both statistics are compared there.
        // Each parameter is compared in norm: AdamW's first steps move an entry by lr · g / (|g| + 1e-8), so the
        // odd entry whose gradient is near 1e-8 (one of stage 1's query weights here) moves by a fraction of a
        // step that rounding decides (2e-6 of a 0.16 maximum) while the others agree to 1e-8.
        let noise = ["linear_projections.0.proj.bias", "linear_projections.1.proj.bias", "stages.1.layer_norm.bias", "running_mean"]
        try assertSameTraining(try train("sync-4", processes: 2, steps: 4, ["--sync-batchnorm"]),
                               as: try train("single-4", processes: 1, steps: 4), steps: 4, noise: noise, elementwise: false)
        let single = try train("single-1", processes: 1, steps: 1)
        try assertSameTraining(try train("sync-1", processes: 2, steps: 1, ["--sync-batchnorm"]), as: single, steps: 1,
                               noise: Array(noise.dropLast()), elementwise: false)
        let statistics = try Model.load(contentsOf: single + "/last.onnx").graph.initializers.keys.filter { $0.contains("running_") }
        XCTAssertEqual(statistics.count, 2, "the running mean and variance are in the model (and compared)")

        let apart = try train("separate-1", processes: 2, steps: 1)
        let perProcess = try losses(apart + ".jsonl"), global = try losses(single + ".jsonl")
        XCTAssertGreaterThan(abs(perProcess[0] - global[0]), 1e-4 * abs(global[0]), "per-process statistics should give another loss")

        let resumed = try run(binary, trainArgs(batch: 1, steps: 1, output: scratch + "/sync-1", model: trainMode) + ["--resume"])
        XCTAssertEqual(resumed.status, 1, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("--sync-batchnorm true → unset"), resumed.stderr)
    }

    /// All parameters (and running statistics) of two models agree: together within 1e-5 relative, and
    /// each one alone — `elementwise`: every entry relative to its largest entry; otherwise in norm, relative
    /// to its norm. Names ending in one of `noise` are left out.
    func assertSameParameters(_ path: String, _ referencePath: String, noise: [String] = [], elementwise: Bool = true,
                              file: StaticString = #filePath, line: UInt = #line) throws {
        let reference = try Model.load(contentsOf: referencePath).graph.initializers
        let trained = try Model.load(contentsOf: path).graph.initializers
        // All parameters together, and each one alone (relative to its largest entry) — except the attention
        // key biases: their gradient is zero in exact arithmetic (softmax over the keys ignores a bias added
        // to every key), so what they hold is AdamW-amplified rounding noise, which differs with the batch split.
        var compared = 0, differenceSquared = 0.0, referenceSquared = 0.0
        for (name, b) in reference where b.dataType == .float && b.rank >= 1 {
            if noise.contains(where: { name.hasSuffix($0) }) { continue }
            guard let a = trained[name] else { XCTFail("\(name) missing from the 2-process model"); continue }
            differenceSquared += pow(normOfDifference(a, b), 2)
            referenceSquared += pow(norm(b), 2)
            if name.hasSuffix("k_proj.bias") || name.hasSuffix("key.bias") { continue }
            let relative = elementwise ? Double(maxAbsDifference(a, b)) / max(Double(maxAbsDifference(b, Tensor(zeros: .float, shape: b.shape))), 1e-12)
                                       : normOfDifference(a, b) / max(norm(b), 1e-12)
            XCTAssertLessThanOrEqual(relative, 1e-5, "parameter \(name)", file: file, line: line)
            compared += 1
        }
        XCTAssertGreaterThan(compared, 10, file: file, line: line)
        XCTAssertLessThanOrEqual((differenceSquared / referenceSquared).squareRoot(), 1e-5, "all parameters", file: file, line: line)
    }

    /// Trains with 2 processes until two steps are logged (both are training), sends `signal` to one of
    /// them, and returns how the job ended and how long after the signal.
    func signalOneProcessMidTraining(_ signal: Int32, _ extra: [String] = []) throws -> (Outcome, TimeInterval) {
        let output = scratch + "/signalled"
        let log = output + ".jsonl"
        var signalledAt: Date?
        let o = try mpirun(2, trainArgs(batch: 1, steps: 1_000_000, output: output) + extra) { launcher in
            let deadline = Date().addingTimeInterval(90)
            while Date() < deadline, ((try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").count ?? 0) < 2 {
                usleep(50_000)
            }
            let ranks = DataParallelTrainingTests.children(of: launcher.processIdentifier)
            XCTAssertEqual(ranks.count, 2, "expected mpirun's 2 processes, found \(ranks)")
            if let victim = ranks.last { kill(victim, signal); signalledAt = Date() }
        }
        let signalled = try XCTUnwrap(signalledAt, "no process was signalled")
        return (o, Date().timeIntervalSince(signalled))
    }

    func testKillingOneProcessEndsTheJobSoon() throws {
        let (o, after) = try signalOneProcessMidTraining(SIGKILL)
        XCTAssertNotEqual(o.status, 0)
        XCTAssertLessThan(after, 60, "the job outlived the killed process by a minute")
        XCTAssertTrue(o.stderr.contains("signal 9") || o.stdout.contains("signal 9"), o.stderr)
    }

    /// A process that is alive but stuck (SIGSTOP) leaves the others waiting in a collective: after
    /// --collective-timeout they abort the job, naming the wait.
    func testStuckProcessEndsTheJobAfterTheCollectiveTimeout() throws {
        let (o, after) = try signalOneProcessMidTraining(SIGSTOP, ["--collective-timeout", "5"])
        XCTAssertNotEqual(o.status, 0)
        XCTAssertLessThan(after, 60, "the job outlived the stuck process by a minute")
        XCTAssertTrue(o.stderr.contains("did not complete within 5 s"), o.stderr)
    }

    func testBadImageOnOneProcessEndsTheJobWithItsName() throws {
        let data = scratch + "/bad"
        try makeDataset(at: data)
        // s1 is the second image of the first global batch: process 1's, and only process 1 reads it.
        try Data("not a png".utf8).write(to: URL(fileURLWithPath: data + "/images/s1.png"))
        let o = try mpirun(2, trainArgs(batch: 1, steps: 4, output: scratch + "/bad-run", data: data))
        XCTAssertNotEqual(o.status, 0)
        XCTAssertLessThan(o.seconds, 60)
        XCTAssertTrue(o.stderr.contains("s1.png"), o.stderr)
        XCTAssertTrue(o.stderr.contains("rank 1 of 2"), o.stderr)
    }

    /// Process ids whose parent is `pid` (from /proc).
    static func children(of pid: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { child in
            guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == pid
        }.sorted()
    }
}
