import Foundation
import XCTest
import GraphIR
@testable import Runtime

/// `Session.run(_:observer:)`, the hook a data-parallel step sends gradients through: every graph output is
/// reported once, right after the step that writes it (so before the steps after it run), holding the value
/// the run returns; a throwing observer ends the run.
final class RunObserverTests: XCTestCase {
    /// x → Relu → early (an output) → Neg → Add(x) → late (an output).
    func graph() -> Graph {
        Graph(nodes: [Node(name: "relu", opType: "Relu", inputs: ["x"], outputs: ["early"]),
                      Node(name: "neg", opType: "Neg", inputs: ["early"], outputs: ["negated"]),
                      Node(name: "add", opType: "Add", inputs: ["negated", "x"], outputs: ["late"])],
              inputs: [ValueInfo(name: "x", type: TensorType(.float, known: [4]))],
              outputs: [ValueInfo(name: "late", type: TensorType(.float, known: [4])),
                        ValueInfo(name: "early", type: TensorType(.float, known: [4]))])
    }

    final class Recorder: RunObserver {
        var calls = 0
        var reports: [(call: Int, name: String, value: Tensor)] = []
        var failAt: Int?
        func afterStep(finished outputs: [(name: String, value: Tensor)]) throws {
            if calls == failAt { throw SegFormerError.invalid("observer stops the run") }
            for (name, value) in outputs { reports.append((calls, name, value.copy())) }
            calls += 1
        }
    }

    func testEachOutputIsReportedOnceAfterItsStep() throws {
        let session = try Session(model: Model(graph: graph()))
        let feeds = ["x": Tensor([Float(-1), 2, -3, 4], shape: [4])]
        let recorder = Recorder()
        let result = try session.run(feeds, observer: recorder)
        let plan = try session.plan(for: feeds)
        XCTAssertEqual(recorder.calls, plan.stepCount + 1, "once before the first step and once after each")
        XCTAssertEqual(recorder.reports.map(\.name), ["early", "late"])
        for report in recorder.reports {
            XCTAssertEqual(report.call, plan.stepFinishing(output: report.name), report.name)
            XCTAssertTrue(report.value.bitwiseEqual(result[report.name]!), report.name)
        }
        XCTAssertEqual(plan.stepFinishing(output: "early"), 1)
        XCTAssertEqual(plan.stepFinishing(output: "late"), plan.stepCount)
        XCTAssertNil(plan.stepFinishing(output: "negated"), "not a graph output")
        XCTAssertEqual(recorder.reports[0].value.toArray(Float.self), [0, 2, 0, 4])
    }

    func testAThrowingObserverEndsTheRun() throws {
        let session = try Session(model: Model(graph: graph()))
        let recorder = Recorder()
        recorder.failAt = 2
        XCTAssertThrowsError(try session.run(["x": Tensor(zeros: .float, shape: [4])], observer: recorder)) { error in
            XCTAssertTrue("\(error)".contains("observer stops the run"), "\(error)")
        }
        XCTAssertEqual(recorder.reports.map(\.name), ["early"], "the steps after the failure did not run")
    }
}
