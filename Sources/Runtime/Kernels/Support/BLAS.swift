import CBLAS
import GraphIR

/// Row-major GEMM: C = alpha·op(A)·op(B) + beta·C with op(A) m×k, op(B) k×n, C m×n, float32 on
/// `GEMMLibrary.current` (oneDNN or OpenBLAS), float64 on OpenBLAS.
/// `gemm` is the only entry point: it handles the degenerate sizes BLAS dislikes (zero
/// dimensions, leading dimensions of 0) and runs on the caller's `ExecutionContext`'s thread count.
/// Callers check their sizes against OpenBLAS's 32-bit ints with `checkSizes` first. The library
/// threads inside each call: call it from the kernel's own thread, not from `parallelFor`
/// (`sgemmInRowBlocks` is the way to spread single-threaded products over the threads).
/// `packedB` is the weight B packed once (`PackedWeights`), which oneDNN then reads instead of B.
enum BLAS {
    /// Largest dimension / leading dimension OpenBLAS's `blasint` (int32) can take.
    static let maxDimension = Int(Int32.max)

    /// OpenBLAS's thread count is process-global and every `ExecutionContext` init sets it, so a
    /// later-made single-threaded context (tests, constant folding) would leave it at 1 for everyone.
    /// `gemm` calls this with its context's count before each product; it only writes on a change.
    @inline(__always)
    private static func useThreads(_ n: Int) {
        if Int(openblas_get_num_threads()) != n { openblas_set_num_threads(Int32(n)) }
    }

    /// For a kernel that splits its work over its own threads (`parallelFor`) and calls `gemm` in each
    /// chunk: sets OpenBLAS to one thread, here on the calling thread, and returns the context the
    /// chunks pass to `gemm` (one thread, so no chunk changes the setting while another multiplies).
    static func callsFromParallelChunks() -> ExecutionContext {
        let serial = ExecutionContext.singleThreaded
        useThreads(1)
        return serial
    }

    static func checkSizes(_ m: Int, _ n: Int, _ k: Int, _ lda: Int, _ ldb: Int, _ ldc: Int) throws {
        for v in [m, n, k, lda, ldb, ldc] where v > maxDimension || v < 0 {
            throw SegFormerError.unsupported("GEMM size \(m)×\(k)×\(n) exceeds the 32-bit BLAS interface")
        }
    }

    /// Scales C by beta (what a GEMM with k == 0 computes).
    @inline(__always)
    static func scale<T: BinaryFloatingPoint>(_ c: UnsafeMutablePointer<T>, m: Int, n: Int, ldc: Int, beta: T) {
        for i in 0..<m {
            let row = c + i * ldc
            if beta == 0 { for j in 0..<n { row[j] = 0 } } else if beta != 1 { for j in 0..<n { row[j] *= beta } }
        }
    }

