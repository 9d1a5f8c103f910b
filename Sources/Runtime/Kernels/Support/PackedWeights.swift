import COneDNN
import Foundation
import GraphIR

/// A constant GEMM operand B — a layer's weight — packed once into the layout oneDNN's matmul
/// primitive reads, where `dnnl_sgemm` packs B again on every call. A kernel whose weight is an
/// initializer makes one when the model is compiled (`ConstantPreparedKernel`) and passes it to
/// `BLAS.gemm(…, packedB:)`. The primitive depends on the product's shape (M, leading dimensions,
/// transposed A, beta) and the thread count it runs on, so primitives are made at their first use and
/// kept; those that want B in the same layout share one packed copy. With OpenBLAS in use, or for a
/// shape oneDNN only has its reference kernel for, the GEMM goes to sgemm with the plain weight.
final class PackedWeights: @unchecked Sendable {
    /// The weight as stored, kept alive: a call packs from it and checks that it multiplies by it.
    let weights: Tensor
    /// op(B) is k×n; B is stored k×n, or n×k with `transB`, rows `ldb` apart.
    let k: Int, n: Int, ldb: Int, transB: Bool

    private struct Shape: Hashable {
        var m, lda, ldc, threads: Int
        var transA, accumulate: Bool
    }
    private struct Primitive {
        let matmul: OpaquePointer
        let packed: UnsafeMutableRawPointer
    }
    /// nil where oneDNN declined the shape (sgemm then, without asking again).
    private var primitives: [Shape: Primitive?] = [:]
    /// One packed copy per layout; the first primitive that wanted it defines it.
    private var packs: [Primitive] = []
    private let lock = NSLock()

    /// B: a float32 weight read as a matrix of `rows` rows ([k, n], or [n, k] with `transB`, e.g. a conv's
    /// [M, KH, KW, C] as [M, KH·KW·C]); nil for other types or when oneDNN's matmul primitive is not
    /// available.
    init?(_ weights: Tensor, rows: Int, transB: Bool) {
        guard weights.dataType == .float, rows > 0, weights.count > 0, weights.count % rows == 0,
              OneDNN.shared?.packsWeights == true else { return nil }
        self.weights = weights
        ldb = weights.count / rows
        (k, n) = transB ? (ldb, rows) : (rows, ldb)
        self.transB = transB
    }

    deinit {
        for case let primitive? in primitives.values { odnn_matmul_destroy(primitive.matmul) }
        for pack in packs { pack.packed.deallocate() }
    }

    /// The packed copies of B made so far (one per layout the primitives asked for).
    var packedCopies: Int {
        lock.lock(); defer { lock.unlock() }
        return packs.count
    }

    /// Whether a GEMM with these operands is a product by this weight.
    func multiplies(_ b: UnsafeRawPointer, transB: Bool, k: Int, n: Int, ldb: Int) -> Bool {
        b == UnsafeRawPointer(weights.pointer(Float.self)) && transB == self.transB && k == self.k && n == self.n && ldb == self.ldb
    }

    /// C = op(A)·op(B) (+ C when `accumulate`) on oneDNN with the packed weight, on `threads` threads
    /// (the OpenMP team size the caller has set on this thread). False when oneDNN declines the shape:
    /// nothing was written and the caller runs sgemm.
    func multiply(threads: Int, transA: Bool, m: Int, a: UnsafePointer<Float>, lda: Int, accumulate: Bool,
                  c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool {
        guard let primitive = primitive(Shape(m: m, lda: lda, ldc: ldc, threads: threads, transA: transA, accumulate: accumulate)) else {
            return false
        }
        return odnn_matmul_run(primitive.matmul, a, primitive.packed, c) == 0
    }

    private func primitive(_ shape: Shape) -> Primitive? {
        lock.lock(); defer { lock.unlock() }
        if let known = primitives[shape] { return known }
        let made = make(shape)
        primitives[shape] = made
        return made
    }

    /// The primitive for `shape` with its packed weight: an existing copy when the layout is the
    /// same, else B reordered once into a new one.
    private func make(_ shape: Shape) -> Primitive? {
        guard let matmul = odnn_matmul_create(Int64(shape.m), Int64(k), Int64(n), shape.transA ? 1 : 0, Int64(shape.lda),
                                              Int64(shape.ldc), shape.accumulate ? 1 : 0) else { return nil }
        if let same = packs.first(where: { odnn_matmul_same_packing($0.matmul, matmul) != 0 }) {
            return Primitive(matmul: matmul, packed: same.packed)
        }
        let packed = UnsafeMutableRawPointer.allocate(byteCount: max(1, odnn_matmul_packed_size(matmul)), alignment: TensorStorage.alignment)
        guard odnn_matmul_pack(matmul, weights.pointer(Float.self), Int64(ldb), transB ? 1 : 0, packed) == 0 else {
            packed.deallocate()
            odnn_matmul_destroy(matmul)
            return nil
        }
        let primitive = Primitive(matmul: matmul, packed: packed)
        packs.append(primitive)
        return primitive
    }
}
