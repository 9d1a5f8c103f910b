import GraphIR

// CPU kernels of the LinearAlgebra family: the schemas (what each op means) are in Ops/LinearAlgebra.swift.
enum LinearAlgebra {

    // MARK: MatMul

    /// How a MatMul maps onto GEMMs: output shape, matrix sizes and, per batch, the offsets of the
    /// A and B matrices (in matrices, i.e. multiples of m·k and k·n).
    struct MatMulPlan {
        var outShape: [Int]
        var m = 0, k = 0, n = 0
        var batch = 1
        var aIndex: [Int] = []
        var bIndex: [Int] = []
        /// B is one shared matrix and A's batches are contiguous: fold the batch into M.
        var foldIntoM = false
    }

    static func plan(_ a0: [Int], _ b0: [Int], _ label: String) throws -> MatMulPlan {
        guard !a0.isEmpty, !b0.isEmpty else {
            throw SegFormerError.invalid("\(label): MatMul inputs must have rank ≥ 1, got shapes \(a0) and \(b0)")
        }
        let a = a0.count == 1 ? [1] + a0 : a0
        let b = b0.count == 1 ? b0 + [1] : b0
        let m = a[a.count - 2], k = a[a.count - 1], kb = b[b.count - 2], n = b[b.count - 1]
        guard k == kb else {
            throw SegFormerError.invalid("\(label): MatMul inner dimensions differ: \(a0) × \(b0)")
        }
        let ab = Array(a.dropLast(2)), bb = Array(b.dropLast(2))
        let r = max(ab.count, bb.count)
        let pa = [Int](repeating: 1, count: r - ab.count) + ab
        let pb = [Int](repeating: 1, count: r - bb.count) + bb
        let batchShape: [Int]
        do { batchShape = try broadcastShapes(pa, pb) } catch {
            throw SegFormerError.invalid("\(label): MatMul batch dimensions do not broadcast: \(a0) × \(b0)")
        }
        var out = batchShape
        if a0.count > 1 { out.append(m) }
        if b0.count > 1 { out.append(n) }
        var p = MatMulPlan(outShape: out)
        p.m = m; p.k = k; p.n = n
        p.batch = batchShape.reduce(1, *)
        let bBatch = pb.reduce(1, *), aBatch = pa.reduce(1, *)
        if bBatch == 1 && aBatch == p.batch {
            p.foldIntoM = true
            return p
        }
        // Per-batch matrix offsets through broadcasting (row-major strides over the batch dims).
        let sa = Strides.broadcast(pa, to: batchShape), sb = Strides.broadcast(pb, to: batchShape)
        p.aIndex.reserveCapacity(p.batch); p.bIndex.reserveCapacity(p.batch)
        var idx = [Int](repeating: 0, count: r)
        for _ in 0..<p.batch {
            var oa = 0, ob = 0
            for i in 0..<r { oa += idx[i] * sa[i]; ob += idx[i] * sb[i] }
            p.aIndex.append(oa); p.bIndex.append(ob)
            var d = r - 1
            while d >= 0 { idx[d] += 1; if idx[d] < batchShape[d] { break }; idx[d] = 0; d -= 1 }
        }
        return p
    }

    static func matMulKernel(_ node: Node) -> Kernel {
        let label = node.label
        return ClosureKernel { inputs, context in
            let a = try inputs.required(0, "A"), b = try inputs.required(1, "B")
            guard a.dataType == b.dataType else {
                throw SegFormerError.invalid("\(label): MatMul inputs have different types \(a.dataType) and \(b.dataType)")
            }
            return [try matMul(a, b, label, context)]
        }
    }

