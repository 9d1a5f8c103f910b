import Foundation
import GraphIR

/// Helpers shared by the normalization, softmax, reduction and resize families (namespaced so they
/// cannot collide with other families' helpers).
enum NormOpsSupport {
    /// Product of `shape[range]`.
    static func product(_ shape: [Int], _ range: Range<Int>) -> Int {
        var p = 1
        for i in range { p *= shape[i] }
        return p
    }

    // MARK: float widening

    /// float16 / bfloat16 tensors are computed in float32 (kernels exist for float32 and float64 only).
    static func widenToFloat(_ t: Tensor) -> Tensor {
        switch t.dataType {
        case .float16:
            let out = Tensor(uninitialized: .float, shape: t.shape)
            let s = t.pointer(Float16.self), d = out.pointer(Float.self)
            for i in 0..<t.count { d[i] = Float(s[i]) }
            return out
        case .bfloat16:
            let out = Tensor(uninitialized: .float, shape: t.shape)
            let s = t.pointer(BFloat16.self), d = out.pointer(Float.self)
            for i in 0..<t.count { d[i] = s[i].float }
            return out
        default:
            return t
        }
    }

    /// Converts a float32 result back to `type` (float16 / bfloat16); other types pass through.
    static func narrow(_ t: Tensor, to type: DataType) -> Tensor {
        guard t.dataType == .float, type == .float16 || type == .bfloat16 else { return t }
        let out = Tensor(uninitialized: type, shape: t.shape)
        let s = t.pointer(Float.self)
        if type == .float16 {
            let d = out.pointer(Float16.self)
            for i in 0..<t.count { d[i] = Float16(s[i]) }
        } else {
            let d = out.pointer(BFloat16.self)
            for i in 0..<t.count { d[i] = BFloat16(s[i]) }
        }
        return out
    }

    /// Any floating-point tensor as float64 values (for small parameter vectors).
    static func doubles(_ t: Tensor, _ label: String) throws -> [Double] {
        guard t.dataType.isFloatingPoint else {
            throw SegFormerError.unsupported("\(label): expected a floating-point tensor, got \(t.dataType)")
        }
        return try t.doubles()
    }

    // MARK: vector exp

