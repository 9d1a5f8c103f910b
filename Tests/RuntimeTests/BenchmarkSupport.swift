import Foundation
import GraphIR

/// Shared pieces of this target's benchmarks (each gated by its own environment variable).
enum BenchHarness {
    /// Milliseconds of the calling thread's CPU time (robust against other processes sharing the
    /// cores) taken by the fastest of `repeats` runs of `body`, after one warm-up run.
    static func bestThreadCPU(repeats: Int, _ body: () throws -> Void) rethrows -> Double {
        func milliseconds() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) * 1e3 + Double(t.tv_nsec) / 1e6
        }
        try body()
        return try (0..<repeats).map { _ -> Double in
            let start = milliseconds()
            try body()
            return milliseconds() - start
        }.min() ?? .infinity
    }

    /// A float32 tensor of values in [-4, 4) from a fixed linear congruential sequence.
    static func random(_ shape: [Int]) -> Tensor {
        var s: UInt32 = 12345
        let v = (0..<shape.reduce(1, *)).map { _ -> Float in s = s &* 1664525 &+ 1013904223; return Float(s >> 8) / Float(1 << 24) * 8 - 4 }
        return Tensor(v, shape: shape)
    }
}
