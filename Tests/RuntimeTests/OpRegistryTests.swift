import XCTest
import GraphIR
@testable import Runtime

/// The registry is exactly the families it lists, each op once, each op with a shape rule.
final class OpRegistryTests: XCTestCase {
    func testNoOpIsRegisteredTwice() {
        XCTAssertEqual(OpRegistry.duplicateRegistrations, [])
        let listed = OpRegistry.families.reduce(0) { $0 + $1.schemas.count }
        XCTAssertEqual(OpRegistry.schemas.count, listed)
    }

    func testEveryFamilyHasOps() {
        for family in OpRegistry.families { XCTAssertFalse(family.schemas.isEmpty, family.name) }
    }

    /// Type inference and the planner rely on every op's shape rule (Upsample, opset ≤ 9, predates it).
    func testEveryOpHasAShapeRule() {
        let missing = OpRegistry.schemas.values.filter { $0.inferTypes == nil }.map(\.opType).sorted()
        XCTAssertEqual(missing, ["SplitGrad", "Upsample"])
    }
}
