import GraphIR

extension Convolution {
    /// ConvGradInput(dY, W, xShape) (weight: false) or ConvGradWeight(dY, X, wShape) (weight: true),
    /// with the forward Conv's attributes.
    static func convGradKernel(_ node: Node, weight: Bool, tiling: ConvTiling = .current) throws -> Kernel {
        let label = node.label
        let attrs = try WindowAttributes(node)
        let group = try node.int("group", default: 1)
        guard group >= 1 else { throw SegFormerError.invalid("\(label): group must be ≥ 1, got \(group)") }
        return ClosureKernel { inputs, context in
            let dy = try inputs.required(0, "dY"), operand = try inputs.required(1, weight ? "X" : "W")
            let shape = try inputs.required(2, "shape").integers()
            guard shape.allSatisfy({ $0 >= 0 }) else { throw SegFormerError.invalid("\(label): negative dimension in shape \(shape)") }
            let xShape = weight ? operand.shape : shape, wShape = weight ? shape : operand.shape
            guard dy.dataType == operand.dataType else {
                throw SegFormerError.invalid("\(label): dY is \(dy.dataType), \(weight ? "X" : "W") is \(operand.dataType)")
            }
            guard xShape.count >= 3, wShape.count == xShape.count else {
                throw SegFormerError.invalid("\(label): X \(xShape) must have rank ≥ 3 and W \(wShape) the same rank")
            }
            let n = xShape[0], c = xShape[1], m = wShape[0]
            guard c == wShape[1] * group, m % group == 0 else {
                throw SegFormerError.invalid("\(label): X \(xShape) and W \(wShape) do not match group \(group)")
            }
            let kernel = Array(wShape.dropFirst(2))
            if let ks = attrs.kernelShape, ks != kernel {
                throw SegFormerError.invalid("\(label): kernel_shape \(ks) differs from the weight's spatial shape \(wShape)")
            }
            let geometry = try WindowGeometry(input: Array(xShape.dropFirst(2)), kernel: kernel, attributes: attrs, label)
            guard dy.shape == [n, m] + geometry.output else {
                throw SegFormerError.invalid("\(label): dY has shape \(dy.shape), the Conv of X \(xShape) with W \(wShape) gives \([n, m] + geometry.output)")
            }
            // The result's size is bounded by an existing tensor's (X or W come from the other side).
            let (total, overflow) = shape.reduce((1, false)) { acc, d in
                let r = acc.0.multipliedReportingOverflow(by: d); return (r.partialValue, acc.1 || r.overflow)
            }
            guard !overflow, total < (1 << 34) else { throw SegFormerError.invalid("\(label): absurd shape \(shape)") }
            let s = ConvShape(n: n, c: c, m: m, group: group, geometry: geometry)
            func run<T: BinaryFloatingPoint>(_: T.Type, _ dy: Tensor, _ operand: Tensor) throws -> Tensor {
                weight ? try gradWeight(T.self, dy, operand, s, wShape, tiling, context)
                       : try gradInput(T.self, dy, operand, s, xShape, tiling, context)
            }
            switch dy.dataType {
            case .float: return [try run(Float.self, dy, operand)]
            case .double: return [try run(Double.self, dy, operand)]
            case .float16, .bfloat16:
                return [BLAS.fromFloat32(try run(Float.self, BLAS.toFloat32(dy), BLAS.toFloat32(operand)), to: dy.dataType)]
            default: throw SegFormerError.unsupported("\(label): Conv gradient of \(dy.dataType) tensors")
            }
        }
    }

    static func convGradBiasKernel(_ node: Node) -> Kernel {
        let label = node.label
        return ClosureKernel { inputs, context in
            let dy = try inputs.required(0, "dY")
            guard dy.rank >= 2 else { throw SegFormerError.invalid("\(label): dY must have rank ≥ 2, got \(dy.shape)") }
            let n = dy.shape[0], m = dy.shape[1], spatial = dy.shape.dropFirst(2).reduce(1, *)
            func run<T: BinaryFloatingPoint>(_: T.Type, _ dy: Tensor) -> Tensor {
                let out = Tensor(uninitialized: dy.dataType, shape: [m])
                let src = dy.pointer(T.self), dst = out.pointer(T.self)
                context.parallelFor(m, minimumPerChunk: max(1, 65536 / max(1, n * spatial))) { c0, c1 in
                    for ch in c0..<c1 {
                        var total = 0.0
                        for img in 0..<n { total += Double(sum(src + (img * m + ch) * spatial, spatial)) }
                        dst[ch] = T(total)
                    }
                }
                return out
            }
            switch dy.dataType {
            case .float: return [run(Float.self, dy)]
            case .double: return [run(Double.self, dy)]
            case .float16, .bfloat16: return [BLAS.fromFloat32(run(Float.self, BLAS.toFloat32(dy)), to: dy.dataType)]
            default: throw SegFormerError.unsupported("\(label): Conv gradient of \(dy.dataType) tensors")
            }
        }
    }

    // MARK: dX
    //
    // gradInput and gradWeight dispatch to the same paths in the same order (depthwise, pointwise,
    // tiled) as the forward; their GEMMs differ in operands and transposes, so they stay two functions.

