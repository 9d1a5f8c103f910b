import GraphIR

// FusedMatMul (written by the fuse-matmul-epilogue pass, schema in Ops/LinearAlgebra.swift): a MatMul
// whose operands may be read transposed (the last two axes swapped, as GEMM transpose flags: no copy)
// and whose epilogue — bias, residual, Relu — runs on each block of the product while it is in cache.
// With transposeOutput it writes the product with its last two axes swapped, computed as
// (A·B)ᵀ = Bᵀ·Aᵀ per batch item (GEMM flags again), the bias then added per row. Inputs 4–5, a
// LayerNorm of the result as a second output (fuse-layer-norm-into-producer), each row normalised in
// the epilogue.
extension LinearAlgebra {
    /// The elementwise ops after the product, applied per row in the order of the nodes they replace:
    /// ((y + bias) + residual), then Relu — the same float operations, so the same bits — and then,
    /// when the node carries one, the LayerNorm of the finished row into `normalized` (which may be
    /// the product itself when nothing else reads it; fuse-layer-norm-into-producer).
    struct Epilogue {
        var bias: UnsafePointer<Float>?       // n values, broadcast over the rows
        var residual: UnsafePointer<Float>?   // the product's shape
        var relu = false
        var layerNorm: Normalization.RowLayerNorm? = nil
        var normalized: UnsafeMutablePointer<Float>? = nil   // the product's shape, with layerNorm
        var isEmpty: Bool { bias == nil && residual == nil && !relu && layerNorm == nil }

        func apply(_ c: UnsafeMutablePointer<Float>, rows: Range<Int>, n: Int) {
            for i in rows {
                let row = c + i * n
                if let bias { for j in 0..<n { row[j] += bias[j] } }
                if let residual { let r = residual + i * n; for j in 0..<n { row[j] += r[j] } }
                if relu { for j in 0..<n { row[j] = ReluFn().f(row[j]) } }
                if let layerNorm, let normalized { layerNorm.apply(c, normalized, rows: i..<(i + 1)) }
            }
        }

        /// The same epilogue on the transposed product Cᵀ (rows of `m`, `n` rows per batch item): the
        /// bias is one value per row. (A residual is not allowed there.)
        func applyTransposed(_ c: UnsafeMutablePointer<Float>, rows: Range<Int>, m: Int, n: Int) {
            for r in rows {
                let row = c + r * m
                if let bias { let v = bias[r % n]; for j in 0..<m { row[j] += v } }
                if relu { for j in 0..<m { row[j] = ReluFn().f(row[j]) } }
            }
        }
    }

    /// Output values per row block of a tall product (~256 KB of float32): the block is still in the
    /// core's L2 cache when its epilogue runs.
    static let epilogueBlockOutputs = 1 << 16

    static func fusedMatMulKernel(_ node: Node) throws -> Kernel {
        let label = node.label
        let transA = try node.int("transA", default: 0) != 0, transB = try node.int("transB", default: 0) != 0
        let transposeOutput = try node.int("transposeOutput", default: 0) != 0
        let relu = try node.appliesActivation(OpType.relu)
        let carried = try Normalization.RowLayerNorm.Carrier(node)
        func kernel(packedB: PackedWeights?) -> Kernel { ClosureKernel { inputs, context in
            let a = try inputs.required(0, "A"), b = try inputs.required(1, "B")
            let bias = inputs.optional(2), residual = inputs.optional(3)
            for t in [a, b] + [bias, residual].compactMap({ $0 }) where t.dataType != .float {
                throw SegFormerError.unsupported("\(label): FusedMatMul of \(t.dataType) tensors (float32 only)")
            }
            guard a.rank >= 2, b.rank >= 2 else {
                throw SegFormerError.invalid("\(label): FusedMatMul operands must have rank ≥ 2, got shapes \(a.shape) and \(b.shape)")
            }
            let p = try plan(transA ? swappingLastTwo(a.shape) : a.shape, transB ? swappingLastTwo(b.shape) : b.shape, label)
            if let bias, bias.count != p.n {
                throw SegFormerError.invalid("\(label): FusedMatMul bias has shape \(bias.shape), the product \(p.outShape) has \(p.n) columns")
            }
            if let residual, residual.shape != p.outShape {
                throw SegFormerError.invalid("\(label): FusedMatMul residual has shape \(residual.shape), the product has \(p.outShape)")
            }
            var epilogue = Epilogue(bias: bias.map { UnsafePointer($0.pointer(Float.self)) },
                                    residual: residual.map { UnsafePointer($0.pointer(Float.self)) }, relu: relu)
            epilogue.layerNorm = try carried.rows(inputs, length: p.n, label: label)
            if transposeOutput {
                guard residual == nil, epilogue.layerNorm == nil else {
                    throw SegFormerError.invalid("\(label): FusedMatMul with transposeOutput takes no residual and no LayerNorm")
                }
                return [try withExtendedLifetime(bias) {
                    try fusedMatMulTransposed(a, b, p, transA: transA, transB: transB, epilogue, context)
                }]
            }
            let out = Tensor(uninitialized: .float, shape: p.outShape)
            let normalized = epilogue.layerNorm == nil ? out : carried.destination(for: out)
            epilogue.normalized = normalized.pointer(Float.self)
            try withExtendedLifetime((bias, residual)) {
                try fusedMatMul(a, b, p, transA: transA, transB: transB, packedB: packedB, epilogue, into: out, context)
            }
            return epilogue.layerNorm == nil ? [out] : [out, normalized]
        } }
        // A constant B (a linear layer's weight) is packed once for oneDNN where that is faster: with 32
        // input or output channels (stage 1) the packed primitive ran level with sgemm or slower, from 64
        // on mostly faster, by up to 8 % (kernel-benchmarks gemm-packing). The transposed product reads
        // B as its GEMM's A, which is not packed.
        return ConstantPreparedKernel(unprepared: kernel(packedB: nil)) { constants in
            guard !transposeOutput, constants.count > 1, let weight = constants[1], weight.rank == 2,
                  weight.shape.allSatisfy({ $0 >= 64 }) else { return kernel(packedB: nil) }
            return kernel(packedB: PackedWeights(weight, rows: weight.shape[0], transB: transB))
        }
    }

