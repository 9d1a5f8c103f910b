import Foundation
import GraphIR

// Softmax and LogSoftmax.
// Opset ≥ 13: normalise along one axis (default −1); the tensor is seen as [outer, n, inner].
// Opset ≤ 12: the input is coerced to 2-D at `axis` (default 1): [prod(dims < axis), prod(dims ≥ axis)].
// Numerically stable: subtract the maximum of each slice before exp.

extension OpRegistry {
    static let softmaxOps: [OpSchema] = [
        softmaxSchema("Softmax", log: false),
        softmaxSchema("LogSoftmax", log: true),
    ]

    private static func softmaxSchema(_ op: String, log: Bool) -> OpSchema {
        OpSchema(op, opsets: 1...23, inputs: 1...1,
                 inferTypes: { ctx in [ctx.type(0)] },
                 makeKernel: { node, opset in
                     let axisAttr = try node.int("axis", default: opset >= 13 ? -1 : 1)
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         let x = try inputs.required(0)
                         return [try SoftmaxKernels.run(x, axis: axisAttr, coerce2D: opset < 13, log: log,
                                                        label: label, context: context)]
                     }
                 })
    }
}

enum SoftmaxKernels {
    static func run(_ x: Tensor, axis axisAttr: Int, coerce2D: Bool, log: Bool, label: String,
                    context: ExecutionContext) throws -> Tensor {
        let shape = x.shape
        let rank = shape.count
        let axis = try NormOpsSupport.axis(axisAttr, rank: rank, label)
        let outer: Int, n: Int, inner: Int
        if rank == 0 {
            (outer, n, inner) = (1, 1, 1)
        } else if coerce2D {
            outer = NormOpsSupport.product(shape, 0..<axis)
            n = NormOpsSupport.product(shape, axis..<rank)
            inner = 1
        } else {
            outer = NormOpsSupport.product(shape, 0..<axis)
            n = shape[axis]
            inner = NormOpsSupport.product(shape, (axis + 1)..<rank)
        }
        switch x.dataType {
        case .float:
            let y = Tensor(uninitialized: .float, shape: shape)
            floatKernel(x.pointer(Float.self), y.pointer(Float.self), outer, n, inner, log, context)
            return y
        case .double:
            let y = Tensor(uninitialized: .double, shape: shape)
            genericKernel(x.pointer(Double.self), y.pointer(Double.self), outer, n, inner, log, context)
            return y
        case .float16, .bfloat16:
            let wide = NormOpsSupport.widenToFloat(x)
            let y = Tensor(uninitialized: .float, shape: shape)
            floatKernel(wide.pointer(Float.self), y.pointer(Float.self), outer, n, inner, log, context)
            return NormOpsSupport.narrow(y, to: x.dataType)
        default:
            throw SegFormerError.unsupported("\(label): element type \(x.dataType)")
        }
    }

