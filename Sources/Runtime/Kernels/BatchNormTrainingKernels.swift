import Foundation
import GraphIR
import CKernels

// CPU kernels of BatchNormTraining: the schemas are in Ops/BatchNormTraining.swift.
extension Normalization {
    /// Per-channel mean and biased variance over the batch and spatial axes (two passes, sums in Double),
    /// and the number of values per channel. `x` is float32 or float64 (callers widen half types). With
    /// `processes` (SyncBatchNorm) the batch is every process's batch together: the per-channel sums and
    /// counts, then the sums of squared deviations from the global mean, are summed over the processes —
    /// the same two passes over the global batch.
    static func batchStatistics(_ x: Tensor, label: String, across processes: (any CrossProcessSum)? = nil,
                                context: ExecutionContext) throws -> (mean: [Double], variance: [Double], count: Double) {
        let shape = x.shape
        let n = shape[0], c = shape[1], spatial = NormOpsSupport.product(shape, 2..<shape.count)
        let wide = x.dataType == .double
        guard wide || x.dataType == .float else { throw SegFormerError.unsupported("\(label): element type \(x.dataType)") }
        let floats = wide ? nil : Optional(x.pointer(Float.self)), doubles = wide ? Optional(x.pointer(Double.self)) : nil
        var count = Double(n * spatial)
        var mean = channelTotals(n: n, c: c, spatial: spatial, context: context) { p, out in
            if let floats { out[0] = ck_sum_f64(floats + p * spatial, spatial) } else { out[0] = planeSum(doubles! + p * spatial, spatial) }
        }[0]
        if let processes {
            var sums = mean + [count]
            try processes.allReduceSum(&sums)
            mean = Array(sums.prefix(c))
            count = sums[c]
        }
        mean = mean.map { $0 / count }
        var variance = channelTotals(n: n, c: c, spatial: spatial, context: context) { p, out in
            let m = mean[p % c]
            if let floats { out[0] = ck_squared_deviations_f64(floats + p * spatial, spatial, m) }
            else { out[0] = planeSquaredDeviations(doubles! + p * spatial, spatial, m) }
        }[0]
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
        let (mean, variance, count) = try batchStatistics(x, label: label, across: processes, context: context)
        let inv = variance.map { 1 / ($0 + epsilon).squareRoot() }
        let dx = Tensor(uninitialized: x.dataType, shape: shape)
        func run<T: BinaryFloatingPoint>(_: T.Type) throws -> (dS: [Double], dB: [Double]) {
            let xs = x.pointer(T.self), gs = dy.pointer(T.self), ds = dx.pointer(T.self)
            // Pass 1: per-channel Σ dY and Σ dY·x̂.
            let sums = batchNormChannelSums(xs, gs, mean: mean, n: n, c: c, spatial: spatial, context: context)
            let dB = sums.dy, dS = (0..<c).map { sums.dyCentred[$0] * inv[$0] }
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
                    if T.self == Float.self {
                        ck_batch_norm_grad_input(asFloats(src), asFloats(g), asFloats(d), spatial, k, mb, m, iv, ms)
                    } else {
                        for i in 0..<spatial { d[i] = T(k * (Double(g[i]) - mb - (Double(src[i]) - m) * iv * ms)) }
                    }
                }
            }
            return (dS, dB)
        }
        let (dS, dB) = x.dataType == .double ? try run(Double.self) : try run(Float.self)
        func vec(_ v: [Double]) -> Tensor {
            let t = x.dataType == .double ? Tensor(v, shape: [c]) : Tensor(v.map { Float($0) }, shape: [c])
            return NormOpsSupport.narrow(t, to: scaleT.dataType)
        }
        return [NormOpsSupport.narrow(dx, to: x0.dataType), vec(dS), vec(dB)]
    }

    /// Per channel: Σ dY and Σ dY·(x − mean[c]) (the product in T, the sums in Double); `alsoPerPlane(p)`
    /// runs on each (n, c) plane in the same parallel pass. Shared by both BatchNorm gradients.
    static func batchNormChannelSums<T: BinaryFloatingPoint>(_ xs: UnsafeMutablePointer<T>, _ gs: UnsafeMutablePointer<T>,
                                                             mean: [Double], n: Int, c: Int, spatial: Int, context: ExecutionContext,
                                                             alsoPerPlane: (Int) -> Void = { _ in }) -> (dy: [Double], dyCentred: [Double]) {
        let sums = channelTotals(n: n, c: c, spatial: spatial, width: 2, context: context) { p, out in
            alsoPerPlane(p)
            let m = T(mean[p % c]), src = xs + p * spatial, g = gs + p * spatial
            if T.self == Float.self {
                ck_batch_norm_grad_sums(asFloats(src), asFloats(g), spatial, Float(m), out, out + 1)
            } else {
                var sg = 0.0, sgx = 0.0
                for i in 0..<spatial { sg += Double(g[i]); sgx += Double(g[i] * (src[i] - m)) }
                out[0] = sg; out[1] = sgx
            }
        }
        return (sums[0], sums[1])
    }

    /// `width` sums per channel: `plane(p, out)` writes plane p's `width` partial sums, for every (n, c)
    /// plane in parallel; each channel's planes are then added in batch order — a fixed order, so the
    /// totals do not depend on the thread count or timing.
    static func channelTotals(n: Int, c: Int, spatial: Int, width: Int = 1, context: ExecutionContext,
                              _ plane: (Int, UnsafeMutablePointer<Double>) -> Void) -> [[Double]] {
        var partial = [Double](repeating: 0, count: n * c * width)
        partial.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            context.parallelFor(n * c, minimumPerChunk: max(1, 16384 / max(spatial, 1))) { a, b in
                for p in a..<b { plane(p, base + p * width) }
            }
        }
        var totals = [[Double]](repeating: [Double](repeating: 0, count: c), count: width)
        for p in 0..<(n * c) {
            for w in 0..<width { totals[w][p % c] += partial[p * width + w] }
        }
        return totals
    }

    private static func planeSum(_ x: UnsafePointer<Double>, _ count: Int) -> Double {
        var s = 0.0
        for k in 0..<count { s += x[k] }
        return s
    }

    private static func planeSquaredDeviations(_ x: UnsafePointer<Double>, _ count: Int, _ mean: Double) -> Double {
        var v = 0.0
        for k in 0..<count { let e = x[k] - mean; v += e * e }
        return v
    }

    /// A generic kernel's float32 pointer, for the CKernels routines.
    @inline(__always)
    private static func asFloats<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
    }
}