    // sgemm and dgemm below are one wrapper for two CBLAS entry points (cblas_sgemm / cblas_dgemm):
    // C has no generics, so the Float and Double versions stand side by side. sgemm alone may go to
    // oneDNN, whose dnnl_sgemm is row-major with the same arguments, or its matmul primitive when B is
    // a packed weight (alpha 1, beta 0 or 1: what the kernels that pack pass).
    private static func sgemm(threads: Int, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                      alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int,
                      beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, packedB: PackedWeights? = nil) {
        if m == 0 || n == 0 { return }
        if k == 0 || alpha == 0 { scale(c, m: m, n: n, ldc: ldc, beta: beta); return }
        if GEMMLibrary.current == .oneDNN, let dnnl = OneDNN.shared {
            if dnnl.maxThreads() != Int32(threads) { dnnl.setThreads(Int32(threads)) }
            if let packedB, alpha == 1, beta == 0 || beta == 1, packedB.multiplies(b, transB: transB, k: k, n: n, ldb: ldb),
               packedB.multiply(threads: threads, transA: transA, m: m, a: a, lda: lda, accumulate: beta == 1, c: c, ldc: ldc) {
                return
            }
            let status = dnnl.sgemm(transA ? 84 : 78, transB ? 84 : 78, Int64(m), Int64(n), Int64(k), alpha,   // 'T' / 'N'
                                    a, Int64(max(1, lda)), b, Int64(max(1, ldb)), beta, c, Int64(max(1, ldc)))
            // Only invalid arguments fail (the callers' sizes are checked); OpenBLAS then says which.
            if status == 0 { return }
        }
        useThreads(threads)
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(max(1, lda)), b, Int32(max(1, ldb)),
                    beta, c, Int32(max(1, ldc)))
    }

    // The Double twin of sgemm above (CBLAS has one entry point per element type).
    private static func dgemm(threads: Int, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                      alpha: Double = 1, a: UnsafePointer<Double>, lda: Int,
                      b: UnsafePointer<Double>, ldb: Int,
                      beta: Double = 0, c: UnsafeMutablePointer<Double>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 || alpha == 0 { scale(c, m: m, n: n, ldc: ldc, beta: beta); return }
        useThreads(threads)
        cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(max(1, lda)), b, Int32(max(1, ldb)),
                    beta, c, Int32(max(1, ldc)))
    }

    /// C = A·op(B) for a tall float32 product, in blocks of `blockRows` rows spread over `context`'s
    /// threads: each block one single-threaded GEMM, then `finish(rows)` on it while it is in cache
    /// (a fused kernel's epilogue). A block's result does not depend on the thread computing it, so the
    /// output is the same at every thread count.
    static func sgemmInRowBlocks(_ context: ExecutionContext, m: Int, n: Int, k: Int, blockRows: Int,
                                 a: UnsafePointer<Float>, lda: Int, transB: Bool, b: UnsafePointer<Float>, ldb: Int,
                                 packedB: PackedWeights? = nil, c: UnsafeMutablePointer<Float>, ldc: Int,
                                 finish: (Range<Int>) -> Void) {
        let blocks = (m + blockRows - 1) / blockRows
        // OpenBLAS's thread count is process-global: set it once here, not from every worker.
        if GEMMLibrary.current == .openBLAS { useThreads(1) }
        context.parallelFor(blocks) { first, end in
            for block in first..<end {
                let r0 = block * blockRows, r1 = min(m, r0 + blockRows)
                sgemm(threads: 1, transB: transB, m: r1 - r0, n: n, k: k, a: a + r0 * lda, lda: lda, b: b, ldb: ldb,
                      c: c + r0 * ldc, ldc: ldc, packedB: packedB)
                finish(r0..<r1)
            }
        }
    }

    /// The GEMM for an element type that BLAS covers (Float, Double), dispatched once per call, with
    /// the library running on `context`'s threads.
    @inline(__always)
    static func gemm<T>(_: T.Type, _ context: ExecutionContext, transA: Bool = false, transB: Bool = false,
                        m: Int, n: Int, k: Int,
                        alpha: Double = 1, a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
                        beta: Double = 0, c: UnsafeMutablePointer<T>, ldc: Int, packedB: PackedWeights? = nil) {
        if T.self == Float.self {
            sgemm(threads: context.threads, transA: transA, transB: transB, m: m, n: n, k: k, alpha: Float(alpha),
                  a: UnsafeRawPointer(a).assumingMemoryBound(to: Float.self), lda: lda,
                  b: UnsafeRawPointer(b).assumingMemoryBound(to: Float.self), ldb: ldb, beta: Float(beta),
                  c: UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self), ldc: ldc, packedB: packedB)
        } else if T.self == Double.self {
            dgemm(threads: context.threads, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                  a: UnsafeRawPointer(a).assumingMemoryBound(to: Double.self), lda: lda,
                  b: UnsafeRawPointer(b).assumingMemoryBound(to: Double.self), ldb: ldb, beta: beta,
                  c: UnsafeMutableRawPointer(c).assumingMemoryBound(to: Double.self), ldc: ldc)
        } else {
            preconditionFailure("BLAS.gemm: \(T.self) is not a BLAS type")
        }
    }
}

/// Half-precision element types are computed in float32 and rounded back: converts between a
/// tensor of float16/bfloat16 and a float32 tensor of the same shape.
extension BLAS {
    static func toFloat32(_ t: Tensor) -> Tensor {
        let out = Tensor(uninitialized: .float, shape: t.shape)
        let dst = out.pointer(Float.self)
        let n = t.count
        switch t.dataType {
        case .float16: let src = t.pointer(Float16.self); for i in 0..<n { dst[i] = Float(src[i]) }
        case .bfloat16: let src = t.pointer(BFloat16.self); for i in 0..<n { dst[i] = src[i].float }
        default: preconditionFailure("BLAS.toFloat32: \(t.dataType)")
        }
        return out
    }

    static func fromFloat32(_ t: Tensor, to type: DataType) -> Tensor {
        let out = Tensor(uninitialized: type, shape: t.shape)
        let src = t.pointer(Float.self)
        let n = t.count
        switch type {
        case .float16: let dst = out.pointer(Float16.self); for i in 0..<n { dst[i] = Float16(src[i]) }
        case .bfloat16: let dst = out.pointer(BFloat16.self); for i in 0..<n { dst[i] = BFloat16(src[i]) }
        default: preconditionFailure("BLAS.fromFloat32: \(type)")
        }
        return out
    }

    static func isHalf(_ t: DataType) -> Bool { t == .float16 || t == .bfloat16 }
}
