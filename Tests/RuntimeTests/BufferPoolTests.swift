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

    /// A miss evicts cached buffers of other classes while the pool would hold more than its peak in
    /// use plus the slack; within the slack they stay cached.
    func testHeldBytesStayWithinThePeakInUsePlusSlack() {
        for (slack, expectedCached) in [(0, 0), (100 << 20, 2 << 20)] {
            let pool = BufferPool()
            pool.slackBytes = slack
            let a = pool.allocate(bytes: 2 << 20)
            pool.release(a.pointer, capacity: a.capacity)
            let b = pool.allocate(bytes: 3 << 20)   // another size class: a miss
            let s = pool.statistics
            XCTAssertEqual(s.liveBytes, 3 << 20, "slack \(slack)")
            XCTAssertEqual(s.cachedBytes, expectedCached, "slack \(slack)")
            XCTAssertEqual(s.peakHeldBytes, (3 << 20) + expectedCached, "slack \(slack)")
            pool.release(b.pointer, capacity: b.capacity)
            pool.trim()
            XCTAssertEqual(pool.statistics.cachedBytes, 0)
        }
    }
}
