import XCTest
@testable import GraphIR

final class TensorTests: XCTestCase {
    func testReshapeSharesStorageAndCopyDoesNot() {
        let t = Tensor([Float(1), 2, 3, 4, 5, 6], shape: [2, 3])
        let r = t.reshaped([3, 2])
        XCTAssertEqual(r.shape, [3, 2])
        XCTAssertTrue(r.storage === t.storage)
        let c = t.copy()
        XCTAssertFalse(c.storage === t.storage)
        XCTAssertTrue(c.bitwiseEqual(t))
    }

    func testIntegersWidenEveryIntegerType() throws {
        XCTAssertEqual(try Tensor([Int32(-2), 7], shape: [2]).integers(), [-2, 7])
        XCTAssertEqual(try Tensor([UInt8(255)], shape: [1]).integers(), [255])
        XCTAssertThrowsError(try Tensor([Float(1)], shape: [1]).integers())
    }

    func testBFloat16RoundsToNearestEven() {
        XCTAssertEqual(BFloat16(Float(1.0)).bits, 0x3F80)
        // 1 + 2^-8 is exactly half-way between two bfloat16 values: ties go to the even one (1.0).
        XCTAssertEqual(BFloat16(Float(1.0 + 1.0 / 256)).float, 1.0)
        XCTAssertEqual(BFloat16(Float(1.0 + 3.0 / 256)).float, 1.0 + 4.0 / 256)
        XCTAssertTrue(BFloat16(Float.nan).float.isNaN)
    }
}
