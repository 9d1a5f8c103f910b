import XCTest
import GraphIR
@testable import Runtime

final class BufferPoolTests: XCTestCase {
    func testPoolReusesReleasedBuffers() {
        BufferPool.installShared()
        var pointer: UnsafeMutableRawPointer?
        do {
            let t = Tensor(uninitialized: .float, shape: [1000, 37])
            pointer = t.storage.pointer
        }
        let again = Tensor(uninitialized: .float, shape: [1000, 37])
        XCTAssertEqual(again.storage.pointer, pointer)
    }

    func testSizeClassesCoverRequests() {
        for bytes in [1, 255, 256, 257, 1000, 4096, 5000, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let c = BufferPool.sizeClass(bytes)
            XCTAssertGreaterThanOrEqual(c, bytes)
            XCTAssertLessThanOrEqual(Double(c), Double(max(bytes, 256)) * 1.25 + 1)
        }
    }
}
