import Foundation
import XCTest
import GraphIR
@testable import Runtime

/// The memory budget: a plan above it is one error naming the node, the tensor, the bytes and the
/// budget — before anything is allocated; constant folding never computes a huge constant.
final class MemoryBudgetTests: XCTestCase {
    override func tearDown() { MemoryBudget.setLimit(nil) }

    /// ConstantOfShape(shape) → y, with `shape` an initializer: a model of a few dozen bytes.
    func constantOfShapeModel(_ dims: [Int64]) -> Model {
        let node = Node(name: "fill", opType: "ConstantOfShape", inputs: ["shape"], outputs: ["y"])
        return Model(graph: Graph(nodes: [node], outputs: [ValueInfo(name: "y", type: TensorType(.float, nil))],
                                  initializers: ["shape": Tensor(dims, shape: [dims.count])]))
    }

    func assertOverBudget(_ body: () throws -> Void, mentions words: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { e in
            let m = "\(e)"
            for w in words + ["memory budget", "--max-memory"] { XCTAssertTrue(m.contains(w), "'\(w)' missing in: \(m)", file: file, line: line) }
        }
    }

    /// `ConstantOfShape([100000, 100000])` (40 GB) aborted inspect and run; now compiling and type
    /// inference leave it alone, and running it is refused by the planner.
    func testHugeConstantIsNeitherFoldedNorAllocated() throws {
        let model = constantOfShapeModel([100_000, 100_000])
        let session = try Session(model: model)
        XCTAssertEqual(session.graph.nodes.map(\.opType), ["ConstantOfShape"], "not folded at compile time")
        let inferred = try TypeInference.infer(model.graph, opset: 17)
        XCTAssertEqual(inferred.types["y"]?.knownShape, [100_000, 100_000])
        XCTAssertNil(inferred.constants["y"])
        MemoryBudget.setLimit(1 << 30)
        assertOverBudget({ _ = try session.run([:]) }, mentions: ["ConstantOfShape", "'y'", "float32[100000×100000]", "37.3 GB", "1.0 GB"])
    }

    func testDimensionsWhoseProductOverflowsAreRefused() throws {
        let session = try Session(model: constantOfShapeModel([1 << 40, 1 << 40]))
        assertOverBudget({ _ = try session.run([:]) }, mentions: ["ConstantOfShape", "more bytes than can be counted"])
    }

    /// Constants below the fold cap still fold; a plan whose peak is 2 MB runs under a 4 MB budget
    /// and not under a 1 MB one.
    func testBudgetIsTheLimit() throws {
        XCTAssertEqual(try Session(model: constantOfShapeModel([512, 1024])).graph.nodes.count, 0, "small constants fold")
        let add = Node(name: "twice", opType: "Add", inputs: ["x", "x"], outputs: ["y"])
        let graph = Graph(nodes: [add], inputs: [ValueInfo(name: "x", type: TensorType(.float, [.symbol("n")]))],
                          outputs: [ValueInfo(name: "y", type: TensorType(.float, nil))])
        let session = try Session(model: Model(graph: graph))
        let x = Tensor(zeros: .float, shape: [512 * 1024])
        MemoryBudget.setLimit(4 << 20)
        XCTAssertEqual(try session.run(["x": x])["y"]?.shape, [512 * 1024])
        MemoryBudget.setLimit(1 << 20)
        assertOverBudget({ _ = try Session(model: Model(graph: graph)).run(["x": x]) }, mentions: ["twice", "'y'", "2.0 MB", "1.0 MB"])
    }

    /// A shape the planner cannot know (it comes from float data through a Cast) is checked when the
    /// step runs, before its kernel allocates.
    func testDataDependentShapeIsCheckedBeforeTheKernelRuns() throws {
        let nodes = [Node(name: "cast", opType: "Cast", inputs: ["x"], outputs: ["s"], attributes: ["to": .int(7)]),
                     Node(name: "fill", opType: "ConstantOfShape", inputs: ["s"], outputs: ["y"])]
        let graph = Graph(nodes: nodes, inputs: [ValueInfo(name: "x", type: TensorType(.float, known: [2]))],
                          outputs: [ValueInfo(name: "y", type: TensorType(.float, nil))])
        let session = try Session(model: Model(graph: graph))
        MemoryBudget.setLimit(64 << 20)
        XCTAssertEqual(try session.run(["x": Tensor([Float(3), 4], shape: [2])])["y"]?.shape, [3, 4])
        assertOverBudget({ _ = try session.run(["x": Tensor([Float(100_000), 100_000], shape: [2])]) },
                         mentions: ["fill", "'y'", "float32[100000×100000]", "37.3 GB"])
    }

    /// Range(0, 2^28, 1) — a 121-byte model — made `inspect` take 2 GB: its shape rule built the range
    /// to count it. Now it is counted; a span overflowing Int is an error, not a trap.
    func testRangeIsCountedNotFilled() throws {
        func rangeModel(_ limit: Int64, start: Int64 = 0) -> Model {
            let node = Node(name: "r", opType: "Range", inputs: ["a", "b", "c"], outputs: ["y"])
            return Model(graph: Graph(nodes: [node], outputs: [ValueInfo(name: "y", type: TensorType(.int64, nil))],
                                      initializers: ["a": Tensor([start], shape: []), "b": Tensor([limit], shape: []), "c": Tensor([Int64(1)], shape: [])]))
        }
        let big = rangeModel(1 << 28)
        XCTAssertEqual(try TypeInference.infer(big.graph, opset: 17).types["y"]?.knownShape, [1 << 28])
        let session = try Session(model: big)
        XCTAssertEqual(session.graph.nodes.count, 1, "not folded")
        MemoryBudget.setLimit(256 << 20)
        assertOverBudget({ _ = try session.run([:]) }, mentions: ["Range", "int64[268435456]", "2.0 GB"])
        XCTAssertThrowsError(try Session(model: rangeModel(.max, start: -2)).run([:])) { XCTAssertTrue("\($0)".contains("too large"), "\($0)") }
        XCTAssertEqual(try Session(model: rangeModel(5, start: 2)).run([:])["y"]?.toArray(Int64.self), [2, 3, 4])
    }

    func testNegativeDimensionIsNamed() throws {
        XCTAssertThrowsError(try Session(model: constantOfShapeModel([-1, 4])).run([:])) {
            XCTAssertTrue("\($0)".contains("'y' would have the shape [-1, 4], with a negative dimension"), "\($0)")
        }
    }

    func testSizesParse() {
        XCTAssertEqual(MemoryBudget.parse("4G"), 4 << 30)
        XCTAssertEqual(MemoryBudget.parse("512m"), 512 << 20)
        XCTAssertEqual(MemoryBudget.parse("1.5GB"), 3 << 29)
        XCTAssertEqual(MemoryBudget.parse("300000"), 300_000)
        for bad in ["", "0", "-1G", "G", "nan", "inf", "1e30T", "4 GiB"] { XCTAssertNil(MemoryBudget.parse(bad), bad) }
        XCTAssertGreaterThanOrEqual(MemoryBudget.limit, MemoryBudget.minimumDefault)
    }
}
