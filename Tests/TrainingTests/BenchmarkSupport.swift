import Foundation
import GraphIR

/// Shared pieces of this target's benchmarks (each gated by its own environment variable).
enum BenchHarness {
    enum Clock {
        /// CPU time of the calling thread: robust against other processes sharing the cores.
        case threadCPU
        /// Wall time: includes the work of the kernel's other threads.
        case wall
    }

    /// Milliseconds taken by the fastest of `repeats` runs of `body`, after one warm-up run.
    static func best(repeats: Int, clock: Clock, _ body: () throws -> Void) rethrows -> Double {
        func now() -> Double {
            switch clock {
            case .wall:
                return Double(DispatchTime.now().uptimeNanoseconds) / 1e6
            case .threadCPU:
                var t = timespec()
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
                return Double(t.tv_sec) * 1e3 + Double(t.tv_nsec) / 1e6
            }
        }
        try body()
        var best = Double.infinity
        for _ in 0..<repeats {
            let start = now()
            try body()
            best = min(best, now() - start)
        }
        return best
    }

    /// A float32 tensor of values in [-4, 4) from a fixed linear congruential sequence.
    static func random(_ shape: [Int]) -> Tensor {
        var s: UInt32 = 12345
        let t = Tensor(uninitialized: .float, shape: shape)
        let p = t.pointer(Float.self)
        for i in 0..<t.count { s = s &* 1664525 &+ 1013904223; p[i] = Float(s >> 8) / Float(1 << 24) * 8 - 4 }
        return t
    }
}

/// A benchmark class timed in thread CPU time: `time` prints "name  best ms (1 thread CPU)" with the
/// names padded to `nameWidth` columns.
protocol ThreadCPUBenchmark {
    var nameWidth: Int { get }
}

extension ThreadCPUBenchmark {
    func time(_ name: String, repeats: Int = 3, _ body: () throws -> Void) rethrows {
        let best = try BenchHarness.best(repeats: repeats, clock: .threadCPU, body)
        print(String(format: "%-\(nameWidth)@ %9.2f ms (1 thread CPU)", name as NSString, best))
    }

    func random(_ shape: [Int]) -> Tensor { BenchHarness.random(shape) }
}