    static func matMul(_ a: Tensor, _ b: Tensor, _ label: String, _ context: ExecutionContext) throws -> Tensor {
        let p = try plan(a.shape, b.shape, label)
        switch a.dataType {
        case .float: return try matMulBLAS(Float.self, a, b, p, context)
        case .double: return try matMulBLAS(Double.self, a, b, p, context)
        case .float16, .bfloat16:
            let out = try matMulBLAS(Float.self, BLAS.toFloat32(a), BLAS.toFloat32(b), p, context)
            return BLAS.fromFloat32(out, to: a.dataType)
        case .int32: return matMulLoop(Int32.self, a, b, p)
        case .int64: return matMulLoop(Int64.self, a, b, p)
        case .uint32: return matMulLoop(UInt32.self, a, b, p)
        case .uint64: return matMulLoop(UInt64.self, a, b, p)
        case .int8: return matMulLoop(Int8.self, a, b, p)
        case .uint8: return matMulLoop(UInt8.self, a, b, p)
        case .int16: return matMulLoop(Int16.self, a, b, p)
        case .uint16: return matMulLoop(UInt16.self, a, b, p)
        default:
            throw SegFormerError.unsupported("\(label): MatMul of \(a.dataType) tensors")
        }
    }

    static func matMulBLAS<T>(_: T.Type, _ a: Tensor, _ b: Tensor, _ p: MatMulPlan, _ context: ExecutionContext) throws -> Tensor {
        let out = Tensor(uninitialized: a.dataType, shape: p.outShape)
        let pa = a.pointer(T.self), pb = b.pointer(T.self), pc = out.pointer(T.self)
        let (m, k, n) = (p.m, p.k, p.n)
        if p.foldIntoM {
            try BLAS.checkSizes(p.batch * m, n, k, k, n, n)
            BLAS.gemm(T.self, context, m: p.batch * m, n: n, k: k, a: pa, lda: k, b: pb, ldb: n, c: pc, ldc: n)
            return out
        }
        try BLAS.checkSizes(m, n, k, k, n, n)
        for i in 0..<p.batch {
            BLAS.gemm(T.self, context, m: m, n: n, k: k, a: pa + p.aIndex[i] * m * k, lda: k,
                      b: pb + p.bIndex[i] * k * n, ldb: n, c: pc + i * m * n, ldc: n)
        }
        return out
    }

    static func matMulLoop<T: FixedWidthInteger>(_: T.Type, _ a: Tensor, _ b: Tensor, _ p: MatMulPlan) -> Tensor {
        let out = Tensor(uninitialized: a.dataType, shape: p.outShape)
        let pa = a.pointer(T.self), pb = b.pointer(T.self), pc = out.pointer(T.self)
        let (m, k, n) = (p.m, p.k, p.n)
        let batches = p.foldIntoM ? 1 : p.batch
        let rows = p.foldIntoM ? p.batch * m : m
        for bi in 0..<batches {
            let A = pa + (p.foldIntoM ? 0 : p.aIndex[bi] * m * k)
            let B = pb + (p.foldIntoM ? 0 : p.bIndex[bi] * k * n)
            let C = pc + bi * m * n
            integerGemm(rows, n, k, A, k, 1, B, n, 1, C)
        }
        return out
    }

    /// C[i,j] = Σ A[i,l]·B[l,j] with explicit element strides (so transposes are free), wrapping.
    @inline(__always)
    static func integerGemm<T: FixedWidthInteger>(_ m: Int, _ n: Int, _ k: Int,
                                                 _ A: UnsafePointer<T>, _ aRow: Int, _ aCol: Int,
                                                 _ B: UnsafePointer<T>, _ bRow: Int, _ bCol: Int,
                                                 _ C: UnsafeMutablePointer<T>) {
        for i in 0..<m {
            let c = C + i * n
            for j in 0..<n { c[j] = 0 }
            for l in 0..<k {
                let av = A[i * aRow + l * aCol]
                if av == 0 { continue }
                let brow = B + l * bRow
                for j in 0..<n { c[j] = c[j] &+ av &* brow[j * bCol] }
            }
        }
    }

    // MARK: Gemm

