import Foundation
import GraphIR

// BatchNormalization on batch statistics, as PyTorch trains BatchNorm2d (which nodes are in training
// mode: `BatchNormMode` in GraphIR):
// - BatchNormTraining (training domain): the op a training session runs in their place. Same inputs,
//   attributes and outputs, but running_var moves towards the batch variance with Bessel's correction
//   (PyTorch's rule: ×M/(M−1) for M values per channel) where ONNX's text uses the biased one.
//   PyTorch made the export, so its rule is the truth when training; plain ONNX runs keep ONNX's rule.
// - BatchNormTrainingGrad (training domain): (dY, X, scale) → (dX, dScale, dB), the batch statistics
//   recomputed from X exactly as the forward computes them. With x̂ = (x − μ)·σ⁻¹ over M values:
//     dB = Σ dY,  dScale = Σ dY·x̂,  dX = scale·σ⁻¹ · (dY − dB/M − x̂ · dScale/M).

extension OpRegistry {
    static let batchNormTrainingOps: [OpSchema] = [
        OpSchema("BatchNormTraining", domain: trainingDomain, inputs: 5...5, outputs: 1...5,
                 inferTypes: { ctx in
                     guard let t = ctx.type(0) else { return [TensorType?](repeating: nil, count: ctx.node.outputs.count) }
                     let c: Dim? = (t.shape?.count ?? 0) >= 2 ? t.shape![1] : nil
                     return [t] + [TensorType?](repeating: TensorType(t.dataType, c.map { [$0] }), count: ctx.node.outputs.count - 1)
                 },
                 makeKernel: { node, _ in
                     let eps = Double(try node.float("epsilon", default: 1e-5))
                     let momentum = Double(try node.float("momentum", default: 0.9))
                     let label = node.label, outCount = node.outputs.count
                     return ClosureKernel { inputs, context in
                         try Normalization.batchNorm(inputs, epsilon: eps, momentum: momentum, training: true, outputs: outCount,
                                                     unbiasedRunningVariance: true, label: label, context: context)
                     }
                 }).withGradient(batchNormTrainingGradient),
        OpSchema("BatchNormTrainingGrad", domain: trainingDomain, inputs: 3...3, outputs: 1...3,
                 inferTypes: { ctx in [ctx.type(1), ctx.type(2), ctx.type(2)] },
                 makeKernel: { node, _ in
                     let eps = Double(try node.float("epsilon", default: 1e-5))
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         try Normalization.batchNormTrainingGrad(try inputs.required(0), try inputs.required(1),
                                                                 try inputs.required(2), epsilon: eps, label: label, context: context)
                     }
                 }),
    ]

    /// The rule of BatchNormalization in training mode and of BatchNormTraining. The running
    /// statistics are state, not functions the loss differentiates: no gradient flows through them.
    static let batchNormTrainingGradient: GradientRule = { ctx in
        if ctx.outputGradients.dropFirst().contains(where: { $0 != nil }) {
            throw SegFormerError.unsupported("\(ctx.node.label): gradient through BatchNormalization's running-statistics outputs")
        }
        let attrs: [String: Attribute] = ["epsilon": .float(try ctx.node.float("epsilon", default: 1e-5))]
        let outs = ctx.builder.add("BatchNormTrainingGrad", domain: trainingDomain,
                                   [try ctx.gradient(), ctx.input(0), ctx.input(1)], attributes: attrs, outputs: 3)
        return [ctx.needs(0) ? outs[0] : nil, ctx.needs(1) ? outs[1] : nil, ctx.needs(2) ? outs[2] : nil, nil, nil]
    }
}

extension Normalization {
    /// Per-channel mean and biased variance over the batch and spatial axes (two passes, in Double).
    static func batchStatistics(_ x: Tensor, label: String) throws -> (mean: [Double], variance: [Double]) {
        let shape = x.shape
        let n = shape[0], c = shape[1], spatial = NormOpsSupport.product(shape, 2..<shape.count)
        let xs = try x.doubles()
        let count = Double(n * spatial)
        var mean = [Double](repeating: 0, count: c), variance = [Double](repeating: 0, count: c)
        for ch in 0..<c {
            var s = 0.0
            for b in 0..<n { let base = (b * c + ch) * spatial; for k in 0..<spatial { s += xs[base + k] } }
            let m = s / count
            var v = 0.0
            for b in 0..<n { let base = (b * c + ch) * spatial; for k in 0..<spatial { let e = xs[base + k] - m; v += e * e } }
            mean[ch] = m
            variance[ch] = v / count
        }
        return (mean, variance)
    }

    static func batchNormTrainingGrad(_ dy0: Tensor, _ x0: Tensor, _ scaleT: Tensor, epsilon: Double, label: String,
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
        let (mean, variance) = try batchStatistics(x, label: label)
        let inv = variance.map { 1 / ($0 + epsilon).squareRoot() }
        let count = Double(n * spatial)
        let dx = Tensor(uninitialized: x.dataType, shape: shape)
        var dS = [Double](repeating: 0, count: c), dB = [Double](repeating: 0, count: c)
        func run<T: BinaryFloatingPoint>(_: T.Type) {
            let xs = x.pointer(T.self), gs = dy.pointer(T.self), ds = dx.pointer(T.self)
            // Pass 1: per-channel Σ dY and Σ dY·x̂ (plane sums combined in a fixed order).
            let sums = batchNormPlaneSums(xs, gs, mean: mean, n: n, c: c, spatial: spatial, context: context)
            for p in 0..<(n * c) { dB[p % c] += sums[2 * p]; dS[p % c] += sums[2 * p + 1] * inv[p % c] }
            // Pass 2: dX.
            context.parallelFor(n * c, minimumPerChunk: max(1, 16384 / max(spatial, 1))) { a, b in
                for p in a..<b {
                    let ch = p % c
                    let k = scale[ch] * inv[ch], mb = dB[ch] / count, ms = dS[ch] / count, m = mean[ch], iv = inv[ch]
                    let src = xs + p * spatial, g = gs + p * spatial, d = ds + p * spatial
                    for i in 0..<spatial { d[i] = T(k * (Double(g[i]) - mb - (Double(src[i]) - m) * iv * ms)) }
                }
            }
        }
        if x.dataType == .double { run(Double.self) } else { run(Float.self) }
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
