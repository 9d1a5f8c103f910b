import Foundation
import GraphIR

/// Latency measurement: warm-up runs, then timed runs; reports median, min and peak memory.
public struct Benchmark {
    public struct Result: Sendable, CustomStringConvertible {
        public var timesMilliseconds: [Double]
        public var peakMegabytes: Double
        public var median: Double {
            let s = timesMilliseconds.sorted()
            guard !s.isEmpty else { return 0 }
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        public var min: Double { timesMilliseconds.min() ?? 0 }
        public var description: String {
            String(format: "latency median %.1f ms, min %.1f ms, peak %.0f MB", median, min, peakMegabytes)
        }
    }

    /// Peak resident set size of this process so far, in MB.
    public static func peakResidentMegabytes() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024   // Linux reports kilobytes
    }

    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) * 1e3 + Double(ts.tv_nsec) / 1e6
    }

    /// Times `body` `iterations` times after `warmup` untimed runs.
    public static func measure(warmup: Int = 2, iterations: Int, progress: ((Int, Double) -> Void)? = nil,
                               beforeTimed: () -> Void = {}, _ body: () throws -> Void) rethrows -> Result {
        for _ in 0..<warmup { try body() }
        beforeTimed()
        var times: [Double] = []
        for i in 0..<iterations {
            let t0 = now()
            try body()
            let dt = now() - t0
            times.append(dt)
            progress?(i, dt)
        }
        return Result(timesMilliseconds: times, peakMegabytes: peakResidentMegabytes())
    }

    /// A tensor of the given type and shape filled with seeded pseudo-random values (floats in
    /// [-1, 1), integers in [0, 10)), for benchmarks and smoke runs.
    public static func randomTensor(_ dataType: DataType, shape: [Int], seed: UInt64 = 42) throws -> Tensor {
        var state = seed &* 0x9E3779B97F4A7C15 | 1
        func next() -> UInt64 { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state }
        // A fixed-shape input's declared dims decide this size, whatever they are.
        guard shape.allSatisfy({ $0 >= 0 }) else { throw SegFormerError.invalid("random input: negative dimension in \(shape)") }
        try MemoryBudget.require(Tensor.checkedByteCount(shape, dataType), for: "a random \(dataType) input of shape \(shape)")
        let n = Tensor.elementCount(shape)
        switch dataType {
        case .float:
            let t = Tensor(uninitialized: .float, shape: shape)
            let p = t.pointer(Float.self)
            for i in 0..<n { p[i] = Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
            return t
        case .int64:
            let t = Tensor(uninitialized: .int64, shape: shape)
            let p = t.pointer(Int64.self)
            for i in 0..<n { p[i] = Int64(next() % 10) }
            return t
        default:
            throw SegFormerError.unsupported("random inputs of element type \(dataType)")
        }
    }
}
