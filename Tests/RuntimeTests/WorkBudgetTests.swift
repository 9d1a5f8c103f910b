import Foundation
import XCTest
import GraphIR
@testable import Runtime

/// The work budget (`--max-work`): the planner sums the contractions' multiply-adds from their shapes
/// (counted here by hand) and refuses a plan above the budget before running it, naming the node.
final class WorkBudgetTests: XCTestCase {
    override func tearDown() { WorkBudget.setLimit(nil) }

    /// x [n, 8] · w [8, 16] → h; Conv over h seen as [1, 1, n, 16] with a 3×3 kernel (2 out channels);
    /// attention of q [1, 2, n, 4] over k, v [1, 2, 5, 4] / [1, 2, 5, 6].
    func model() -> Model {
        let nodes = [
            Node(name: "linear", opType: "MatMul", inputs: ["x", "w"], outputs: ["h"]),
            Node(name: "as_image", opType: "Reshape", inputs: ["h", "image_shape"], outputs: ["img"]),
            Node(name: "conv", opType: "Conv", inputs: ["img", "kernel"], outputs: ["c"],
                 attributes: ["pads": .ints([1, 1, 1, 1])]),
            Node(name: "attend", opType: OpType.attention, domain: fusedDomain, inputs: ["q", "k", "v"], outputs: ["o"],
                 attributes: ["scale": .float(0.5)]),
        ]
        let n = Dim.symbol("n")
        let graph = Graph(nodes: nodes,
                          inputs: [ValueInfo(name: "x", type: TensorType(.float, [n, .known(8)])),
                                   ValueInfo(name: "q", type: TensorType(.float, [.known(1), .known(2), n, .known(4)])),
                                   ValueInfo(name: "k", type: TensorType(.float, [1, 2, 5, 4].map { .known($0) })),
                                   ValueInfo(name: "v", type: TensorType(.float, [1, 2, 5, 6].map { .known($0) }))],
                          outputs: [ValueInfo(name: "c", type: TensorType(.float, nil)), ValueInfo(name: "o", type: TensorType(.float, nil))],
                          initializers: ["w": Tensor(zeros: .float, shape: [8, 16]),
                                         "image_shape": Tensor([Int64(1), 1, -1, 16], shape: [4]),
                                         "kernel": Tensor(zeros: .float, shape: [2, 1, 3, 3])])
        return Model(graph: graph, opsetImports: ["": 17, fusedDomain: 1])
    }

    func feeds(_ n: Int) -> [String: Tensor] {
        ["x": Tensor(zeros: .float, shape: [n, 8]), "q": Tensor(zeros: .float, shape: [1, 2, n, 4]),
         "k": Tensor(zeros: .float, shape: [1, 2, 5, 4]), "v": Tensor(zeros: .float, shape: [1, 2, 5, 6])]
    }

    func testEstimateCountsEachContraction() throws {
        let session = try Session(model: model(), options: SessionOptions(optimizingPasses: false))
        let n = 10
        let plan = try session.plan(for: feeds(n))
        let matMul = n * 16 * 8                 // each of n×16 outputs sums over 8
        let conv = (2 * n * 16) * (1 * 3 * 3)   // each of 2×n×16 outputs sums over 1 channel × 3×3
        let attention = 2 * n * 5 * (4 + 6)     // per head: Q·Kᵀ (n×5×4) and P·V (n×5×6)
        XCTAssertEqual(plan.estimatedWork.total, Double(matMul + conv + attention))
        XCTAssertTrue(plan.report().contains("work: about 5.2 K multiply-adds"), plan.report())
    }

    func testPlanAboveTheBudgetIsRefusedNamingTheNode() throws {
        let session = try Session(model: model(), options: SessionOptions(optimizingPasses: false))
        WorkBudget.setLimit(1_000_000)
        XCTAssertNoThrow(try session.run(feeds(10)))
        // n = 10000: MatMul 1.28 M, Conv 2.88 M, attention 1.0 M multiply-adds.
        XCTAssertThrowsError(try session.run(feeds(10_000))) { e in
            let m = "\(e)"
            for w in ["5.2 M multiply-adds", "Conv conv", "1.0 M", "--max-work"] { XCTAssertTrue(m.contains(w), "'\(w)' missing in: \(m)") }
        }
    }

    func testQuantitiesParse() {
        XCTAssertEqual(parseQuantity("500G", base: 1000), 500_000_000_000)
        XCTAssertEqual(parseQuantity("1.5t", base: 1000), 1_500_000_000_000)
        XCTAssertEqual(parseQuantity("300000", base: 1000), 300_000)
        for bad in ["", "0", "-1G", "G", "nan", "4GB", "1e30T"] { XCTAssertNil(parseQuantity(bad, base: 1000), bad) }
    }
}
