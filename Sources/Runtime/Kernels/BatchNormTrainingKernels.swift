import Foundation
import GraphIR

// CPU kernels of BatchNormTraining: the schemas are in Ops/BatchNormTraining.swift.
extension Normalization {
    /// Per-channel mean and biased variance over the batch and spatial axes (two passes, in Double), and
    /// the number of values per channel. With `processes` (SyncBatchNorm) the batch is every process's
    /// batch together: the per-channel sums and counts, then the sums of squared deviations from the
    /// global mean, are summed over the processes — the same two passes over the global batch.
    static func batchStatistics(_ x: Tensor, label: String, across processes: (any CrossProcessSum)? = nil) throws
        -> (mean: [Double], variance: [Double], count: Double) {
        let shape = x.shape
        let n = shape[0], c = shape[1], spatial = NormOpsSupport.product(shape, 2..<shape.count)
        let xs = try x.doubles()
        var count = Double(n * spatial)
        var mean = [Double](repeating: 0, count: c), variance = [Double](repeating: 0, count: c)
        for ch in 0..<c {
            var s = 0.0
            for b in 0..<n { let base = (b * c + ch) * spatial; for k in 0..<spatial { s += xs[base + k] } }
            mean[ch] = s
        }
        if let processes {
            var sums = mean + [count]
            try processes.allReduceSum(&sums)
            mean = Array(sums.prefix(c))
            count = sums[c]
        }
        for ch in 0..<c {
            let m = mean[ch] / count
            var v = 0.0
            for b in 0..<n { let base = (b * c + ch) * spatial; for k in 0..<spatial { let e = xs[base + k] - m; v += e * e } }
            mean[ch] = m
            variance[ch] = v
        }
        if let processes { try processes.allReduceSum(&variance) }
        return (mean, variance.map { $0 / count }, count)
    }

    /// With `processes` (SyncBatchNorm, as PyTorch's): the statistics are the global batch's, and dX needs
    /// Σ dY and Σ dY·x̂ over the global batch, so those two per-channel sums are summed over the processes;
    /// dScale and dB stay this process's own (the data-parallel step sums the parameter gradients).
    static func batchNormTrainingGrad(_ dy0: Tensor, _ x0: Tensor, _ scaleT: Tensor, epsilon: Double, label: String,
                                      across processes: (any CrossProcessSum)? = nil,
                                      context: ExecutionContext) throws -> [Tensor] {
        guard x0.dataType.isFloatingPoint else { throw SegFormerError.unsupported("\(label): element type \(x0.dataType)") }
        guard x0.rank >= 2, dy0.shape == x0.shape else {
            throw SegFormerError.invalid("\(label): gradient shape \(dy0.shape) and input shape \(x0.shape) must agree, rank ≥ 2")
        }
        let shape = x0.shape
        let n = shape[0], c = shape[1], spatial = NormOpsSupport.product(shape, 2..<shape.count)
        let scale = try NormOpsSupport.doubles(scaleT, label)
        guard scale.count == c else { throw SegFormerError.invalid("\(label): scale has \(scale.count) elements for \(c) channels") }
        let x = x0.dataType == .double ? x0 : NormOpsSupport.widenToFloat(x0)
        let dy = dy0.dataType == .double ? dy0 : NormOpsSupport.widenToFloat(dy0)
        let (mean, variance, count) = try batchStatistics(x, label: label, across: processes)
        let inv = variance.map { 1 / ($0 + epsilon).squareRoot() }
        let dx = Tensor(uninitialized: x.dataType, shape: shape)
        var dS = [Double](repeating: 0, count: c), dB = [Double](repeating: 0, count: c)
        func run<T: BinaryFloatingPoint>(_: T.Type) throws {
            let xs = x.pointer(T.self), gs = dy.pointer(T.self), ds = dx.pointer(T.self)
            // Pass 1: per-channel Σ dY and Σ dY·x̂ (plane sums combined in a fixed order).
            let sums = batchNormPlaneSums(xs, gs, mean: mean, n: n, c: c, spatial: spatial, context: context)
            for p in 0..<(n * c) { dB[p % c] += sums[2 * p]; dS[p % c] += sums[2 * p + 1] * inv[p % c] }
            var globalB = dB, globalS = dS
            if let processes {
                var both = dB + dS
                try processes.allReduceSum(&both)
                globalB = Array(both.prefix(c))
                globalS = Array(both.suffix(c))
            }
            // Pass 2: dX.
            context.parallelFor(n * c, minimumPerChunk: max(1, 16384 / max(spatial, 1))) { a, b in
                for p in a..<b {
                    let ch = p % c
                    let k = scale[ch] * inv[ch], mb = globalB[ch] / count, ms = globalS[ch] / count, m = mean[ch], iv = inv[ch]
                    let src = xs + p * spatial, g = gs + p * spatial, d = ds + p * spatial
                    for i in 0..<spatial { d[i] = T(k * (Double(g[i]) - mb - (Double(src[i]) - m) * iv * ms)) }
                }
            }
        }
        if x.dataType == .double { try run(Double.self) } else { try run(Float.self) }
        func vec(_ v: [Double]) -> Tensor {
            let t = x.dataType == .double ? Tensor(v, shape: [c]) : Tensor(v.map { Float($0) }, shape: [c])
            return NormOpsSupport.narrow(t, to: scaleT.dataType)
        }
        return [NormOpsSupport.narrow(dx, to: x0.dataType), vec(dS), vec(dB)]
    }

    /// Per (n, c) plane of x and dY: Σ dY and Σ dY·(x − mean[c]), as pairs (plane p at 2p, 2p + 1);
    /// `alsoPerPlane(p)` runs on each plane in the same parallel pass. Shared by both BatchNorm gradients.
    static func batchNormPlaneSums<T: BinaryFloatingPoint>(_ xs: UnsafeMutablePointer<T>, _ gs: UnsafeMutablePointer<T>,
                                                          mean: [Double], n: Int, c: Int, spatial: Int, context: ExecutionContext,
                                                          alsoPerPlane: (Int) -> Void = { _ in }) -> [Double] {
        var sums = [Double](repeating: 0, count: 2 * n * c)
        sums.withUnsafeMutableBufferPointer { sums in
            let sp = sums.baseAddress!
            context.parallelFor(n * c, minimumPerChunk: max(1, 16384 / max(spatial, 1))) { a, b in
                for p in a..<b {
                    alsoPerPlane(p)
                    let m = T(mean[p % c]), src = xs + p * spatial, g = gs + p * spatial
                    var sg = 0.0, sgx = 0.0
                    for i in 0..<spatial { sg += Double(g[i]); sgx += Double(g[i] * (src[i] - m)) }
                    sp[2 * p] = sg; sp[2 * p + 1] = sgx
                }
            }
        }
        return sums
    }
}
