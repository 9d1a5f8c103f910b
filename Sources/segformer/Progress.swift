import Foundation

/// Progress of a long pass over images (evaluation, a training run's validation) as lines on stderr —
/// stdout keeps the results — at most every few seconds, with the rate and the time left.
final class ProgressLine: @unchecked Sendable {
    let label: String
    let interval: Double
    private var started = Date()
    private var lastPrinted = Date.distantPast
    private let lock = NSLock()

    init(_ label: String, every interval: Double = 5) {
        self.label = label
        self.interval = interval
    }

    /// Call after each image; prints when the interval has passed and at the last image.
    func update(_ done: Int, _ total: Int) {
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        if done <= 1 { started = now.addingTimeInterval(-1e-3) }
        guard done == total || now.timeIntervalSince(lastPrinted) >= interval else { return }
        lastPrinted = now
        let elapsed = now.timeIntervalSince(started)
        let rate = Double(done) / max(elapsed, 1e-3)
        let left = Int(Double(total - done) / max(rate, 1e-9))
        printErr(String(format: "%@ %d/%d images, %.1f img/s, %dm%02ds left", label, done, total, rate, left / 60, left % 60))
    }
}