    static func gemmKernel(_ node: Node, opset: Int) throws -> Kernel {
        let label = node.label
        let alpha = Double(try node.float("alpha", default: 1))
        let beta = Double(try node.float("beta", default: 1))
        let transA = try node.int("transA", default: 0) != 0
        let transB = try node.int("transB", default: 0) != 0
        // Opsets < 7 had a `broadcast` attribute; broadcasting C always is a superset of both modes.
        return ClosureKernel { inputs, context in
            let a = try inputs.required(0, "A"), b = try inputs.required(1, "B")
            let c = inputs.optional(2)
            guard a.dataType == b.dataType, c == nil || c!.dataType == a.dataType else {
                throw SegFormerError.invalid("\(label): Gemm inputs have different types \(a.dataType), \(b.dataType)\(c.map { ", \($0.dataType)" } ?? "")")
            }
            guard a.rank == 2, b.rank == 2 else {
                throw SegFormerError.invalid("\(label): Gemm inputs A and B must be 2-D, got \(a.shape) and \(b.shape)")
            }
            let m = transA ? a.shape[1] : a.shape[0], k = transA ? a.shape[0] : a.shape[1]
            let kb = transB ? b.shape[1] : b.shape[0], n = transB ? b.shape[0] : b.shape[1]
            guard k == kb else {
                throw SegFormerError.invalid("\(label): Gemm inner dimensions differ: A \(a.shape) (transA \(transA)), B \(b.shape) (transB \(transB))")
            }
            // C broadcasts unidirectionally to [M, N]: strides 0 along its size-1 / missing dims.
            var cRow = 0, cCol = 0
            if let c {
                guard c.rank <= 2 else {
                    throw SegFormerError.invalid("\(label): Gemm C must have rank ≤ 2, got \(c.shape)")
                }
                let cs = [Int](repeating: 1, count: 2 - c.rank) + c.shape
                guard (cs[0] == m || cs[0] == 1), (cs[1] == n || cs[1] == 1) else {
                    throw SegFormerError.invalid("\(label): Gemm C of shape \(c.shape) does not broadcast to [\(m), \(n)]")
                }
                cRow = cs[0] == 1 ? 0 : cs[1]
                cCol = cs[1] == 1 ? 0 : 1
            }
            let useC = c != nil && beta != 0
            switch a.dataType {
            case .float:
                return [try gemmBLAS(Float.self, a, b, useC ? c : nil, m, n, k, transA, transB, alpha, beta, cRow, cCol, context)]
            case .double:
                return [try gemmBLAS(Double.self, a, b, useC ? c : nil, m, n, k, transA, transB, alpha, beta, cRow, cCol, context)]
            case .float16, .bfloat16:
                let y = try gemmBLAS(Float.self, BLAS.toFloat32(a), BLAS.toFloat32(b), useC ? BLAS.toFloat32(c!) : nil,
                                     m, n, k, transA, transB, alpha, beta, cRow, cCol, context)
                return [BLAS.fromFloat32(y, to: a.dataType)]
            case .int32: return [gemmLoop(Int32.self, a, b, useC ? c : nil, m, n, k, transA, transB, alpha, beta, cRow, cCol)]
            case .int64: return [gemmLoop(Int64.self, a, b, useC ? c : nil, m, n, k, transA, transB, alpha, beta, cRow, cCol)]
            case .uint32: return [gemmLoop(UInt32.self, a, b, useC ? c : nil, m, n, k, transA, transB, alpha, beta, cRow, cCol)]
            case .uint64: return [gemmLoop(UInt64.self, a, b, useC ? c : nil, m, n, k, transA, transB, alpha, beta, cRow, cCol)]
            default:
                throw SegFormerError.unsupported("\(label): Gemm of \(a.dataType) tensors")
            }
        }
    }