    /// exp on 8 lanes (Cephes-style: range reduction to [-ln2/2, ln2/2], degree-6 polynomial,
    /// scale by 2^n through the exponent bits). About 1 ulp; inputs below -87 give 0, inputs are
    /// clamped at 88 (callers pass x - max ≤ 0).
    @inline(__always)
    static func exp8(_ xIn: SIMD8<Float>) -> SIMD8<Float> {
        // (clamp with compare+select: the stdlib's pointwiseMin/Max are not inlined lane-wise code)
        var x = xIn
        x.replace(with: -87.0, where: x .< -87.0)
        x.replace(with: 88.0, where: x .> 88.0)
        // round(x·log2e) with the 1.5·2^23 trick (plain SSE2, no roundps needed)
        let magic = SIMD8<Float>(repeating: 12582912.0)
        let t = x * 1.44269504088896341 + magic
        let n = t - magic
        var r = x - n * 0.693359375
        r = r - n * -2.12194440e-4
        var p = SIMD8<Float>(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        p = p * (r * r) + r + 1
        let ni = unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000
        let scale = unsafeBitCast((ni &+ 127) &<< 23, to: SIMD8<Float>.self)
        var result = p * scale
        result.replace(with: 0, where: xIn .< -87.0)
        // NaN stays NaN (the clamp would otherwise hide it)
        result.replace(with: xIn, where: xIn .!= xIn)
        return result
    }

    @inline(__always)
    static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always)
    static func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }

    /// Scalar exp through the vector routine (so tails round exactly like full vectors).
    @inline(__always)
    static func exp1(_ x: Float) -> Float { exp8(SIMD8(repeating: x))[0] }

    /// Writes exp(src[i] - shift) to dst and returns their sum (in Double: rows can be long).
    @inline(__always)
    static func expShiftSum(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int, shift: Float) -> Double {
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        var total = 0.0
        let m = SIMD8<Float>(repeating: shift)
        var i = 0
        // Float lanes, flushed into a Double every 512 elements to keep the sum precise.
        while i + 16 <= n {
            let e0 = exp8(load8(src + i) - m)
            let e1 = exp8(load8(src + i + 8) - m)
            store8(e0, dst + i)
            store8(e1, dst + i + 8)
            acc0 += e0
            acc1 += e1
            i += 16
            if i & 511 == 0 {
                total += Double((acc0 + acc1).sum())
                acc0 = SIMD8(); acc1 = SIMD8()
            }
        }
        total += Double((acc0 + acc1).sum())
        while i < n {
            let e = exp1(src[i] - shift)
            dst[i] = e
            total += Double(e)
            i += 1
        }
        return total
    }

    /// exp(src[j] − shift[j]) for j < w.
    @inline(__always)
    static func expShift<T: BinaryFloatingPoint>(_ src: UnsafePointer<T>, _ shift: UnsafePointer<T>, _ dst: UnsafeMutablePointer<T>, _ w: Int) {
        if T.self == Float.self {
            let s = UnsafeRawPointer(src).assumingMemoryBound(to: Float.self)
            let m = UnsafeRawPointer(shift).assumingMemoryBound(to: Float.self)
            let d = UnsafeMutableRawPointer(dst).assumingMemoryBound(to: Float.self)
            var j = 0
            while j + 8 <= w {
                NormOpsSupport.store8(NormOpsSupport.exp8(NormOpsSupport.load8(s + j) - NormOpsSupport.load8(m + j)), d + j)
                j += 8
            }
            while j < w { d[j] = NormOpsSupport.exp1(s[j] - m[j]); j += 1 }
        } else {
            for j in 0..<w { dst[j] = T(Foundation.exp(Double(src[j] - shift[j]))) }
        }
    }

    /// Softmax statistics of the `w` columns of `n` rows `rowStride` apart (classes × positions of the
    /// loss, the axis × inner block of a strided softmax): per column the maximum (NaN sticks; all −∞
    /// gives 0) and Σ exp(x − max) in Double. Row k's exponentials go to `exps + k·expStride`
    /// (stride 0: one scratch row reused).
    @inline(__always)
    static func softmaxStatistics<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, rows n: Int, rowStride: Int, lanes w: Int,
                                                          max maxv: UnsafeMutablePointer<T>, sum: UnsafeMutablePointer<Double>,
                                                          exps: UnsafeMutablePointer<T>, expStride: Int) {
        for j in 0..<w { maxv[j] = -.infinity; sum[j] = 0 }
        for k in 0..<n {
            let row = x + k * rowStride
            for j in 0..<w where !(row[j] <= maxv[j]) { maxv[j] = row[j] }   // NaN sticks
        }
        for j in 0..<w where maxv[j] == -.infinity { maxv[j] = 0 }
        for k in 0..<n {
            let e = exps + k * expStride
            expShift(x + k * rowStride, maxv, e, w)
            for j in 0..<w { sum[j] += Double(e[j]) }
        }
    }

    /// Maximum of n ≥ 1 floats (NaN propagates).
    @inline(__always)
    static func rowMax(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        var i = 0
        var best = -Float.infinity
        var nan = false
        if n >= 8 {
            var m = SIMD8<Float>(repeating: -.infinity)
            var anyNaN = SIMDMask<SIMD8<Int32>>(repeating: false)
            while i + 8 <= n {
                let v = load8(p + i)
                anyNaN = anyNaN .| (v .!= v)
                m.replace(with: v, where: v .> m)
                i += 8
            }
            best = m.max()
            nan = any(anyNaN)
        }
        while i < n {
            let v = p[i]
            if v.isNaN { nan = true }
            if v > best { best = v }
            i += 1
        }
        return nan ? .nan : best
    }

    /// Sum of n floats accumulated in Double.
    @inline(__always)
    static func rowSum(_ p: UnsafePointer<Float>, _ n: Int) -> Double {
        var a0 = SIMD8<Double>(), a1 = SIMD8<Double>()
        var i = 0
        while i + 16 <= n {
            a0 += SIMD8<Double>(load8(p + i))
            a1 += SIMD8<Double>(load8(p + i + 8))
            i += 16
        }
        var s = (a0 + a1).sum()
        while i < n { s += Double(p[i]); i += 1 }
        return s
    }
}
