import GraphIR

/// Where a convolution writes its output channels: second, as ONNX's Conv does ([N, M, spatial…]), or
/// last ([N, spatial…, M]) as `ChannelsLastConv` does — the tokens layout the encoder reads next.
enum ConvOutputLayout { case channelsFirst, channelsLast }

extension Convolution {
    // MARK: kernel

    static func convKernel(_ node: Node, output layout: ConvOutputLayout = .channelsFirst,
                           tiling: ConvTiling = .current) throws -> Kernel {
        let label = node.label
        let attrs = try WindowAttributes(node)
        let group = try node.int("group", default: 1)
        guard group >= 1 else { throw SegFormerError.invalid("\(label): group must be ≥ 1, got \(group)") }
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0, "X"), w = try inputs.required(1, "W")
            let b = inputs.optional(2)
            return [try conv(x, w, b, attrs, group, label, layout, tiling, context)]
        }
    }

    static func conv(_ x: Tensor, _ w: Tensor, _ b: Tensor?, _ attrs: WindowAttributes, _ group: Int,
                     _ label: String, _ layout: ConvOutputLayout = .channelsFirst, _ tiling: ConvTiling,
                     _ context: ExecutionContext) throws -> Tensor {
        guard x.dataType == w.dataType, b == nil || b!.dataType == x.dataType else {
            throw SegFormerError.invalid("\(label): Conv inputs have different types X \(x.dataType), W \(w.dataType)\(b.map { ", B \($0.dataType)" } ?? "")")
        }
        guard x.rank >= 3 else { throw SegFormerError.invalid("\(label): Conv input X must have rank ≥ 3, got shape \(x.shape)") }
        guard w.rank == x.rank else {
            throw SegFormerError.invalid("\(label): Conv weight W \(w.shape) must have the rank of X \(x.shape)")
        }
        let n = x.shape[0], c = x.shape[1], m = w.shape[0]
        guard c == w.shape[1] * group else {
            throw SegFormerError.invalid("\(label): Conv input X \(x.shape) has \(c) channels but W \(w.shape) with group \(group) expects \(w.shape[1] * group)")
        }
        guard m % group == 0 else {
            throw SegFormerError.invalid("\(label): Conv weight W \(w.shape): \(m) output channels are not divisible by group \(group)")
        }
        if let b, b.shape != [m] {
            throw SegFormerError.invalid("\(label): Conv bias B must have shape [\(m)] for W \(w.shape), got \(b.shape)")
        }
        let kernel = Array(w.shape.dropFirst(2))
        if let ks = attrs.kernelShape, ks != kernel {
            throw SegFormerError.invalid("\(label): Conv kernel_shape \(ks) differs from the weight's spatial shape \(w.shape)")
        }
        let geometry = try WindowGeometry(input: Array(x.shape.dropFirst(2)), kernel: kernel, attributes: attrs, label)
        let s = ConvShape(n: n, c: c, m: m, group: group, geometry: geometry, layout: layout)
        let outShape = layout == .channelsFirst ? [n, m] + geometry.output : [n] + geometry.output + [m]
        switch x.dataType {
        case .float: return try run(Float.self, x, w, b, s, outShape, tiling, context)
        case .double: return try run(Double.self, x, w, b, s, outShape, tiling, context)
        case .float16, .bfloat16:
            let y = try run(Float.self, BLAS.toFloat32(x), BLAS.toFloat32(w), b.map { BLAS.toFloat32($0) }, s, outShape, tiling, context)
            return BLAS.fromFloat32(y, to: x.dataType)
        default:
            throw SegFormerError.unsupported("\(label): Conv of \(x.dataType) tensors")
        }
    }

    static func run<T: BinaryFloatingPoint>(_: T.Type, _ x: Tensor, _ w: Tensor, _ b: Tensor?, _ s0: ConvShape,
                                            _ outShape: [Int], _ tiling: ConvTiling, _ context: ExecutionContext) throws -> Tensor {
        let y = Tensor(uninitialized: x.dataType, shape: outShape)
        if y.count == 0 { return y }
        let s = s0.lifted
        let px = x.pointer(T.self), pw = w.pointer(T.self), py = y.pointer(T.self)
        let pb = b.map { UnsafePointer($0.pointer(T.self)) }
        let g = s.geometry
        if x.count == 0 || w.count == 0 {
            // No input channels (or no kernel taps): the output is just the bias.
            fillBias(py, pb, n: s.n, m: s.m, spatial: g.outputSpatial, layout: s.layout)
            return y
        }
        if g.rank == 2 && s.cPerGroup == 1 && s.layout == .channelsFirst {
            depthwise2D(px, pw, pb, py, s, context)
            return y
        }
        try gemmConv(T.self, px, pw, pb, py, s, tiling, context)
        return y
    }

    /// Every output position of every image gets the bias (0 without one), in the output's layout.
    static func fillBias<T: BinaryFloatingPoint>(_ py: UnsafeMutablePointer<T>, _ pb: UnsafePointer<T>?, n: Int, m: Int, spatial: Int,
                                                 layout: ConvOutputLayout = .channelsFirst) {
        switch layout {
        case .channelsFirst:
            for i in 0..<(n * m) {
                let v = pb?[i % m] ?? 0
                let row = py + i * spatial
                for j in 0..<spatial { row[j] = v }
            }
        case .channelsLast:
            for p in 0..<(n * spatial) {
                let row = py + p * m
                for j in 0..<m { row[j] = pb?[j] ?? 0 }
            }
        }
    }

    // MARK: GEMM-based conv

    static func gemmConv<T: BinaryFloatingPoint>(_: T.Type, _ px: UnsafePointer<T>, _ pw: UnsafePointer<T>, _ pb: UnsafePointer<T>?,
                                                 _ py: UnsafeMutablePointer<T>, _ s: ConvShape, _ tiling: ConvTiling,
                                                 _ context: ExecutionContext) throws {
        let g = s.geometry
        let inSpatial = g.inputSpatial, outSpatial = g.outputSpatial, taps = g.taps
        let cg = s.cPerGroup, mg = s.mPerGroup
        let rows = cg * taps
        try BLAS.checkSizes(mg, outSpatial, rows, rows, outSpatial, outSpatial)
        // Bias first, so each GEMM accumulates onto it (beta 1).
        if pb != nil { fillBias(py, pb, n: s.n, m: s.m, spatial: outSpatial, layout: s.layout) }
        let beta: Double = pb == nil ? 0 : 1
        // Yᵍ = Wᵍ·col per tile of output positions (channels first), or its transpose colᵀ·Wᵍᵀ written
        // straight into the channels-last rows (the GEMM's transpose flags: no copy either way).
        func multiply(_ col: UnsafePointer<T>, ldcol: Int, img: Int, grp: Int, p0: Int, p1: Int) {
            let w = pw + grp * mg * rows
            switch s.layout {
            case .channelsFirst:
                BLAS.gemm(T.self, context, m: mg, n: p1 - p0, k: rows, a: w, lda: rows, b: col, ldb: ldcol,
                          beta: beta, c: py + (img * s.m + grp * mg) * outSpatial + p0, ldc: outSpatial)
            case .channelsLast:
                BLAS.gemm(T.self, context, transA: true, transB: true, m: p1 - p0, n: mg, k: rows, a: col, lda: ldcol,
                          b: w, ldb: rows, beta: beta, c: py + (img * outSpatial + p0) * s.m + grp * mg, ldc: s.m)
            }
        }
        if g.isPointwise {
            // The input is its own column matrix: one GEMM per image and group.
            s.forEachTile(outSpatial) { img, grp, _, _ in
                multiply(px + (img * s.c + grp * cg) * inSpatial, ldcol: inSpatial, img: img, grp: grp, p0: 0, p1: outSpatial)
            }
            return
        }
        let tile = try s.columnTile(rows: rows, budget: tiling.columnBudget, minimumTile: tiling.minimumTile, "Conv: im2col buffer")
        let colTensor = columnBuffer(T.self, count: rows * tile)
        let col = colTensor.pointer(T.self)
        s.forEachTile(tile) { img, grp, p0, p1 in
            im2colTile(px + (img * s.c + grp * cg) * inSpatial, col, g, channels: cg, p0: p0, p1: p1, context)
            multiply(col, ldcol: p1 - p0, img: img, grp: grp, p0: p0, p1: p1)
        }
    }
}
