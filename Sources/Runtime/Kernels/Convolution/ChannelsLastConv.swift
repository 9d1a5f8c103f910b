import GraphIR

// ChannelsLastConv (fused domain, written by GraphIR/Passes/FuseConvToTokens.swift): Conv with its
// output channels last, Y [N, OH, OW, M]. With channels_last_input = 0 it reads X and W as Conv does
// (NCHW, [M, C/G, KH, KW]) and runs Conv's own kernels (ConvForward.swift), its GEMM writing colᵀ·Wᵀ.
// With channels_last_input = 1 everything is channels last — X [N, H, W, C] (tokens viewed as an
// image), W [M, KH, KW, C], one group — and the column matrix is built transposed from the input
// rows as they are: row p of colᵀ is output position p's window, tap by tap a contiguous run of C
// channels (for kernel == stride, the spatial reductions, the window rows are whole runs of KW·C),
// then Y[p, :] = colᵀ[p, :]·Wᵀ per tile of positions. Every tile's rows are split over the threads in
// fixed chunks and each GEMM is one call: the bits do not change from run to run.
extension Convolution {
    static func channelsLastConvKernel(_ node: Node, tiling: ConvTiling = .current) throws -> Kernel {
        guard try node.int("channels_last_input", default: 0) != 0 else { return try convKernel(node, output: .channelsLast, tiling: tiling) }
        let label = node.label
        let attrs = try WindowAttributes(node)
        guard try node.int("group", default: 1) == 1 else {
            throw SegFormerError.unsupported("\(label): ChannelsLastConv with channels_last_input = 1 takes one group")
        }
        func kernel(packedW: PackedWeights?) -> Kernel {
            ClosureKernel { inputs, context in
                let x = try inputs.required(0, "X"), w = try inputs.required(1, "W")
                let b = inputs.optional(2)
                return [try channelsLastInputConv(x, w, b, attrs, label, tiling, packedW: packedW, context)]
            }
        }
        // A constant W [M, KH, KW, C] is the GEMM's Wᵀ operand, packed once for oneDNN.
        return ConstantPreparedKernel(unprepared: kernel(packedW: nil)) { constants in
            let w = constants.count > 1 ? constants[1] : nil
            return kernel(packedW: w.flatMap { $0.rank == 4 ? PackedWeights($0, rows: $0.shape[0], transB: true) : nil })
        }
    }

    static func channelsLastInputConv(_ x: Tensor, _ w: Tensor, _ b: Tensor?, _ attrs: WindowAttributes, _ label: String,
                                      _ tiling: ConvTiling, packedW: PackedWeights? = nil,
                                      _ context: ExecutionContext) throws -> Tensor {
        for t in [x, w] + (b.map { [$0] } ?? []) where t.dataType != .float {
            throw SegFormerError.unsupported("\(label): ChannelsLastConv of \(t.dataType) tensors (float32 only)")
        }
        guard x.rank == 4, w.rank == 4, w.shape[3] == x.shape[3] else {
            throw SegFormerError.invalid("\(label): ChannelsLastConv needs X [N, H, W, C] and W [M, KH, KW, C], got X \(x.shape), W \(w.shape)")
        }
        let (n, c, m) = (x.shape[0], x.shape[3], w.shape[0])
        if let b, b.shape != [m] {
            throw SegFormerError.invalid("\(label): ChannelsLastConv bias B must have shape [\(m)] for W \(w.shape), got \(b.shape)")
        }
        let kernel = [w.shape[1], w.shape[2]]
        if let ks = attrs.kernelShape, ks != kernel {
            throw SegFormerError.invalid("\(label): ChannelsLastConv kernel_shape \(ks) differs from the weight's spatial shape \(w.shape)")
        }
        let g = try WindowGeometry(input: [x.shape[1], x.shape[2]], kernel: kernel, attributes: attrs, label)
        let s = ConvShape(n: n, c: c, m: m, group: 1, geometry: g, layout: .channelsLast)
        let y = Tensor(uninitialized: .float, shape: [n] + g.output + [m])
        if y.count == 0 { return y }
        let px = x.pointer(Float.self), pw = w.pointer(Float.self), py = y.pointer(Float.self)
        let pb = b.map { UnsafePointer($0.pointer(Float.self)) }
        let outSpatial = g.outputSpatial, rows = c * g.taps
        // Bias first, so each GEMM accumulates onto it (beta 1); the bias alone without input channels.
        if pb != nil || rows == 0 { fillBias(py, pb, n: n, m: m, spatial: outSpatial, layout: .channelsLast) }
        if rows == 0 { return y }
        try BLAS.checkSizes(outSpatial, m, rows, rows, rows, m)
        let beta: Double = pb == nil ? 0 : 1
        let tile = try s.columnTile(rows: rows, budget: tiling.columnBudget, minimumTile: tiling.minimumTile, "ChannelsLastConv: column buffer")
        let colTensor = columnBuffer(Float.self, count: rows * tile)
        let col = colTensor.pointer(Float.self)
        s.forEachTile(tile) { img, _, p0, p1 in
            transposedColumns(px + img * g.inputSpatial * c, col, g, channels: c, p0: p0, p1: p1, context)
            BLAS.gemm(Float.self, context, transB: true, m: p1 - p0, n: m, k: rows, a: col, lda: rows, b: pw, ldb: rows,
                      beta: beta, c: py + (img * outSpatial + p0) * m, ldc: m, packedB: packedW)
        }
        return y
    }

    /// colᵀ[p − p0, (kh, kw, c)] = x[ih, iw, c] (0 outside the image), ih = oh·sh − ph + kh·dh,
    /// iw = ow·sw − pw + kw·dw, for output positions p = oh·OW + ow in p0..<p1 of one channels-last
    /// image. Parallel over positions.
    static func transposedColumns(_ x: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>, _ g: WindowGeometry,
                                  channels c: Int, p0: Int, p1: Int, _ context: ExecutionContext) {
        let (H, W) = (g.input[0], g.input[1]), (KH, KW) = (g.kernel[0], g.kernel[1])
        let OW = g.output[1], (SH, SW) = (g.strides[0], g.strides[1])
        let (DH, DW) = (g.dilations[0], g.dilations[1]), (PH, PW) = (g.padBegin[0], g.padBegin[1])
        let rowLength = KH * KW * c
        context.parallelFor(p1 - p0, minimumPerChunk: max(1, 16384 / rowLength)) { r0, r1 in
            for r in r0..<r1 {
                let p = p0 + r, oh = p / OW, ow = p - oh * OW
                for kh in 0..<KH {
                    let ih = oh * SH - PH + kh * DH
                    let dst = col + r * rowLength + kh * KW * c
                    guard ih >= 0 && ih < H else { dst.update(repeating: 0, count: KW * c); continue }
                    let (lo, hi) = validRange(base: ow * SW - PW, stride: DW, size: W, count: KW)
                    dst.update(repeating: 0, count: lo * c)
                    let src = x + (ih * W + ow * SW - PW) * c
                    if DW == 1 {
                        // The taps inside the image are one run of input row.
                        (dst + lo * c).update(from: src + lo * c, count: (hi - lo) * c)
                    } else {
                        for kw in lo..<hi { (dst + kw * c).update(from: src + kw * DW * c, count: c) }
                    }
                    (dst + hi * c).update(repeating: 0, count: (KW - hi) * c)
                }
            }
        }
    }
}