    /// float32: rows (inner == 1) run SIMD exp per row, in parallel over rows; strided slices
    /// (inner > 1) run vectorised across the inner dimension.
    static func floatKernel(_ src: UnsafeMutablePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
                            _ outer: Int, _ n: Int, _ inner: Int, _ log: Bool, _ context: ExecutionContext) {
        if outer * n * inner == 0 { return }
        if inner == 1 {
            context.parallelFor(outer, minimumPerChunk: max(1, 16384 / max(n, 1))) { start, end in
                for r in start..<end {
                    let s = src + r * n, d = dst + r * n
                    let m = NormOpsSupport.rowMax(s, n)
                    if m.isNaN || m == .infinity {
                        // ∞ or NaN in the row: fall back to the plain definition (gives NaN like PyTorch)
                        for i in 0..<n { d[i] = .nan }
                        continue
                    }
                    let shift = m == -.infinity ? 0 : m
                    let total = NormOpsSupport.expShiftSum(s, d, n, shift: shift)
                    if log {
                        // (x - max) - log Σ: subtracting max first keeps precision for large x
                        let ls = Float(Foundation.log(total))
                        var i = 0
                        let m8 = SIMD8<Float>(repeating: shift), l8 = SIMD8<Float>(repeating: ls)
                        while i + 8 <= n { NormOpsSupport.store8((NormOpsSupport.load8(s + i) - m8) - l8, d + i); i += 8 }
                        while i < n { d[i] = (s[i] - shift) - ls; i += 1 }
                    } else {
                        let inv = Float(1.0 / total)
                        var i = 0
                        let v8 = SIMD8<Float>(repeating: inv)
                        while i + 8 <= n { NormOpsSupport.store8(NormOpsSupport.load8(d + i) * v8, d + i); i += 8 }
                        while i < n { d[i] *= inv; i += 1 }
                    }
                }
            }
            return
        }
        // Strided: one [n, inner] block per outer index; per-lane max / sum arrays over inner.
        context.parallelFor(outer, minimumPerChunk: 1) { start, end in
            let maxv = UnsafeMutablePointer<Float>.allocate(capacity: inner)
            let sum = UnsafeMutablePointer<Double>.allocate(capacity: inner)
            defer { maxv.deallocate(); sum.deallocate() }
            for o in start..<end {
                let s = src + o * n * inner, d = dst + o * n * inner
                for j in 0..<inner { maxv[j] = -.infinity; sum[j] = 0 }
                for k in 0..<n {
                    let row = s + k * inner
                    for j in 0..<inner where !(row[j] <= maxv[j]) { maxv[j] = row[j] }   // NaN sticks
                }
                for j in 0..<inner where maxv[j] == -.infinity { maxv[j] = 0 }
                for k in 0..<n {
                    let row = s + k * inner, out = d + k * inner
                    var j = 0
                    while j + 8 <= inner {
                        let e = NormOpsSupport.exp8(NormOpsSupport.load8(row + j) - NormOpsSupport.load8(maxv + j))
                        NormOpsSupport.store8(e, out + j)
                        j += 8
                    }
                    while j < inner { out[j] = NormOpsSupport.exp1(row[j] - maxv[j]); j += 1 }
                    for j in 0..<inner { sum[j] += Double(out[j]) }
                }
                for j in 0..<inner where maxv[j].isNaN || maxv[j] == .infinity { sum[j] = .nan }
                if log {
                    let ls = UnsafeMutablePointer<Float>.allocate(capacity: inner)
                    defer { ls.deallocate() }
                    for j in 0..<inner { ls[j] = Float(Foundation.log(sum[j])) }
                    for k in 0..<n {
                        let row = s + k * inner, out = d + k * inner
                        for j in 0..<inner { out[j] = (row[j] - maxv[j]) - ls[j] }
                    }
                } else {
                    for j in 0..<inner { maxv[j] = Float(1.0 / sum[j]) }
                    for k in 0..<n {
                        let out = d + k * inner
                        for j in 0..<inner { out[j] *= maxv[j] }
                    }
                }
            }
        }
    }

    /// float64 (and reference) path: plain loops in Double.
    static func genericKernel(_ src: UnsafeMutablePointer<Double>, _ dst: UnsafeMutablePointer<Double>,
                              _ outer: Int, _ n: Int, _ inner: Int, _ log: Bool, _ context: ExecutionContext) {
        if outer * n * inner == 0 { return }
        context.parallelFor(outer * inner, minimumPerChunk: 64) { start, end in
            for idx in start..<end {
                let o = idx / inner, j = idx % inner
                let base = o * n * inner + j
                var m = -Double.infinity
                for k in 0..<n where !(src[base + k * inner] <= m) { m = src[base + k * inner] }
                if m == -.infinity { m = 0 }
                var total = 0.0
                for k in 0..<n { total += Foundation.exp(src[base + k * inner] - m) }
                if log {
                    let ls = Foundation.log(total)
                    for k in 0..<n { dst[base + k * inner] = (src[base + k * inner] - m) - ls }
                } else {
                    for k in 0..<n { dst[base + k * inner] = Foundation.exp(src[base + k * inner] - m) / total }
                }
            }
        }
    }
}