    static func gemmBLAS<T: BinaryFloatingPoint>(_: T.Type, _ a: Tensor, _ b: Tensor, _ c: Tensor?,
                                                 _ m: Int, _ n: Int, _ k: Int, _ transA: Bool, _ transB: Bool,
                                                 _ alpha: Double, _ beta: Double, _ cRow: Int, _ cCol: Int,
                                                 _ context: ExecutionContext) throws -> Tensor {
        let y = Tensor(uninitialized: a.dataType, shape: [m, n])
        let py = y.pointer(T.self)
        if let c {
            // Y = beta·C first, then the GEMM accumulates into it.
            let pc = c.pointer(T.self), bt = T(beta)
            for i in 0..<m {
                let row = py + i * n, src = pc + i * cRow
                if cCol == 0 { let v = bt * src[0]; for j in 0..<n { row[j] = v } } else { for j in 0..<n { row[j] = bt * src[j] } }
            }
        }
        try BLAS.checkSizes(m, n, k, a.shape[1], b.shape[1], n)
        BLAS.gemm(T.self, context, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                  a: a.pointer(T.self), lda: a.shape[1], b: b.pointer(T.self), ldb: b.shape[1],
                  beta: c == nil ? 0 : 1, c: py, ldc: n)
        return y
    }

    static func gemmLoop<T: FixedWidthInteger>(_: T.Type, _ a: Tensor, _ b: Tensor, _ c: Tensor?,
                                               _ m: Int, _ n: Int, _ k: Int, _ transA: Bool, _ transB: Bool,
                                               _ alpha: Double, _ beta: Double, _ cRow: Int, _ cCol: Int) -> Tensor {
        let y = Tensor(uninitialized: a.dataType, shape: [m, n])
        let py = y.pointer(T.self)
        let lda = a.shape[1], ldb = b.shape[1]
        integerGemm(m, n, k, a.pointer(T.self), transA ? 1 : lda, transA ? lda : 1,
                    b.pointer(T.self), transB ? 1 : ldb, transB ? ldb : 1, py)
        let al = T(truncatingIfNeeded: Int64(alpha)), bt = T(truncatingIfNeeded: Int64(beta))
        let pc = c?.pointer(T.self)
        for i in 0..<m {
            for j in 0..<n {
                var v = py[i * n + j] &* al
                if let pc { v = v &+ bt &* pc[i * cRow + j * cCol] }
                py[i * n + j] = v
            }
        }
        return y
    }

    // MARK: gradients
    //
    // MatMul: dA = dY·Bᵀ and dB = Aᵀ·dY, per batch, summed over the batch dims an operand was
    // broadcast along. Both run as `transposedGEMM`: cblas_sgemm with transpose flags (no
    // materialised transposes), the batch folded into one GEMM where the layout allows:
    //  * dA with a shared 2-D B ([B,N,C]×[C,K]): dA = dY_fold·Bᵀ, M = B·N;
    //  * dB with a shared 2-D B: dB = Σ_b A_bᵀ·dY_b = A_foldᵀ·dY_fold, one GEMM with K = B·N.
    // `MatMulGrad` carries the forward operand shapes (1-D promotion happens there, since a
    // gradient rule does not know ranks); `MatMulTransposed` is the plain batched transposed GEMM
    // (rank ≥ 2), used by Gemm's rule.

    static func matMulTransposedKernel(_ node: Node) throws -> Kernel {
        let label = node.label
        let transA = try node.int("transA", default: 0) != 0
        let transB = try node.int("transB", default: 0) != 0
        let alpha = Double(try node.float("alpha", default: 1))
        return ClosureKernel { inputs, context in
            let a = try inputs.required(0, "A"), b = try inputs.required(1, "B")
            let target = try inputs.optional(2).map { try $0.integers() }
            return [try transposedGEMM(a, b, transA: transA, transB: transB, alpha: alpha, target: target, label, context)]
        }
    }

