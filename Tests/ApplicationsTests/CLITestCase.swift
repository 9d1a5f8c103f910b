import Foundation
import XCTest
import TestSupport

/// What the CLI tests share: the built `segformer` binary (the test is skipped when it has not been
/// built), the tiny model and image fixtures, a scratch folder, and running a command with a time limit.
class CLITestCase: XCTestCase {
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
}
