import GraphIR
import CKernels

// CPU kernels of the fused attention op (schema in Ops/Attention.swift):
//
//     O = softmax(scale · Q·Kᵀ) · V      over Q [B…, N, d], K [B…, M, d], V [B…, M, dv] → O [B…, N, dv]
//
// or, in the tokens-first layout, Q [B…, N, h, d], K [B…, M, h, d], V [B…, M, h, dv] → O [B…, N, h, dv]
// (each head's rows strided, read and written in place through the GEMMs' leading dimensions).
//
// Tiled so the N×M score matrix never exists: a block of query rows at a time, S = scale·Q_blk·Kᵀ
// (sgemm, K read transposed in place), softmax along the row, O_blk = P·V. Rows of up to `keyBlock`
// keys are normalised in one go with the Softmax kernel's own routine; longer rows stream over key
// blocks with an online softmax (running maximum and sum, the partial O rescaled when the maximum
// grows), so the work memory is rows × keyBlock whatever M is (SegFormer's stage 1 at 1024²:
// N = 65536, M = 1024). Threads take fixed ranges of (batch, row block) items, and each row block is
// computed the same way whichever thread takes it, so results are bit-identical run to run.
enum AttentionKernels {
    /// Keys per block: longer rows stream.
    static let keyBlock = 1024

    /// Query rows per block for rows of `keys` scores: a block of scores of about 1 MB (an L2's worth),
    /// 64 to 1024 rows, so each sgemm is large enough to run at full speed (blocks of 64 rows over
    /// 256 keys spent more in per-call overhead than the unfused MatMuls).
    static func rowsPerBlock(keys: Int) -> Int { max(64, min(1024, (1 << 18) / max(1, keys))) }

    /// The sizes of the attention problems of one call, checked against each other, and where each
    /// problem's rows lie. A problem is one (batch item, head): in the heads-first layout its N rows of Q
    /// are contiguous (row stride d); in the tokens-first layout a token's heads sit side by side, so
    /// head j's rows start j·d into the token and step by heads·d — the GEMMs read and write them in
    /// place through their leading dimensions, no copy.
    struct Shape {
        /// Independent problems: batch items × heads.
        let problems: Int
        /// Heads per token row (1 in the heads-first layout, where heads are part of the batch dims).
        let heads: Int
        let n: Int, m: Int, d: Int, dv: Int
        /// Row strides of Q and K (heads·d) and of V and O (heads·dv).
        let ldqk: Int, ldvo: Int
        let outputShape: [Int]

        init(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout, label: String) throws {
            // The trailing axes of one batch item: [rows, features] or [rows, heads, features].
            let itemAxes = layout == .tokensFirst ? 3 : 2
            let form = layout == .tokensFirst ? "[B…, N, h, d], [B…, M, h, d], [B…, M, h, dv]" : "[B…, N, d], [B…, M, d], [B…, M, dv]"
            let axes = layout == .tokensFirst ? "[batch…, rows, heads, features]" : "[batch…, rows, features]"
            for (name, t) in [("Q", q), ("K", k), ("V", v)] {
                guard t.dataType == .float else { throw SegFormerError.unsupported("\(label): \(name) of element type \(t.dataType) (float32 only)") }
                guard t.rank >= itemAxes else {
                    throw SegFormerError.invalid("\(label): \(name) has rank \(t.rank), needs \(axes)")
                }
            }
            let lead = Array(q.shape.dropLast(itemAxes))
            let rowAxis = { (t: Tensor) in t.rank - itemAxes }
            heads = layout == .tokensFirst ? q.shape[q.rank - 2] : 1
            let sameHeads = layout == .headsFirst || (k.shape[k.rank - 2] == heads && v.shape[v.rank - 2] == heads)
            guard Array(k.shape.dropLast(itemAxes)) == lead, Array(v.shape.dropLast(itemAxes)) == lead, sameHeads,
                  k.shape[k.rank - 1] == q.shape[q.rank - 1], v.shape[rowAxis(v)] == k.shape[rowAxis(k)] else {
                throw SegFormerError.invalid("\(label): Q \(q.shape), K \(k.shape), V \(v.shape) do not fit \(form) (layout \(layout.rawValue))")
            }
            problems = lead.reduce(1, *) * heads
            (n, d) = (q.shape[rowAxis(q)], q.shape[q.rank - 1])
            m = k.shape[rowAxis(k)]
            dv = v.shape[v.rank - 1]
            (ldqk, ldvo) = (heads * d, heads * dv)
            outputShape = Array(q.shape.dropLast()) + [dv]
            try BLAS.checkSizes(n, m, d, ldqk, ldqk, m)      // S = Q·Kᵀ
            try BLAS.checkSizes(n, dv, m, m, ldvo, ldvo)     // O = P·V
        }

