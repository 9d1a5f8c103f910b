import Foundation

/// A thread of its own at the lowest scheduling priority (Linux's SCHED_IDLE; nice +10 where that is
/// refused), running jobs one after another. The data loader prepares the next batches on it while a
/// training step runs: the step's threads then keep their cores, and the batches are made from the
/// time they leave idle — waits at the ends of parallel loops, serial stretches — instead of from
/// theirs. (At nice +10 the scheduler still gave it a share of a busy core, about a tenth by weight,
/// and a parallel loop waits for its slowest thread.) A job on a shared dispatch queue could not be
/// lowered: the queue's threads also run the kernels' parallel loops.
final class BackgroundThread: @unchecked Sendable {
    /// How much lower than the process's priority the thread runs without SCHED_IDLE (a nice increment).
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

    /// Lowers the calling thread's priority: Linux's SCHED_IDLE class (the thread runs only on a core
    /// nothing else wants), or where that fails nice +`niceIncrement`. On Linux a thread's own id names
    /// it alone to sched_setscheduler and setpriority (the process id would name the main thread);
    /// where that id cannot be read, or both calls fail, the priority stays.
    private static func lowerPriority() {
        var link = [CChar](repeating: 0, count: 64)
        let length = readlink("/proc/thread-self", &link, link.count - 1)   // "PID/task/TID"
        guard length > 0, let thread = String(cString: link).split(separator: "/").last.flatMap({ id_t($0) }) else { return }
        var parameters = sched_param(sched_priority: 0)
        if sched_setscheduler(pid_t(thread), schedIdle, &parameters) == 0 { return }
        let which = __priority_which_t(PRIO_PROCESS.rawValue)
        errno = 0
        let current = getpriority(which, thread)
        guard errno == 0 else { return }
        _ = setpriority(which, thread, min(19, current + niceIncrement))
    }

    /// Linux's SCHED_IDLE (a GNU extension the C importer does not expose).
    private static let schedIdle: Int32 = 5
}
