import GraphIR

// Vector helpers of the conv gradients (SIMD for float32: Swift does not reassociate scalar float
// sums).
extension Convolution {
    // Products use fused multiply-add (addProduct), as PyTorch's kernels do: AdamW's first steps
    // divide each gradient element by its own size, so elements near eps amplify rounding
    // differences, and training then matches PyTorch only with the same (fused) rounding.

    @inline(__always)
    static func sum<T: BinaryFloatingPoint>(_ a: UnsafePointer<T>, _ n: Int) -> T {
        if T.self == Float.self {
            let p = UnsafeRawPointer(a)
            var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
            var i = 0
            while i + 16 <= n {
                acc0 += p.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                acc1 += p.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self)
                i += 16
            }
            var total = (acc0 + acc1).sum()
            let f = p.assumingMemoryBound(to: Float.self)
            while i < n { total += f[i]; i += 1 }
            return T(total)
        }
        var s0: T = 0, s1: T = 0
        var i = 0
        while i + 2 <= n { s0 += a[i]; s1 += a[i + 1]; i += 2 }
        if i < n { s0 += a[i] }
        return s0 + s1
    }

    /// Σ a[i]·b[i·bStride] for i in 0..<n.
    @inline(__always)
    static func dot<T: BinaryFloatingPoint>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ n: Int, bStride: Int = 1) -> T {
        if T.self == Float.self && bStride == 1 {
            let pa = UnsafeRawPointer(a), pb = UnsafeRawPointer(b)
            var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
            var i = 0
            while i + 16 <= n {
                acc0.addProduct(pa.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self),
                                pb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
                acc1.addProduct(pa.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self),
                                pb.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self))
                i += 16
            }
            if i + 8 <= n {
                acc0.addProduct(pa.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self),
                                pb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
                i += 8
            }
            var total = (acc0 + acc1).sum()
            let fa = pa.assumingMemoryBound(to: Float.self), fb = pb.assumingMemoryBound(to: Float.self)
            while i < n { total += fa[i] * fb[i]; i += 1 }
            return T(total)
        }
        var s0: T = 0, s1: T = 0
        var i = 0
        while i + 2 <= n { s0 += a[i] * b[i * bStride]; s1 += a[i + 1] * b[(i + 1) * bStride]; i += 2 }
        if i < n { s0 += a[i] * b[i * bStride] }
        return s0 + s1
    }
}
