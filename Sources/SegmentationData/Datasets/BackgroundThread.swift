import Foundation

/// A thread of its own at a lower scheduling priority (nice +10), running jobs one after another.
/// The data loader prepares the next batch on it while a training step runs: the step's threads
/// then keep their cores (they preempt it), and the batch is made from the time they leave idle —
/// waits at the ends of parallel loops, serial stretches — instead of from theirs. A job on a shared
/// dispatch queue could not be niced: the queue's threads also run the kernels' parallel loops.
final class BackgroundThread: @unchecked Sendable {
    /// How much lower than the process's priority the thread runs (a nice increment).
    static let niceIncrement: Int32 = 10

    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var stopped = false

    init(name: String) {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    /// Runs `job` on the thread after the jobs before it.
    func async(_ job: @escaping () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Ends the thread once its queued jobs are done.
    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        BackgroundThread.lowerPriority()
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            if jobs.isEmpty { condition.unlock(); return }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }

    /// Lowers the calling thread's priority by `niceIncrement`. On Linux a thread's own id names it
    /// alone to setpriority (the process id would name the main thread); where that id cannot be read,
    /// or the call fails, the priority stays as it was.
    private static func lowerPriority() {
        var link = [CChar](repeating: 0, count: 64)
        let length = readlink("/proc/thread-self", &link, link.count - 1)   // "PID/task/TID"
        guard length > 0, let thread = String(cString: link).split(separator: "/").last.flatMap({ id_t($0) }) else { return }
        let which = __priority_which_t(PRIO_PROCESS.rawValue)
        errno = 0
        let current = getpriority(which, thread)
        guard errno == 0 else { return }
        _ = setpriority(which, thread, min(19, current + niceIncrement))
    }
}