        /// Where problem `p`'s first row of Q, K, V, O starts.
        func q(_ p: Int) -> Int { (p / heads) * n * ldqk + (p % heads) * d }
        func k(_ p: Int) -> Int { (p / heads) * m * ldqk + (p % heads) * d }
        func v(_ p: Int) -> Int { (p / heads) * m * ldvo + (p % heads) * dv }
        func o(_ p: Int) -> Int { (p / heads) * n * ldvo + (p % heads) * dv }
    }

    static func forward(_ q: Tensor, _ k: Tensor, _ v: Tensor, scale: Float, layout: AttentionLayout = .headsFirst,
                        label: String, context: ExecutionContext,
                        rowBlock requested: Int? = nil, keyBlock: Int = keyBlock) throws -> Tensor {
        let s = try Shape(q: q, k: k, v: v, layout: layout, label: label)
        let rowBlock = requested ?? rowsPerBlock(keys: min(s.m, keyBlock))
        // No keys: the softmax row is empty and P·V a sum over nothing, as the unfused graph gives.
        if s.n * s.dv * s.m == 0 { return Tensor(zeros: .float, shape: s.outputShape) }
        let o = Tensor(uninitialized: .float, shape: s.outputShape)
        let (pq, pk, pv, po) = (q.pointer(Float.self), k.pointer(Float.self), v.pointer(Float.self), o.pointer(Float.self))
        let blocks = (s.n + rowBlock - 1) / rowBlock
        let serial = BLAS.callsFromParallelChunks()
        context.parallelFor(s.problems * blocks, minimumPerChunk: 1) { start, end in
            let keys = min(s.m, keyBlock)
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: rowBlock * keys)
            let runningMax = UnsafeMutablePointer<Float>.allocate(capacity: rowBlock)
            let runningSum = UnsafeMutablePointer<Double>.allocate(capacity: rowBlock)
            let rescale = UnsafeMutablePointer<Float>.allocate(capacity: rowBlock)
            defer { scores.deallocate(); runningMax.deallocate(); runningSum.deallocate(); rescale.deallocate() }
            for item in start..<end {
                let p = item / blocks, r0 = (item % blocks) * rowBlock, rows = min(rowBlock, s.n - r0)
                let qb = pq + s.q(p) + r0 * s.ldqk, kb = pk + s.k(p), vb = pv + s.v(p)
                let ob = po + s.o(p) + r0 * s.ldvo
                if s.m <= keyBlock {
                    blockScores(scores, qb, kb, rows: rows, keys: 0, width: s.m, s, scale, serial)
                    ck_softmax_rows(scores, scores, rows, s.m, 0)
                    BLAS.gemm(Float.self, serial, m: rows, n: s.dv, k: s.m, a: scores, lda: s.m, b: vb, ldb: s.ldvo, c: ob, ldc: s.ldvo)
                    continue
                }
                for r in 0..<rows { runningMax[r] = -.infinity; runningSum[r] = 0 }
                for j0 in stride(from: 0, to: s.m, by: keyBlock) {
                    let width = min(keyBlock, s.m - j0)
                    blockScores(scores, qb, kb, rows: rows, keys: j0, width: width, s, scale, serial)
                    ck_softmax_block_rows(scores, rows, width, runningMax, runningSum, rescale)
                    if j0 > 0 { scaleRows(ob, rows: rows, width: s.dv, stride: s.ldvo, by: { rescale[$0] }) }
                    BLAS.gemm(Float.self, serial, m: rows, n: s.dv, k: width, a: scores, lda: width,
                              b: vb + j0 * s.ldvo, ldb: s.ldvo, beta: j0 > 0 ? 1 : 0, c: ob, ldc: s.ldvo)
                }
                scaleRows(ob, rows: rows, width: s.dv, stride: s.ldvo, by: { Float(1 / runningSum[$0]) })
            }
        }
        return o
    }

    /// scores = scale · Q_blk·K_jᵀ for `rows` queries from `q` and the keys j0 ..< j0 + width of the
    /// problem's K at `k` (sgemm reads K transposed in place); `scores` has row stride `width`.
    @inline(__always)
    private static func blockScores(_ scores: UnsafeMutablePointer<Float>, _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>,
                                    rows: Int, keys j0: Int, width: Int, _ s: Shape, _ scale: Float, _ serial: ExecutionContext) {
        BLAS.gemm(Float.self, serial, transB: true, m: rows, n: width, k: s.d, alpha: Double(scale),
                  a: q, lda: s.ldqk, b: k + j0 * s.ldqk, ldb: s.ldqk, c: scores, ldc: width)
    }

    /// Multiplies row r of a rows × width block (rows `stride` apart) by factor(r).
    @inline(__always)
    private static func scaleRows(_ p: UnsafeMutablePointer<Float>, rows: Int, width: Int, stride: Int,
                                  by factor: (Int) -> Float) {
        for r in 0..<rows {
            let f = factor(r), row = p + r * stride
            for c in 0..<width { row[c] *= f }
        }
    }

    // MARK: backward

    /// (dO, Q, K, V, O) → (dQ, dK, dV), recomputing each block's probabilities P from Q and K as the
    /// forward did (so the N×M matrix is never stored for training either):
    ///     dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ∘ (dP − rowsum(dO ∘ O)),  dQ = scale·dS·K,  dK = scale·dSᵀ·Q.
    /// Row blocks are split over the threads in fixed contiguous ranges; each range sums its own dK, dV
    /// and the ranges are added in order, so the result is bit-identical run to run.
    static func backward(_ dO: Tensor, _ q: Tensor, _ k: Tensor, _ v: Tensor, _ o: Tensor, scale: Float,
                         layout: AttentionLayout = .headsFirst, label: String, context: ExecutionContext,
                         rowBlock requested: Int? = nil, keyBlock: Int = keyBlock) throws -> [Tensor] {
        let s = try Shape(q: q, k: k, v: v, layout: layout, label: label)
        let rowBlock = requested ?? rowsPerBlock(keys: min(s.m, keyBlock))
        guard dO.shape == s.outputShape, o.shape == s.outputShape, dO.dataType == .float, o.dataType == .float else {
            throw SegFormerError.invalid("\(label): output \(o.shape) and its gradient \(dO.shape) must be float32 \(s.outputShape)")
        }
        let dQ = Tensor(zeros: .float, shape: q.shape), dK = Tensor(zeros: .float, shape: k.shape)
        let dV = Tensor(zeros: .float, shape: v.shape)
        if s.n * s.m == 0 { return [dQ, dK, dV] }
        let (pq, pk, pv, po, pdo) = (q.pointer(Float.self), k.pointer(Float.self), v.pointer(Float.self),
                                     o.pointer(Float.self), dO.pointer(Float.self))
        let (pdq, pdk, pdv) = (dQ.pointer(Float.self), dK.pointer(Float.self), dV.pointer(Float.self))
        let blocks = (s.n + rowBlock - 1) / rowBlock
        let ranges = min(context.threads, blocks), perRange = (blocks + ranges - 1) / ranges
        let serial = BLAS.callsFromParallelChunks()
        // Per range: its dK and dV sums for the current problem (ranges × (M·d + M·dv) floats, rows packed).
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: ranges * s.m * (s.d + s.dv))
        defer { partial.deallocate() }
        for problem in 0..<s.problems {
            let kb = pk + s.k(problem), vb = pv + s.v(problem)
            context.parallelFor(ranges, minimumPerChunk: 1) { first, last in
                let keys = min(s.m, keyBlock)
                let p = UnsafeMutablePointer<Float>.allocate(capacity: rowBlock * keys)
                let dp = UnsafeMutablePointer<Float>.allocate(capacity: rowBlock * keys)
                let rowMax = UnsafeMutablePointer<Float>.allocate(capacity: rowBlock)
                let rowSum = UnsafeMutablePointer<Double>.allocate(capacity: rowBlock)
                let unused = UnsafeMutablePointer<Double>.allocate(capacity: rowBlock)
                let rescale = UnsafeMutablePointer<Float>.allocate(capacity: rowBlock)
                let delta = UnsafeMutablePointer<Float>.allocate(capacity: rowBlock)
                unused.initialize(repeating: 0, count: rowBlock)
                defer { [p, dp, rowMax, rescale, delta].forEach { $0.deallocate() }; rowSum.deallocate(); unused.deallocate() }
                for range in first..<last {
                    let dKr = partial + range * s.m * (s.d + s.dv), dVr = dKr + s.m * s.d
                    dKr.initialize(repeating: 0, count: s.m * (s.d + s.dv))
                    for block in (range * perRange)..<min(blocks, (range + 1) * perRange) {
                        let r0 = block * rowBlock, rows = min(rowBlock, s.n - r0)
                        let qb = pq + s.q(problem) + r0 * s.ldqk, dqb = pdq + s.q(problem) + r0 * s.ldqk
                        let ob = po + s.o(problem) + r0 * s.ldvo, dob = pdo + s.o(problem) + r0 * s.ldvo
                        for r in 0..<rows {   // rowsum(dO ∘ O), in Double as SoftmaxGrad sums
                            var acc = 0.0
                            for c in 0..<s.dv { acc += Double(dob[r * s.ldvo + c] * ob[r * s.ldvo + c]) }
                            delta[r] = Float(acc)
                        }
                        let streaming = s.m > keyBlock
                        if streaming {   // first pass: each row's maximum and sum over all keys
                            for r in 0..<rows { rowMax[r] = -.infinity; rowSum[r] = 0 }
                            for j0 in stride(from: 0, to: s.m, by: keyBlock) {
                                let width = min(keyBlock, s.m - j0)
                                blockScores(p, qb, kb, rows: rows, keys: j0, width: width, s, scale, serial)
                                ck_softmax_block_rows(p, rows, width, rowMax, rowSum, rescale)
                            }
                        }
                        for j0 in stride(from: 0, to: s.m, by: keyBlock) {
                            let width = min(keyBlock, s.m - j0)
                            blockScores(p, qb, kb, rows: rows, keys: j0, width: width, s, scale, serial)
                            if streaming {   // P = exp(S − max) / sum with the row's final statistics
                                ck_softmax_block_rows(p, rows, width, rowMax, unused, rescale)
                                scaleRows(p, rows: rows, width: width, stride: width, by: { Float(1 / rowSum[$0]) })
                            } else {
                                ck_softmax_rows(p, p, rows, width, 0)
                            }
                            // dV_j += Pᵀ·dO_blk;  dP = dO_blk·V_jᵀ
                            BLAS.gemm(Float.self, serial, transA: true, m: width, n: s.dv, k: rows, a: p, lda: width,
                                      b: dob, ldb: s.ldvo, beta: 1, c: dVr + j0 * s.dv, ldc: s.dv)
                            BLAS.gemm(Float.self, serial, transB: true, m: rows, n: width, k: s.dv, a: dob, lda: s.ldvo,
                                      b: vb + j0 * s.ldvo, ldb: s.ldvo, c: dp, ldc: width)
                            for r in 0..<rows {   // dS = P ∘ (dP − delta)
                                let pr = p + r * width, dpr = dp + r * width, dr = delta[r]
                                for c in 0..<width { dpr[c] = pr[c] * (dpr[c] - dr) }
                            }
                            // dQ_blk += scale·dS·K_j;  dK_j += scale·dSᵀ·Q_blk
                            BLAS.gemm(Float.self, serial, m: rows, n: s.d, k: width, alpha: Double(scale), a: dp, lda: width,
                                      b: kb + j0 * s.ldqk, ldb: s.ldqk, beta: j0 > 0 ? 1 : 0, c: dqb, ldc: s.ldqk)
                            BLAS.gemm(Float.self, serial, transA: true, m: width, n: s.d, k: rows, alpha: Double(scale),
                                      a: dp, lda: width, b: qb, ldb: s.ldqk, beta: 1, c: dKr + j0 * s.d, ldc: s.d)
                        }
                    }
                }
            }
            // The ranges' sums, added in range order into the problem's (possibly strided) rows.
            let dKb = pdk + s.k(problem), dVb = pdv + s.v(problem)
            for range in 0..<ranges {
                let dKr = partial + range * s.m * (s.d + s.dv), dVr = dKr + s.m * s.d
                for j in 0..<s.m {
                    for c in 0..<s.d { dKb[j * s.ldqk + c] += dKr[j * s.d + c] }
                    for c in 0..<s.dv { dVb[j * s.ldvo + c] += dVr[j * s.dv + c] }
                }
            }
        }
        return [dQ, dK, dV]
    }
}
