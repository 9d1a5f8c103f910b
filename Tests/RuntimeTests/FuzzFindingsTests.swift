import Foundation
import XCTest
import GraphIR
@testable import Runtime

/// Cases the fuzzing campaign (scripts/fuzz/fuzz.py) found, each reduced to the op or rule at fault.
final class FuzzFindingsTests: XCTestCase {
    /// A Reshape target with two -1 entries trapped in the symbolic shape rule (a nil dim unwrapped).
    func testReshapeWithTwoInferredDimensionsIsAnError() throws {
        let node = Node(name: "reshape", opType: "Reshape", inputs: ["x", "shape"], outputs: ["y"])
        let graph = Graph(nodes: [node],
                          inputs: [ValueInfo(name: "x", type: TensorType(.float, [.symbol("n"), .known(4)]))],
                          outputs: [ValueInfo(name: "y", type: TensorType(.float, nil))],
                          initializers: ["shape": Tensor([Int64(-1), -1], shape: [2])])
        let inferred = try TypeInference.infer(graph, opset: 17)
        XCTAssertTrue(inferred.unknown.contains { $0.reason.contains("more than one -1") }, "\(inferred.unknown)")
        XCTAssertThrowsError(try Session(model: Model(graph: graph)).run(["x": Tensor(zeros: .float, shape: [2, 4])]))
    }

    /// A Reshape whose shape input declares a negative length trapped making fresh dims (0..<n).
    func testNegativeDeclaredRankIsUnknownNotATrap() throws {
        let node = Node(name: "reshape", opType: "Reshape", inputs: ["x", "shape"], outputs: ["y"])
        let graph = Graph(nodes: [node],
                          inputs: [ValueInfo(name: "x", type: TensorType(.float, known: [2, 4])),
                                   ValueInfo(name: "shape", type: TensorType(.int64, [.known(-3)]))],
                          outputs: [ValueInfo(name: "y", type: TensorType(.float, nil))])
        XCTAssertNil(try TypeInference.infer(graph, opset: 17).types["y"]?.shape)
    }

    /// `bench` on a model declaring a huge fixed input aborted making the random input.
    func testRandomInputIsWithinTheBudget() {
        MemoryBudget.setLimit(1 << 20)
        defer { MemoryBudget.setLimit(nil) }
        XCTAssertThrowsError(try Benchmark.randomTensor(.float, shape: [1, 3, 1 << 20, 1 << 20])) {
            XCTAssertTrue("\($0)".contains("memory budget"), "\($0)")
        }
        XCTAssertThrowsError(try Benchmark.randomTensor(.float, shape: [-1, 3]))
    }

    /// `inspect --plan --input-shape x=1x3x4000000000x4000000000` trapped counting Reshape's input
    /// elements (Int overflow); element counts saturate and Reshape names the input it cannot count.
    func testReshapeOfAnUncountableInputIsAnError() throws {
        XCTAssertEqual(Tensor.elementCount([1, 3, 4_000_000_000, 4_000_000_000]), .max)
        XCTAssertEqual(Tensor.elementCount([4_000_000_000, 4_000_000_000, 0]), 0)
        XCTAssertThrowsError(try OpRegistry.reshapeShape([1, 3, 4_000_000_000, 4_000_000_000], [1, -1], allowZero: false, "r")) {
            XCTAssertTrue("\($0)".contains("too many to count"), "\($0)")
        }
    }
}