    /// MatMulGrad(dY, other, shape): the gradient of MatMul's input `input` (0: A, 1: B) of the given
    /// shape, from dY and the other forward operand.
    static func matMulGradKernel(_ node: Node) throws -> Kernel {
        let label = node.label
        let which = try node.int("input", default: 0)
        guard which == 0 || which == 1 else { throw SegFormerError.invalid("\(label): MatMulGrad input must be 0 or 1, got \(which)") }
        return ClosureKernel { inputs, context in
            let dy = try inputs.required(0, "dY"), other = try inputs.required(1, "operand")
            let shape = try inputs.required(2, "shape").integers()
            guard shape.allSatisfy({ $0 >= 0 }) else { throw SegFormerError.invalid("\(label): negative dimension in shape \(shape)") }
            let a0 = which == 0 ? shape : other.shape, b0 = which == 0 ? other.shape : shape
            let p = try plan(a0, b0, label)
            guard dy.shape == p.outShape else {
                throw SegFormerError.invalid("\(label): dY has shape \(dy.shape), MatMul of \(a0) × \(b0) gives \(p.outShape)")
            }
            guard dy.dataType == other.dataType else {
                throw SegFormerError.invalid("\(label): dY is \(dy.dataType), operand is \(other.dataType)")
            }
            // numpy promotion of 1-D operands, and dY with the dropped matrix dims restored.
            let a = a0.count == 1 ? [1] + a0 : a0
            let b = b0.count == 1 ? b0 + [1] : b0
            let batch = Array(p.outShape.prefix(p.outShape.count - (a0.count > 1 ? 1 : 0) - (b0.count > 1 ? 1 : 0)))
            let dyFull = dy.reshaped(batch + [p.m, p.n])
            let result: Tensor
            if which == 0 {
                result = try transposedGEMM(dyFull, other.reshaped(b), transA: false, transB: true, alpha: 1, target: a, label, context)
            } else {
                result = try transposedGEMM(other.reshaped(a), dyFull, transA: true, transB: false, alpha: 1, target: b, label, context)
            }
            return [result.reshaped(shape)]
        }
    }

    /// alpha·op(A)·op(B) over numpy-broadcast batch dims (operands of rank ≥ 2; op transposes the
    /// last two dims), summed down to `target` when given (batch dims the target lacks or has as 1
    /// are summed; its last two dims must be the product's). float32/float64 via BLAS, half in float32.
    static func transposedGEMM(_ a: Tensor, _ b: Tensor, transA: Bool, transB: Bool, alpha: Double,
                               target: [Int]?, _ label: String, _ context: ExecutionContext) throws -> Tensor {
        guard a.dataType == b.dataType else {
            throw SegFormerError.invalid("\(label): operands have different types \(a.dataType) and \(b.dataType)")
        }
        guard a.rank >= 2, b.rank >= 2 else {
            throw SegFormerError.invalid("\(label): operands must have rank ≥ 2, got \(a.shape) and \(b.shape)")
        }
        let (ra, ca) = (a.shape[a.rank - 2], a.shape[a.rank - 1]), (rb, cb) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        let m = transA ? ca : ra, k = transA ? ra : ca, kb = transB ? cb : rb, n = transB ? rb : cb
        guard k == kb else {
            throw SegFormerError.invalid("\(label): inner dimensions differ: \(a.shape)\(transA ? "ᵀ" : "") × \(b.shape)\(transB ? "ᵀ" : "")")
        }
        let ab = Array(a.shape.dropLast(2)), bb = Array(b.shape.dropLast(2))
        let r = max(ab.count, bb.count)
        let pa = [Int](repeating: 1, count: r - ab.count) + ab, pb = [Int](repeating: 1, count: r - bb.count) + bb
        let batchShape: [Int]
        do { batchShape = try broadcastShapes(pa, pb) } catch {
            throw SegFormerError.invalid("\(label): batch dimensions do not broadcast: \(a.shape) × \(b.shape)")
        }
        let full = batchShape + [m, n]
        let t = target ?? full
        guard t.count >= 2, t.count <= full.count, t.suffix(2) == [m, n] else {
            throw SegFormerError.invalid("\(label): cannot sum the product of shape \(full) to \(t)")
        }
        let tb = Array(t.dropLast(2))
        let pt = [Int](repeating: 1, count: r - tb.count) + tb
        for i in 0..<r where pt[i] != batchShape[i] && pt[i] != 1 {
            throw SegFormerError.invalid("\(label): cannot sum the product of shape \(full) to \(t)")
        }
        try BLAS.checkSizes(m, n, k, ca, cb, n)
        switch a.dataType {
        case .float: return try transposedGEMM(Float.self, a, b, transA, transB, alpha, m, n, k, batchShape, pa, pb, pt, t, context)
        case .double: return try transposedGEMM(Double.self, a, b, transA, transB, alpha, m, n, k, batchShape, pa, pb, pt, t, context)
        case .float16, .bfloat16:
            let y = try transposedGEMM(Float.self, BLAS.toFloat32(a), BLAS.toFloat32(b), transA, transB, alpha,
                                       m, n, k, batchShape, pa, pb, pt, t, context)
            return BLAS.fromFloat32(y, to: a.dataType)
        default:
            throw SegFormerError.unsupported("\(label): gradient GEMM of \(a.dataType) tensors")
        }
    }

