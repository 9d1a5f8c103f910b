import Foundation
import GraphIR
import Runtime

/// Which clock a timing reads.
enum Clock {
    /// CPU time of the calling thread: robust against other processes sharing the cores, so the
    /// right clock for single-threaded kernels on a busy machine.
    case threadCPU
    /// Wall time: includes the work of the kernel's other threads.
    case wall

    var milliseconds: Double {
        var t = timespec()
        clock_gettime(self == .threadCPU ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) * 1e3 + Double(t.tv_nsec) / 1e6
    }
}

/// Times kernels the same way throughout a suite: the fastest of `repeats` runs after one warm-up
/// run (which fills the buffer pool and starts OpenBLAS's threads), printed as
/// `name  best ms (how it was measured)`.
struct Timer {
    var clock: Clock
    /// The context the kernels run with; its thread count is part of each printed line.
    var context: ExecutionContext
    var repeats: Int
    /// Names are padded to this many columns so the times line up.
    var nameWidth: Int

    init(_ clock: Clock, threads: Int, repeats: Int, nameWidth: Int = 50) {
        self.clock = clock
        self.context = ExecutionContext(threads: threads)
        self.repeats = repeats
        self.nameWidth = nameWidth
    }

    /// Milliseconds of the fastest run, without printing.
    func best(repeats: Int? = nil, _ body: () throws -> Void) rethrows -> Double {
        try body()
        var best = Double.infinity
        for _ in 0..<(repeats ?? self.repeats) {
            let start = clock.milliseconds
            try body()
            best = min(best, clock.milliseconds - start)
        }
        return best
    }

    /// Times `body` and prints one line; `detail` turns the time into a rate (GFLOP/s, GB/s, …).
    func time(_ name: String, repeats: Int? = nil, detail: ((Double) -> String)? = nil,
              _ body: () throws -> Void) rethrows {
        let ms = try best(repeats: repeats, body)
        let how = clock == .threadCPU ? "1 thread CPU" : context.threads == 1 ? "1 thread, wall" : "\(context.threads) threads, wall"
        let rate = detail.map { "  " + $0(ms) } ?? ""
        print(name.padding(toLength: max(nameWidth, name.count), withPad: " ", startingAt: 0)
              + String(format: " %9.3f ms (", ms) + how + ")" + rate)
    }

    /// Runs one op with this suite's context.
    func op(_ opType: String, domain: String = "", _ inputs: [Tensor?], _ attributes: [String: Attribute] = [:],
            outputCount: Int = 1, opset: Int = 17) throws -> [Tensor] {
        try SingleOp.run(opType, domain: domain, inputs: inputs, attributes: attributes, outputCount: outputCount,
                         opset: opset, context: context)
    }
}

/// A float32 tensor of seeded values in [-1, 1) (the runtime's own benchmark data).
func random(_ shape: [Int], seed: UInt64 = 42) throws -> Tensor {
    try Benchmark.randomTensor(.float, shape: shape, seed: seed)
}

/// An int64 vector holding `values` (shapes, axes, starts/ends).
func ints(_ values: [Int]) -> Tensor { Tensor(values.map { Int64($0) }, shape: [values.count]) }