    static func gradInput<T: BinaryFloatingPoint>(_: T.Type, _ dy: Tensor, _ w: Tensor, _ s0: ConvShape, _ xShape: [Int],
                                                  _ tiling: ConvTiling, _ context: ExecutionContext) throws -> Tensor {
        let dx = Tensor(uninitialized: dy.dataType, shape: xShape)
        if dx.count == 0 { return dx }
        let s = s0.lifted
        let g = s.geometry
        let pdy = dy.pointer(T.self), pw = w.pointer(T.self), pdx = dx.pointer(T.self)
        if dy.count == 0 || w.count == 0 {
            BLAS.scale(pdx, m: 1, n: dx.count, ldc: dx.count, beta: 0)
            return dx
        }
        if g.rank == 2 && s.cPerGroup == 1 {
            depthwiseGradInput(T.self, pdy, pw, pdx, s, context)
            return dx
        }
        let inSpatial = g.inputSpatial, outSpatial = g.outputSpatial, taps = g.taps
        let cg = s.cPerGroup, mg = s.mPerGroup, rows = cg * taps
        try BLAS.checkSizes(rows, outSpatial, mg, rows, outSpatial, outSpatial)
        if g.isPointwise {
            s.forEachTile(outSpatial) { img, grp, _, _ in
                BLAS.gemm(T.self, context, transA: true, m: cg, n: inSpatial, k: mg, a: pw + grp * mg * cg, lda: cg,
                          b: pdy + (img * s.m + grp * mg) * outSpatial, ldb: outSpatial,
                          c: pdx + (img * s.c + grp * cg) * inSpatial, ldc: inSpatial)
            }
            return dx
        }
        BLAS.scale(pdx, m: 1, n: dx.count, ldc: dx.count, beta: 0)
        let tile = try s.columnTile(rows: rows, budget: tiling.columnBudget, minimumTile: tiling.minimumTile,
                                    "Conv gradient: column buffer")
        // col2im over the whole image is ConvTranspose's, with the conv's input and output swapped.
        let swapped = WindowGeometry(input: g.output, kernel: g.kernel, strides: g.strides, dilations: g.dilations,
                                     padBegin: g.padBegin, padEnd: g.padEnd, output: g.input)
        let colTensor = columnBuffer(T.self, count: rows * tile)
        let col = colTensor.pointer(T.self)
        s.forEachTile(tile) { img, grp, p0, p1 in
            BLAS.gemm(T.self, context, transA: true, m: rows, n: p1 - p0, k: mg, a: pw + grp * mg * rows, lda: rows,
                      b: pdy + (img * s.m + grp * mg) * outSpatial + p0, ldb: outSpatial, c: col, ldc: p1 - p0)
            let dxg = pdx + (img * s.c + grp * cg) * inSpatial
            if g.rank == 2 {
                col2im2D(col, dxg, g, channels: cg, p0: p0, p1: p1, context)
            } else {
                col2im(col, dxg, swapped, channels: cg, context)
            }
        }
        return dx
    }

    // MARK: dW (dispatch mirrors gradInput's; see there)

    static func gradWeight<T: BinaryFloatingPoint>(_: T.Type, _ dy: Tensor, _ x: Tensor, _ s0: ConvShape, _ wShape: [Int],
                                                   _ tiling: ConvTiling, _ context: ExecutionContext) throws -> Tensor {
        let dw = Tensor(uninitialized: dy.dataType, shape: wShape)
        if dw.count == 0 { return dw }
        let s = s0.lifted
        let g = s.geometry
        let pdy = dy.pointer(T.self), px = x.pointer(T.self), pdw = dw.pointer(T.self)
        BLAS.scale(pdw, m: 1, n: dw.count, ldc: dw.count, beta: 0)
        if dy.count == 0 || x.count == 0 { return dw }
        if g.rank == 2 && s.cPerGroup == 1 {
            depthwiseGradWeight(T.self, pdy, px, pdw, s, context)
            return dw
        }
        let inSpatial = g.inputSpatial, outSpatial = g.outputSpatial, taps = g.taps
        let cg = s.cPerGroup, mg = s.mPerGroup, rows = cg * taps
        try BLAS.checkSizes(mg, rows, outSpatial, outSpatial, outSpatial, rows)
        if g.isPointwise {
            // dWᵍ = Σ_img dYᵍ·Xᵍᵀ: one GEMM per image and group, K = positions, accumulating.
            s.forEachTile(outSpatial) { img, grp, _, _ in
                BLAS.gemm(T.self, context, transB: true, m: mg, n: cg, k: inSpatial,
                          a: pdy + (img * s.m + grp * mg) * outSpatial, lda: outSpatial,
                          b: px + (img * s.c + grp * cg) * inSpatial, ldb: inSpatial,
                          beta: 1, c: pdw + grp * mg * cg, ldc: cg)
            }
            return dw
        }
        let tile = try s.columnTile(rows: rows, budget: tiling.columnBudget * tiling.gradWeightColumnFactor,
                                    minimumTile: tiling.minimumTile, "Conv gradient: im2col buffer")
        let colTensor = columnBuffer(T.self, count: rows * tile)
        let col = colTensor.pointer(T.self)
        s.forEachTile(tile) { img, grp, p0, p1 in
            im2colTile(px + (img * s.c + grp * cg) * inSpatial, col, g, channels: cg, p0: p0, p1: p1, context)
            BLAS.gemm(T.self, context, transB: true, m: mg, n: rows, k: p1 - p0, a: pdy + (img * s.m + grp * mg) * outSpatial + p0,
                      lda: outSpatial, b: col, ldb: p1 - p0, beta: 1, c: pdw + grp * mg * rows, ldc: rows)
        }
        return dw
    }
}
