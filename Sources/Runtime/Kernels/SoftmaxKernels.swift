import Foundation
import GraphIR
import CKernels

// CPU kernels of the Softmax family: the schemas (what each op means) are in Ops/Softmax.swift.
enum SoftmaxKernels {
    static func run(_ x: Tensor, axis axisAttr: Int, coerce2D: Bool, log: Bool, label: String,
                    context: ExecutionContext) throws -> Tensor {
        let shape = x.shape
        let rank = shape.count
        let axis = try Axes.normalise(axisAttr, rank: rank, scalarAsVector: true, label)
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
            // Rows: the vectorised C routine (CKernels picks AVX-512 / AVX2 / baseline at load time).
            context.parallelFor(outer, minimumPerChunk: max(1, 16384 / max(n, 1))) { start, end in
                ck_softmax_rows(src + start * n, dst + start * n, end - start, n, log ? 1 : 0)
            }
            return
        }
        // (gradKernel's strided branch below has the same scaffolding around a different hot loop.)
        // Strided: one [n, inner] block per outer index; per-lane max / sum arrays over inner.
        context.parallelFor(outer, minimumPerChunk: 1) { start, end in
            let maxv = UnsafeMutablePointer<Float>.allocate(capacity: inner)
            let sum = UnsafeMutablePointer<Double>.allocate(capacity: inner)
            defer { maxv.deallocate(); sum.deallocate() }
            for o in start..<end {
                let s = src + o * n * inner, d = dst + o * n * inner
                NormOpsSupport.softmaxStatistics(s, rows: n, rowStride: inner, lanes: inner, max: maxv, sum: sum,
                                                 exps: d, expStride: inner)
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

extension SoftmaxKernels {
    /// [outer, n, inner] view of `shape` for the softmax axis (as the forward sees it).
    static func layout(_ shape: [Int], axis axisAttr: Int, coerce2D: Bool, label: String) throws -> (Int, Int, Int) {
        let rank = shape.count
        if rank == 0 { return (1, 1, 1) }
        let axis = try Axes.normalise(axisAttr, rank: rank, scalarAsVector: true, label)
        if coerce2D { return (NormOpsSupport.product(shape, 0..<axis), NormOpsSupport.product(shape, axis..<rank), 1) }
        return (NormOpsSupport.product(shape, 0..<axis), shape[axis], NormOpsSupport.product(shape, (axis + 1)..<rank))
    }

    static func backward(_ dy0: Tensor, _ y0: Tensor, axis: Int, coerce2D: Bool, log: Bool, label: String,
                         context: ExecutionContext) throws -> Tensor {
        guard dy0.shape == y0.shape else {
            throw SegFormerError.invalid("\(label): gradient shape \(dy0.shape) differs from output shape \(y0.shape)")
        }
        let (outer, n, inner) = try layout(y0.shape, axis: axis, coerce2D: coerce2D, label: label)
        switch y0.dataType {
        case .float:
            let dx = Tensor(uninitialized: .float, shape: y0.shape)
            gradKernel(NormOpsSupport.widenToFloat(dy0).pointer(Float.self), y0.pointer(Float.self), dx.pointer(Float.self),
                       outer, n, inner, log, context)
            return dx
        case .double:
            let dx = Tensor(uninitialized: .double, shape: y0.shape)
            gradKernel(dy0.pointer(Double.self), y0.pointer(Double.self), dx.pointer(Double.self), outer, n, inner, log, context)
            return dx
        case .float16, .bfloat16:
            let dy = NormOpsSupport.widenToFloat(dy0), y = NormOpsSupport.widenToFloat(y0)
            let dx = Tensor(uninitialized: .float, shape: y0.shape)
            gradKernel(dy.pointer(Float.self), y.pointer(Float.self), dx.pointer(Float.self), outer, n, inner, log, context)
            return NormOpsSupport.narrow(dx, to: y0.dataType)
        default:
            throw SegFormerError.unsupported("\(label): element type \(y0.dataType)")
        }
    }

    @inline(__always)
    static func expT<T: BinaryFloatingPoint>(_ v: T) -> T {
        if T.self == Float.self { return T(NormOpsSupport.exp1(Float(v))) }
        return T(Foundation.exp(Double(v)))
    }

    static func gradKernel<T: BinaryFloatingPoint>(_ dy: UnsafeMutablePointer<T>, _ y: UnsafeMutablePointer<T>,
                                                   _ dx: UnsafeMutablePointer<T>, _ outer: Int, _ n: Int, _ inner: Int,
                                                   _ log: Bool, _ context: ExecutionContext) {
        if outer * n * inner == 0 { return }
        if inner == 1 {
            context.parallelFor(outer, minimumPerChunk: max(1, 8192 / max(n, 1))) { start, end in
                for r in start..<end {
                    let g = dy + r * n, p = y + r * n, d = dx + r * n
                    var a0 = 0.0, a1 = 0.0
                    var i = 0
                    if log {
                        while i + 2 <= n { a0 += Double(g[i]); a1 += Double(g[i + 1]); i += 2 }
                        if i < n { a0 += Double(g[i]) }
                        let s = T(a0 + a1)
                        if T.self == Float.self {
                            let gf = UnsafeRawPointer(g).assumingMemoryBound(to: Float.self)
                            let pf = UnsafeRawPointer(p).assumingMemoryBound(to: Float.self)
                            let df = UnsafeMutableRawPointer(d).assumingMemoryBound(to: Float.self)
                            let s8 = SIMD8<Float>(repeating: Float(s))
                            var k = 0
                            while k + 8 <= n {
                                NormOpsSupport.store8(NormOpsSupport.load8(gf + k) - NormOpsSupport.exp8(NormOpsSupport.load8(pf + k)) * s8, df + k)
                                k += 8
                            }
                            while k < n { df[k] = gf[k] - NormOpsSupport.exp1(pf[k]) * Float(s); k += 1 }
                        } else {
                            for k in 0..<n { d[k] = g[k] - expT(p[k]) * s }
                        }
                    } else {
                        while i + 2 <= n { a0 += Double(g[i] * p[i]); a1 += Double(g[i + 1] * p[i + 1]); i += 2 }
                        if i < n { a0 += Double(g[i] * p[i]) }
                        let s = T(a0 + a1)
                        for k in 0..<n { d[k] = p[k] * (g[k] - s) }
                    }
                }
            }
            return
        }
        // Strided: the scaffolding of floatKernel's strided branch around the gradient's own hot loop.
        context.parallelFor(outer, minimumPerChunk: 1) { start, end in
            let acc = UnsafeMutablePointer<Double>.allocate(capacity: inner)
            let s = UnsafeMutablePointer<T>.allocate(capacity: inner)
            defer { acc.deallocate(); s.deallocate() }
            for o in start..<end {
                let base = o * n * inner
                for j in 0..<inner { acc[j] = 0 }
                for k in 0..<n {
                    let g = dy + base + k * inner, p = y + base + k * inner
                    if log { for j in 0..<inner { acc[j] += Double(g[j]) } }
                    else { for j in 0..<inner { acc[j] += Double(g[j] * p[j]) } }
                }
                for j in 0..<inner { s[j] = T(acc[j]) }
                for k in 0..<n {
                    let g = dy + base + k * inner, p = y + base + k * inner, d = dx + base + k * inner
                    if log { for j in 0..<inner { d[j] = g[j] - expT(p[j]) * s[j] } }
                    else { for j in 0..<inner { d[j] = p[j] * (g[j] - s[j]) } }
                }
            }
        }
    }
}
