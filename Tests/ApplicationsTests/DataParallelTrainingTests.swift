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

    func trainArgs(batch: Int, steps: Int, output: String, data: String? = nil) -> [String] {
        let d = data ?? scratch + "/data"
        return ["train", model, "--images", d + "/images", "--masks", d + "/masks", "--max-steps", "\(steps)",
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

        let expected = try losses(single + ".jsonl"), got = try losses(parallel + ".jsonl")
        XCTAssertEqual(got.count, steps)
        XCTAssertEqual(expected.count, steps)
        for (s, (a, b)) in zip(got, expected).enumerated() {
            XCTAssertLessThanOrEqual(abs(a - b), 1e-5 * abs(b), "step \(s + 1): loss \(a) with 2 processes, \(b) with one")
        }
        let reference = try Model.load(contentsOf: single + "/last.onnx").graph.initializers
        let trained = try Model.load(contentsOf: parallel + "/last.onnx").graph.initializers
        // All parameters together, and each one alone (relative to its largest entry) — except the attention
        // key biases: their gradient is zero in exact arithmetic (softmax over the keys ignores a bias added
        // to every key), so what they hold is AdamW-amplified rounding noise, which differs with the batch split.
        var compared = 0, differenceSquared = 0.0, referenceSquared = 0.0
        for (name, b) in reference where b.dataType == .float && b.rank >= 1 {
            guard let a = trained[name] else { XCTFail("\(name) missing from the 2-process model"); continue }
            differenceSquared += pow(normOfDifference(a, b), 2)
            referenceSquared += pow(norm(b), 2)
            if name.hasSuffix("k_proj.bias") || name.hasSuffix("key.bias") { continue }
            let scale = max(Double(maxAbsDifference(b, Tensor(zeros: .float, shape: b.shape))), 1e-12)
            XCTAssertLessThanOrEqual(Double(maxAbsDifference(a, b)) / scale, 1e-5, "parameter \(name)")
            compared += 1
        }
        XCTAssertGreaterThan(compared, 10)
        XCTAssertLessThanOrEqual((differenceSquared / referenceSquared).squareRoot(), 1e-5, "all parameters")

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