    private static func transposedGEMM<T: BinaryFloatingPoint>(_: T.Type, _ a: Tensor, _ b: Tensor, _ transA: Bool, _ transB: Bool, _ alpha: Double,
                                          _ m: Int, _ n: Int, _ k: Int, _ batchShape: [Int], _ pa: [Int], _ pb: [Int],
                                          _ pt: [Int], _ target: [Int], _ context: ExecutionContext) throws -> Tensor {
        let out = Tensor(uninitialized: a.dataType, shape: target)
        let A = a.pointer(T.self), B = b.pointer(T.self), C = out.pointer(T.self)
        let lda = a.shape[a.rank - 1], ldb = b.shape[b.rank - 1]
        let batch = batchShape.reduce(1, *), aBatch = pa.reduce(1, *), bBatch = pb.reduce(1, *), outBatch = pt.reduce(1, *)
        let aSize = a.shape.suffix(2).reduce(1, *), bSize = b.shape.suffix(2).reduce(1, *)
        if out.count == 0 { return out }
        // Fold: shared B, per-batch A rows stacked, nothing summed → one GEMM with M = batch·m.
        if outBatch == batch && bBatch == 1 && aBatch == batch && !transA {
            try BLAS.checkSizes(batch * m, n, k, lda, ldb, n)
            BLAS.gemm(T.self, context, transA: false, transB: transB, m: batch * m, n: n, k: k, alpha: alpha,
                      a: A, lda: lda, b: B, ldb: ldb, c: C, ldc: n)
            return out
        }
        // Fold: everything summed, both operands batched with the k dim leading (Aᵀ·B) → K = batch·k.
        if outBatch == 1 && aBatch == batch && bBatch == batch && transA && !transB {
            try BLAS.checkSizes(m, n, batch * k, lda, ldb, n)
            BLAS.gemm(T.self, context, transA: true, transB: false, m: m, n: n, k: batch * k, alpha: alpha,
                      a: A, lda: lda, b: B, ldb: ldb, c: C, ldc: n)
            return out
        }
        // General: one GEMM per batch, accumulating (beta 1) where the target sums batches.
        let r = batchShape.count
        let sa = Strides.broadcast(pa, to: batchShape), sb = Strides.broadcast(pb, to: batchShape)
        let st = Strides.broadcast(pt, to: batchShape)
        let reduce = outBatch != batch
        if reduce { BLAS.scale(C, m: 1, n: out.count, ldc: out.count, beta: 0) }
        var idx = [Int](repeating: 0, count: r)
        for _ in 0..<batch {
            var oa = 0, ob = 0, ot = 0
            for i in 0..<r { oa += idx[i] * sa[i]; ob += idx[i] * sb[i]; ot += idx[i] * st[i] }
            BLAS.gemm(T.self, context, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                      a: A + oa * aSize, lda: lda, b: B + ob * bSize, ldb: ldb,
                      beta: reduce ? 1 : 0, c: C + ot * m * n, ldc: n)
            var d = r - 1
            while d >= 0 { idx[d] += 1; if idx[d] < batchShape[d] { break }; idx[d] = 0; d -= 1 }
        }
        return out
    }
}