    static func fusedMatMul(_ a: Tensor, _ b: Tensor, _ p: MatMulPlan, transA: Bool, transB: Bool, packedB: PackedWeights? = nil,
                            _ epilogue: Epilogue, into out: Tensor, _ context: ExecutionContext) throws {
        if out.count == 0 { return }
        let (m, k, n) = (p.m, p.k, p.n)
        let pa = a.pointer(Float.self), pb = b.pointer(Float.self), pc = out.pointer(Float.self)
        let lda = a.shape[a.rank - 1], ldb = b.shape[b.rank - 1]
        let rows = p.batch * m
        try BLAS.checkSizes(rows, n, k, lda, ldb, n)
        let stacked = p.foldIntoM && !transA   // one shared B, A's rows one after the other: M = batch·m
        let blockRows = max(16, epilogueBlockOutputs / n)
        if stacked && rows >= 2 * context.threads * blockRows {
            BLAS.sgemmInRowBlocks(context, m: rows, n: n, k: k, blockRows: blockRows, a: pa, lda: lda, transB: transB,
                                  b: pb, ldb: ldb, packedB: packedB, c: pc, ldc: n) { epilogue.apply(pc, rows: $0, n: n) }
            return
        }
        if stacked {
            BLAS.gemm(Float.self, context, transB: transB, m: rows, n: n, k: k, a: pa, lda: lda, b: pb, ldb: ldb, c: pc, ldc: n,
                      packedB: packedB)
        } else {
            let aSize = a.shape.suffix(2).reduce(1, *), bSize = b.shape.suffix(2).reduce(1, *)
            for i in 0..<p.batch {
                let (ai, bi) = p.foldIntoM ? (i, 0) : (p.aIndex[i], p.bIndex[i])
                BLAS.gemm(Float.self, context, transA: transA, transB: transB, m: m, n: n, k: k,
                          a: pa + ai * aSize, lda: lda, b: pb + bi * bSize, ldb: ldb, c: pc + i * m * n, ldc: n, packedB: packedB)
            }
        }
        if !epilogue.isEmpty {
            context.parallelFor(rows, minimumPerChunk: max(1, 4096 / n)) { epilogue.apply(pc, rows: $0..<$1, n: n) }
        }
    }

    /// The product with its last two axes swapped, [batch…, n, m]: per batch item Cᵀ = op(B)ᵀ·op(A)ᵀ, one
    /// GEMM with the operands exchanged and their flags flipped, then the bias (one value per row of
    /// Cᵀ) and Relu per row.
    static func fusedMatMulTransposed(_ a: Tensor, _ b: Tensor, _ p: MatMulPlan, transA: Bool, transB: Bool,
                                      _ epilogue: Epilogue, _ context: ExecutionContext) throws -> Tensor {
        let out = Tensor(uninitialized: .float, shape: swappingLastTwo(p.outShape))
        if out.count == 0 { return out }
        let (m, k, n) = (p.m, p.k, p.n)
        let pa = a.pointer(Float.self), pb = b.pointer(Float.self), pc = out.pointer(Float.self)
        let lda = a.shape[a.rank - 1], ldb = b.shape[b.rank - 1]
        try BLAS.checkSizes(n, m, k, lda, ldb, m)
        let aSize = a.shape.suffix(2).reduce(1, *), bSize = b.shape.suffix(2).reduce(1, *)
        for i in 0..<p.batch {
            let (ai, bi) = p.foldIntoM ? (i, 0) : (p.aIndex[i], p.bIndex[i])
            BLAS.gemm(Float.self, context, transA: !transB, transB: !transA, m: n, n: m, k: k,
                      a: pb + bi * bSize, lda: ldb, b: pa + ai * aSize, ldb: lda, c: pc + i * n * m, ldc: m)
        }
        if !epilogue.isEmpty {
            context.parallelFor(p.batch * n, minimumPerChunk: max(1, 4096 / max(m, 1))) {
                epilogue.applyTransposed(pc, rows: $0..<$1, m: m, n: n)
            }
        }
        return out
    }
}
