import CKernels
import GraphIR

// TokenDepthwiseConv (fused domain, written by GraphIR/Passes/FuseTokenDepthwiseConv.swift): SegFormer's
// MixFFN convolution without its two Transposes,
//
//     TokenDepthwiseConv(X, W, shape, B; activation)
//       = Transpose(Reshape(Conv(Reshape(Transpose(X), shape), W, B), [B, C, H·W]))   (then GELU)
//     TokenDepthwiseConv(X, W, shape, B, P, c, R; activation) = TokenDepthwiseConv(X, W, shape, B)·P + c + R
//
// (the second form, inference only, takes in MixFFN's next linear layer: fuse-token-depthwise-projection;
// it may carry the LayerNorm of its result too, inputs 7–8, as a second output: fuse-layer-norm-into-producer).
// X [B, N, C] tokens, channels last; `shape` the NCHW target [B, C, H, W] that the first Reshape
// resolves against the transposed tokens [B, C, N]; W [C, 1, KH, KW] (KH, KW odd, one channel per
// group, stride 1, zero padding (K − 1)/2: the output has the input's size); B [C] optional. The
// result has X's shape and layout. Each output position is a vector of C channels (contiguous, so the
// C kernel vectorises over channels); threads split the B·H output rows in fixed chunks, and every
// output is computed by one thread in one order, so the bits do not depend on the thread count.
// With `adjoint` = 1 the kernel is rotated by 180°: for an odd kernel with "same" padding and stride 1
// that is the conv's adjoint, i.e. dX from dY. TokenDepthwiseConvGrad (training domain): (dY, X, W,
// shape) → (dW, dB).
extension Convolution {
    static func tokenDepthwiseKernel(_ node: Node) throws -> Kernel {
        let label = node.label
        let gelu = try node.appliesActivation(OpType.gelu)
        let allowZero = try node.int("allowzero", default: 0) != 0, adjoint = try node.int("adjoint", default: 0) != 0
        let carried = try Normalization.RowLayerNorm.Carrier(node)
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0, "X"), w = try inputs.required(1, "W"), bias = inputs.optional(3)
            let (height, width) = try tokenGrid(x, w, try inputs.required(2, "shape"), allowZero: allowZero, label)
            if let bias, bias.dataType != .float || bias.shape != [x.shape[2]] {
                throw SegFormerError.invalid("\(label): TokenDepthwiseConv bias must be float32 [\(x.shape[2])], got \(bias.dataType) \(bias.shape)")
            }
            if let weight = inputs.optional(4) {
                guard !adjoint else { throw SegFormerError.invalid("\(label): TokenDepthwiseConv adjoint takes no projection") }
                let projection = Projection(weight: weight, bias: inputs.optional(5), residual: inputs.optional(6))
                let layerNorm = try carried.rows(inputs, length: weight.shape.last ?? 0, label: label)
                return try tokenDepthwiseProjected(x, w, bias, height: height, width: width, gelu: gelu, projection,
                                                   layerNorm: layerNorm.map { ($0, carried) }, label: label, context)
            }
            guard inputs.optional(carried.scaleIndex) == nil else {
                throw SegFormerError.invalid("\(label): TokenDepthwiseConv takes a LayerNorm only with its projection")
            }
            return [withExtendedLifetime(bias) {
                tokenDepthwise(x, w, bias, height: height, width: width, gelu: gelu, adjoint: adjoint, context)
            }]
        }
    }

    /// The rows and columns (H, W) the tokens X [B, N, C] form: `shape` resolved as Reshape resolves it
    /// against the transposed tokens [B, C, N], which must give [B, C, H, W]. Checks W [C, 1, KH, KW]
    /// (KH, KW odd).
    static func tokenGrid(_ x: Tensor, _ w: Tensor, _ shape: Tensor, allowZero: Bool, _ label: String) throws -> (Int, Int) {
        for t in [x, w] where t.dataType != .float {
            throw SegFormerError.unsupported("\(label): TokenDepthwiseConv of \(t.dataType) tensors (float32 only)")
        }
        guard x.rank == 3 else {
            throw SegFormerError.invalid("\(label): TokenDepthwiseConv tokens must be [batch, tokens, channels], got \(x.shape)")
        }
        let (n, tokens, c) = (x.shape[0], x.shape[1], x.shape[2])
        let target = try shape.integers()
        let nchw = try OpRegistry.reshapeShape([n, c, tokens], target, allowZero: allowZero, label)
        guard nchw.count == 4, nchw[0] == n, nchw[1] == c else {
            throw SegFormerError.invalid("\(label): TokenDepthwiseConv shape \(target) does not split the \(tokens) tokens of \(x.shape) into rows and columns")
        }
        guard w.rank == 4, w.shape[0] == c, w.shape[1] == 1, w.shape[2] % 2 == 1, w.shape[3] % 2 == 1 else {
            throw SegFormerError.invalid("\(label): TokenDepthwiseConv weight must be [\(c), 1, KH, KW] with KH, KW odd, got \(w.shape)")
        }
        return (nchw[2], nchw[3])
    }

    /// The taps channel-last: [KH·KW, C], so each tap is a vector of C weights (rotated by 180° for the adjoint).
    private static func channelsLastTaps(_ w: Tensor, adjoint: Bool) -> [Float] {
        let (c, taps) = (w.shape[0], w.shape[2] * w.shape[3])
        return [Float](unsafeUninitializedCapacity: taps * c) { buf, count in
            let pw = w.pointer(Float.self)
            for ch in 0..<c { for t in 0..<taps { buf[t * c + ch] = pw[ch * taps + (adjoint ? taps - 1 - t : t)] } }
            count = taps * c
        }
    }

    static func tokenDepthwise(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, height: Int, width: Int, gelu: Bool,
                               adjoint: Bool = false, _ context: ExecutionContext) -> Tensor {
        let out = Tensor(uninitialized: .float, shape: x.shape)
        let (n, c) = (x.shape[0], x.shape[2]), (kh, kw) = (w.shape[2], w.shape[3])
        if out.count == 0 { return out }
        let taps = kh * kw
        let weights = channelsLastTaps(w, adjoint: adjoint)
        let px = x.pointer(Float.self), py = out.pointer(Float.self), pb = bias.map { UnsafePointer($0.pointer(Float.self)) }
        let image = height * width * c
        weights.withUnsafeBufferPointer { pw in
            // Rows of all images in one range; a chunk that crosses images is cut at their boundary.
            context.parallelFor(n * height, minimumPerChunk: max(1, 16384 / max(1, width * c * taps))) { start, end in
                var row = start
                while row < end {
                    let img = row / height, first = row % height
                    let last = min(height, first + (end - row))
                    ck_depthwise_tokens_rows(px + img * image, pw.baseAddress!, pb, py + img * image + first * width * c,
                                             height, width, c, kh, kw, first, last, gelu ? 1 : 0)
                    row += last - first
                }
            }
        }
        return out
    }

    /// The linear layer after the convolution (MixFFN's fc2), taken in by fuse-mixffn-projection:
    /// Y = conv(X)·P + bias + residual, P [C, M].
    struct Projection {
        let weight: Tensor
        let bias: Tensor?
        let residual: Tensor?
    }

    /// Output tokens per band of the projected form (whole rows; ~256 KB of conv output at C = 128).
    static let projectionBandTokens = 512

    /// The convolution (and GELU) followed by its projection, band by band of whole output rows: each
    /// band's conv output goes to a buffer and through one single-threaded GEMM, then the bias and the
    /// residual (`LinearAlgebra.Epilogue`, FusedMatMul's own) while it is in cache, and the LayerNorm
    /// when the node carries one: its output second, written where the carrier says (beside the
    /// projection, or over it). The [B, N, C] convolution output is never written.
    static func tokenDepthwiseProjected(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, height: Int, width: Int, gelu: Bool,
                                       _ p: Projection,
                                       layerNorm carried: (rows: Normalization.RowLayerNorm, carrier: Normalization.RowLayerNorm.Carrier)? = nil,
                                       label: String, _ context: ExecutionContext) throws -> [Tensor] {
        let (n, tokens, c) = (x.shape[0], x.shape[1], x.shape[2])
        guard p.weight.dataType == .float, p.weight.rank == 2, p.weight.shape[0] == c else {
            throw SegFormerError.invalid("\(label): TokenDepthwiseConv projection must be float32 [\(c), M], got \(p.weight.dataType) \(p.weight.shape)")
        }
        let m = p.weight.shape[1]
        if let b = p.bias, b.dataType != .float || b.count != m {
            throw SegFormerError.invalid("\(label): TokenDepthwiseConv projection bias must be \(m) float32 values, got \(b.dataType) \(b.shape)")
        }
        if let r = p.residual, r.dataType != .float || r.shape != [n, tokens, m] {
            throw SegFormerError.invalid("\(label): TokenDepthwiseConv residual must be float32 \([n, tokens, m]), got \(r.dataType) \(r.shape)")
        }
        let out = Tensor(uninitialized: .float, shape: [n, tokens, m])
        let normalized = carried?.carrier.destination(for: out) ?? out
        let outputs = carried == nil ? [out] : [out, normalized]
        if out.count == 0 { return outputs }
        try BLAS.checkSizes(tokens, m, c, c, m, m)
        let (kh, kw) = (w.shape[2], w.shape[3])
        let weights = channelsLastTaps(w, adjoint: false)
        let bands = RowBands(images: n, height: height, width: width, pixels: projectionBandTokens)
        let px = x.pointer(Float.self), py = out.pointer(Float.self), pp = UnsafePointer(p.weight.pointer(Float.self))
        let pn = normalized.pointer(Float.self)
        let pb = bias.map { UnsafePointer($0.pointer(Float.self)) }
        let projectionBias = p.bias.map { UnsafePointer($0.pointer(Float.self)) }
        let residual = p.residual.map { UnsafePointer($0.pointer(Float.self)) }
        let serial = BLAS.callsFromParallelChunks()
        withExtendedLifetime((p, bias)) {
            weights.withUnsafeBufferPointer { pw in
                context.parallelFor(bands.count) { first, end in
                    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: bands.rowsPerBand * width * c)
                    defer { buffer.deallocate() }
                    for i in first..<end {
                        let (img, rows) = bands.band(i)
                        let pixels = rows.count * width
                        ck_depthwise_tokens_rows(px + img * tokens * c, pw.baseAddress!, pb, buffer, height, width, c, kh, kw,
                                                 rows.lowerBound, rows.upperBound, gelu ? 1 : 0)
                        let offset = (img * tokens + rows.lowerBound * width) * m
                        BLAS.gemm(Float.self, serial, m: pixels, n: m, k: c, a: buffer, lda: c, b: pp, ldb: m, c: py + offset, ldc: m)
                        LinearAlgebra.Epilogue(bias: projectionBias, residual: residual.map { $0 + offset },
                                               layerNorm: carried?.rows, normalized: pn + offset)
                            .apply(py + offset, rows: 0..<pixels, n: m)
                    }
                }
            }
        }
        return outputs
    }

    /// The output rows per chunk of the weight gradient: a fixed cut, whatever the thread count.
    static let gradWeightChunks = 32

    /// dW [C, 1, KH, KW] and dB [C] of TokenDepthwiseConv (before any activation) from dY and X
    /// [B, H·W, C]: the B·H output rows are cut into `gradWeightChunks` fixed chunks, each summed in
    /// double on its own, then the chunks in order — the same bits at any thread count.
    static func tokenDepthwiseGradWeight(_ dy: Tensor, _ x: Tensor, _ w: Tensor, height: Int, width: Int,
                                         _ context: ExecutionContext) -> (Tensor, Tensor) {
        let (n, c) = (x.shape[0], x.shape[2]), (kh, kw) = (w.shape[2], w.shape[3]), taps = kh * kw
        let rows = n * height, chunks = max(1, min(rows, gradWeightChunks)), per = (rows + chunks - 1) / max(1, chunks)
        var sums = [Double](repeating: 0, count: chunks * (taps + 1) * c)
        let pdy = dy.pointer(Float.self), px = x.pointer(Float.self), image = height * width * c
        sums.withUnsafeMutableBufferPointer { sums in
            let base = sums.baseAddress!
            context.parallelFor(chunks) { start, end in
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: (taps + 1) * c)
                defer { scratch.deallocate() }
                for chunk in start..<end {
                    let dw = base + chunk * (taps + 1) * c, db = dw + taps * c
                    var row = chunk * per
                    while row < min(rows, (chunk + 1) * per) {
                        let img = row / height, first = row % height
                        let last = min(height, first + min(rows, (chunk + 1) * per) - row)
                        ck_depthwise_tokens_grad_weight_rows(pdy + img * image, px + img * image, scratch, dw, db,
                                                             height, width, c, kh, kw, first, last)
                        row += last - first
                    }
                }
            }
        }
        let dW = Tensor(uninitialized: .float, shape: w.shape), dB = Tensor(uninitialized: .float, shape: [c])
        let pw = dW.pointer(Float.self), pb = dB.pointer(Float.self)
        for ch in 0..<c {
            for t in 0..<taps {
                var s = 0.0
                for chunk in 0..<chunks { s += sums[chunk * (taps + 1) * c + t * c + ch] }
                pw[ch * taps + t] = Float(s)
            }
            var s = 0.0
            for chunk in 0..<chunks { s += sums[chunk * (taps + 1) * c + taps * c + ch] }
            pb[ch] = Float(s)
        }
        return (dW, dB)
    }

    static func tokenDepthwiseGradKernel(_ node: Node) throws -> Kernel {
        let label = node.label, allowZero = try node.int("allowzero", default: 0) != 0
        return ClosureKernel { inputs, context in
            let dy = try inputs.required(0, "dY"), x = try inputs.required(1, "X"), w = try inputs.required(2, "W")
            let (height, width) = try tokenGrid(x, w, try inputs.required(3, "shape"), allowZero: allowZero, label)
            guard dy.dataType == .float, dy.shape == x.shape else {
                throw SegFormerError.invalid("\(label): TokenDepthwiseConvGrad dY \(dy.shape) differs from X \(x.shape)")
            }
            let (dW, dB) = tokenDepthwiseGradWeight(dy, x, w, height: height, width: width, context)
            return [dW, dB]
        }
    }
}
