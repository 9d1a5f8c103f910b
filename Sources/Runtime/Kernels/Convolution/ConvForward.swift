import GraphIR

extension Convolution {
    // MARK: kernel

    static func convKernel(_ node: Node, tiling: ConvTiling = .current) throws -> Kernel {
        let label = node.label
        let attrs = try WindowAttributes(node)
        let group = try node.int("group", default: 1)
        guard group >= 1 else { throw SegFormerError.invalid("\(label): group must be ≥ 1, got \(group)") }
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0, "X"), w = try inputs.required(1, "W")
            let b = inputs.optional(2)
            return [try conv(x, w, b, attrs, group, label, tiling, context)]
        }
    }

    static func conv(_ x: Tensor, _ w: Tensor, _ b: Tensor?, _ attrs: WindowAttributes, _ group: Int,
                     _ label: String, _ tiling: ConvTiling, _ context: ExecutionContext) throws -> Tensor {
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
        let s = ConvShape(n: n, c: c, m: m, group: group, geometry: geometry)
        let outShape = [n, m] + geometry.output
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
            fillBias(py, pb, n: s.n, m: s.m, spatial: g.output.reduce(1, *))
            return y
        }
        if g.rank == 2 && s.cPerGroup == 1 {
            depthwise2D(px, pw, pb, py, s, context)
            return y
        }
        try gemmConv(T.self, px, pw, pb, py, s, tiling, context)
        return y
    }

    static func fillBias<T: BinaryFloatingPoint>(_ py: UnsafeMutablePointer<T>, _ pb: UnsafePointer<T>?, n: Int, m: Int, spatial: Int) {
        for i in 0..<(n * m) {
            let v = pb?[i % m] ?? 0
            let row = py + i * spatial
            for j in 0..<spatial { row[j] = v }
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
        if pb != nil { fillBias(py, pb, n: s.n, m: s.m, spatial: outSpatial) }
        let beta: Double = pb == nil ? 0 : 1
        if g.isPointwise {
            // The input is its own column matrix: one GEMM per image and group.
            s.forEachTile(outSpatial) { img, grp, _, _ in
                BLAS.gemm(T.self, context, m: mg, n: outSpatial, k: cg, a: pw + grp * mg * cg, lda: cg,
                          b: px + (img * s.c + grp * cg) * inSpatial, ldb: inSpatial, beta: beta,
                          c: py + (img * s.m + grp * mg) * outSpatial, ldc: outSpatial)
            }
            return
        }
        let tile = try s.columnTile(rows: rows, budget: tiling.columnBudget, minimumTile: tiling.minimumTile, "Conv: im2col buffer")
        let colTensor = columnBuffer(T.self, count: rows * tile)
        let col = colTensor.pointer(T.self)
        s.forEachTile(tile) { img, grp, p0, p1 in
            im2colTile(px + (img * s.c + grp * cg) * inSpatial, col, g, channels: cg, p0: p0, p1: p1, context)
            BLAS.gemm(T.self, context, m: mg, n: p1 - p0, k: rows, a: pw + grp * mg * rows, lda: rows, b: col, ldb: p1 - p0,
                      beta: beta, c: py + (img * s.m + grp * mg) * outSpatial + p0, ldc: outSpatial)
        }
    }
}
