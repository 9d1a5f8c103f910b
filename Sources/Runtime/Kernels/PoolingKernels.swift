import GraphIR

// CPU kernels of the Pooling family: the schemas (what each op means) are in Ops/Pooling.swift.
enum Pooling {
    // MARK: shape rules

    // MARK: global pools

    static func globalKernel(_ node: Node, average: Bool) -> Kernel {
        let label = node.label
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0, "X")
            guard x.rank >= 3 else { throw SegFormerError.invalid("\(label): input must have rank ≥ 3, got shape \(x.shape)") }
            let outShape = Array(x.shape.prefix(2)) + [Int](repeating: 1, count: x.rank - 2)
            let planes = x.shape[0] * x.shape[1], size = x.shape.dropFirst(2).reduce(1, *)
            guard size > 0 || planes == 0 else { throw SegFormerError.invalid("\(label): empty spatial extent in \(x.shape)") }
            // The same element-type dispatch as the windowed kernels below, each onto its own generic
            // kernel (Swift closures cannot be generic, so the switch is not shared).
            switch x.dataType {
            case .float: return [global(Float.self, x, outShape, planes, size, average, context)]
            case .double: return [global(Double.self, x, outShape, planes, size, average, context)]
            case .float16, .bfloat16:
                let y = global(Float.self, BLAS.toFloat32(x), outShape, planes, size, average, context)
                return [BLAS.fromFloat32(y, to: x.dataType)]
            default: throw SegFormerError.unsupported("\(label): \(x.dataType) input")
            }
        }
    }

    static func global<T: BinaryFloatingPoint>(_: T.Type, _ x: Tensor, _ outShape: [Int], _ planes: Int, _ size: Int,
                                               _ average: Bool, _ context: ExecutionContext) -> Tensor {
        let y = Tensor(uninitialized: x.dataType, shape: outShape)
        let px = x.pointer(T.self), py = y.pointer(T.self)
        context.parallelFor(planes, minimumPerChunk: max(1, 16384 / max(1, size))) { start, end in
            for p in start..<end {
                let src = px + p * size
                if average {
                    var s = 0.0
                    for i in 0..<size { s += Double(src[i]) }
                    py[p] = T(s / Double(size))
                } else {
                    var m = src[0]
                    for i in 1..<max(1, size) where src[i] > m || src[i].isNaN { m = src[i]; if m.isNaN { break } }
                    py[p] = m
                }
            }
        }
        return y
    }

    // MARK: windowed pools

    static func poolKernel(_ node: Node, average: Bool) throws -> Kernel {
        let label = node.label
        let attrs = try WindowAttributes(node)
        guard let kernel = attrs.kernelShape else { throw SegFormerError.invalid("\(label): missing attribute kernel_shape") }
        let ceilMode = try node.int("ceil_mode", default: 0) != 0
        let includePad = try node.int("count_include_pad", default: 0) != 0
        let storageOrder = try node.int("storage_order", default: 0)
        guard storageOrder == 0 || storageOrder == 1 else {
            throw SegFormerError.invalid("\(label): storage_order must be 0 or 1, got \(storageOrder)")
        }
        let wantIndices = node.outputs.count > 1 && !node.outputs[1].isEmpty
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0, "X")
            guard x.rank >= 3, x.rank - 2 == kernel.count else {
                throw SegFormerError.invalid("\(label): input of shape \(x.shape) does not match kernel_shape \(kernel)")
            }
            let g = try WindowGeometry(input: Array(x.shape.dropFirst(2)), kernel: kernel, attributes: attrs,
                                       ceilMode: ceilMode, label)
            let plan = WindowPlan(g)
            let outShape = Array(x.shape.prefix(2)) + g.output
            let planes = x.shape[0] * x.shape[1]
            if average {
                // Element-type dispatch as in globalKernel above, onto this kernel.
                switch x.dataType {
                case .float: return [averagePool(Float.self, x, outShape, planes, plan, includePad, context)]
                case .double: return [averagePool(Double.self, x, outShape, planes, plan, includePad, context)]
                case .float16, .bfloat16:
                    let y = averagePool(Float.self, BLAS.toFloat32(x), outShape, planes, plan, includePad, context)
                    return [BLAS.fromFloat32(y, to: x.dataType)]
                default: throw SegFormerError.unsupported("\(label): AveragePool of \(x.dataType)")
                }
            }
            let order = storageOrder
            var outputs: [Tensor]
            switch x.dataType {
            case .float: outputs = maxPool(Float.self, x, outShape, planes, plan, -Float.infinity, wantIndices, order, context)
            case .double: outputs = maxPool(Double.self, x, outShape, planes, plan, -Double.infinity, wantIndices, order, context)
            case .float16, .bfloat16:
                let r = maxPool(Float.self, BLAS.toFloat32(x), outShape, planes, plan, -Float.infinity, wantIndices, order, context)
                outputs = [BLAS.fromFloat32(r[0], to: x.dataType)] + r.dropFirst()
            case .int8: outputs = maxPool(Int8.self, x, outShape, planes, plan, .min, wantIndices, order, context)
            case .uint8: outputs = maxPool(UInt8.self, x, outShape, planes, plan, .min, wantIndices, order, context)
            case .int32: outputs = maxPool(Int32.self, x, outShape, planes, plan, .min, wantIndices, order, context)
            case .int64: outputs = maxPool(Int64.self, x, outShape, planes, plan, .min, wantIndices, order, context)
            default: throw SegFormerError.unsupported("\(label): MaxPool of \(x.dataType)")
            }
            if node.outputs.count > 1 && !wantIndices { outputs.append(Tensor(zeros: .int64, shape: outShape)) }
            return outputs
        }
    }

    /// Per spatial dim and output coordinate, the input coordinates of the window's taps that lie
    /// inside the input (flat over taps: `taps[d][o*k + t]`, −1 when outside), and how many taps lie
    /// inside the padded extent (for count_include_pad).
    struct WindowPlan {
        var g: WindowGeometry
        var taps: [[Int]]
        var paddedCount: [[Int]]
        var inStrides: [Int]

        init(_ g: WindowGeometry) {
            self.g = g
            taps = []; paddedCount = []
            for d in 0..<g.rank {
                var t: [Int] = [], pc: [Int] = []
                for o in 0..<g.output[d] {
                    var inPad = 0
                    for k in 0..<g.kernel[d] {
                        let v = o * g.strides[d] - g.padBegin[d] + k * g.dilations[d]
                        t.append(v >= 0 && v < g.input[d] ? v : -1)
                        if v < g.input[d] + g.padEnd[d] { inPad += 1 }
                    }
                    pc.append(inPad)
                }
                taps.append(t); paddedCount.append(pc)
            }
            inStrides = Strides.rowMajor(g.input)
        }

        var inSize: Int { g.input.reduce(1, *) }
        var outSize: Int { g.output.reduce(1, *) }
        var tapCount: Int { g.kernel.reduce(1, *) }

        /// Calls `body(outputIndex, offsets)` for each output position with the flat input offsets of
        /// its window taps inside the input (`valid` of them) and the count inside the padded extent.
        @inline(__always)
        func forEachWindow(_ body: (Int, UnsafeBufferPointer<Int>, Int) -> Void) {
            let rank = g.rank, kt = tapCount
            var o = [Int](repeating: 0, count: rank), k = [Int](repeating: 0, count: rank)
            var offsets = [Int](repeating: 0, count: kt)
            offsets.withUnsafeMutableBufferPointer { off in
                for p in 0..<outSize {
                    var valid = 0, padded = 1
                    for d in 0..<rank { padded *= paddedCount[d][o[d]]; k[d] = 0 }
                    for _ in 0..<kt {
                        var flat = 0, inside = true
                        for d in 0..<rank {
                            let v = taps[d][o[d] * g.kernel[d] + k[d]]
                            if v < 0 { inside = false; break }
                            flat += v * inStrides[d]
                        }
                        if inside { off[valid] = flat; valid += 1 }
                        var d = rank - 1
                        while d >= 0 { k[d] += 1; if k[d] < g.kernel[d] { break }; k[d] = 0; d -= 1 }
                    }
                    body(p, UnsafeBufferPointer(rebasing: off[0..<valid]), padded)
                    var d = rank - 1
                    while d >= 0 { o[d] += 1; if o[d] < g.output[d] { break }; o[d] = 0; d -= 1 }
                }
            }
        }
    }

    static func averagePool<T: BinaryFloatingPoint>(_: T.Type, _ x: Tensor, _ outShape: [Int], _ planes: Int, _ plan: WindowPlan,
                                                    _ includePad: Bool, _ context: ExecutionContext) -> Tensor {
        let y = Tensor(uninitialized: x.dataType, shape: outShape)
        let px = x.pointer(T.self), py = y.pointer(T.self)
        let inSize = plan.inSize, outSize = plan.outSize
        context.parallelFor(planes, minimumPerChunk: max(1, 16384 / max(1, outSize * plan.tapCount))) { start, end in
            for pl in start..<end {
                let src = px + pl * inSize, dst = py + pl * outSize
                plan.forEachWindow { p, offsets, padded in
                    var s = 0.0
                    for off in offsets { s += Double(src[off]) }
                    let n = includePad ? padded : offsets.count
                    dst[p] = n > 0 ? T(s / Double(n)) : 0
                }
            }
        }
        return y
    }

    static func maxPool<T: Comparable>(_: T.Type, _ x: Tensor, _ outShape: [Int], _ planes: Int, _ plan: WindowPlan,
                                       _ lowest: T, _ wantIndices: Bool, _ storageOrder: Int,
                                       _ context: ExecutionContext) -> [Tensor] {
        let y = Tensor(uninitialized: x.dataType, shape: outShape)
        let indices = wantIndices ? Tensor(uninitialized: .int64, shape: outShape) : nil
        let px = x.pointer(T.self), py = y.pointer(T.self), pi = indices?.pointer(Int64.self)
        let inSize = plan.inSize, outSize = plan.outSize
        // Column-major (storage_order 1) index of a row-major spatial offset.
        let dims = plan.g.input
        var colStrides = [Int](repeating: 1, count: dims.count)
        for d in 1..<max(1, dims.count) { colStrides[d] = colStrides[d - 1] * dims[d - 1] }
        let rowStrides = plan.inStrides
        context.parallelFor(planes, minimumPerChunk: max(1, 16384 / max(1, outSize * plan.tapCount))) { start, end in
            for pl in start..<end {
                let src = px + pl * inSize, dst = py + pl * outSize
                plan.forEachWindow { p, offsets, _ in
                    var m = lowest, at = -1
                    for off in offsets where at < 0 || src[off] > m { m = src[off]; at = off }
                    dst[p] = m
                    if let pi {
                        var idx = max(at, 0)
                        if storageOrder == 1 {
                            var rem = idx, col = 0
                            for d in 0..<dims.count { col += (rem / rowStrides[d]) * colStrides[d]; rem %= rowStrides[d] }
                            idx = col
                        }
                        pi[pl * outSize + p] = Int64(pl * inSize + idx)
                    }
                }
            }
        }
        return indices.map { [y, $0] } ?? [y]
    }

    // MARK: gradients
    //
    // Average pools spread dY evenly over each window (divided by the forward's count); max pools
    // route dY to the first maximum of each window (the forward's tie-breaking), recomputed from X.
    // Every (image, channel) plane is independent: parallel over planes, scatter within a plane.

    static func poolGradKernel(_ node: Node) throws -> Kernel {
        let label = node.label
        let mode = try node.string("mode", default: "")
        guard ["global_average", "global_max", "average", "max"].contains(mode) else {
            throw SegFormerError.invalid("\(label): PoolGrad mode must be global_average, global_max, average or max, got '\(mode)'")
        }
        let windowed = mode == "average" || mode == "max"
        let attrs = try WindowAttributes(node)
        if windowed && attrs.kernelShape == nil { throw SegFormerError.invalid("\(label): missing attribute kernel_shape") }
        let ceilMode = try node.int("ceil_mode", default: 0) != 0
        let includePad = try node.int("count_include_pad", default: 0) != 0
        return ClosureKernel { inputs, context in
            let dy = try inputs.required(0, "dY"), second = try inputs.required(1)
            let xShape: [Int]
            if mode == "max" || mode == "global_max" {
                xShape = second.shape
                guard second.dataType == dy.dataType else {
                    throw SegFormerError.invalid("\(label): dY is \(dy.dataType), X is \(second.dataType)")
                }
            } else {
                xShape = try second.integers()
            }
            guard xShape.count >= 3, xShape.allSatisfy({ $0 >= 0 }) else {
                throw SegFormerError.invalid("\(label): input shape \(xShape) must have rank ≥ 3")
            }
            let spatial = Array(xShape.dropFirst(2))
            let kernel = windowed ? attrs.kernelShape! : spatial
            guard kernel.count == spatial.count else {
                throw SegFormerError.invalid("\(label): input of shape \(xShape) does not match kernel_shape \(kernel)")
            }
            let g = windowed
                ? try WindowGeometry(input: spatial, kernel: kernel, attributes: attrs, ceilMode: ceilMode, label)
                : WindowGeometry(input: spatial, kernel: spatial, strides: spatial.map { _ in 1 }, dilations: spatial.map { _ in 1 },
                                 padBegin: spatial.map { _ in 0 }, padEnd: spatial.map { _ in 0 }, output: spatial.map { _ in 1 })
            let outShape = Array(xShape.prefix(2)) + g.output
            guard dy.shape == outShape else {
                throw SegFormerError.invalid("\(label): dY has shape \(dy.shape), the pool of \(xShape) gives \(outShape)")
            }
            if !windowed && spatial.contains(0) && dy.count > 0 { throw SegFormerError.invalid("\(label): empty spatial extent in \(xShape)") }
            let planes = xShape[0] * xShape[1]
            func run<T: BinaryFloatingPoint>(_: T.Type, _ dy: Tensor, _ x: Tensor?) -> Tensor {
                poolGrad(T.self, dy, x, xShape, planes, WindowPlan(g), average: mode.hasSuffix("average"),
                         includePad: includePad || mode == "global_average", context)
            }
            let x = mode.hasSuffix("max") ? second : nil
            switch dy.dataType {
            case .float: return [run(Float.self, dy, x)]
            case .double: return [run(Double.self, dy, x)]
            case .float16, .bfloat16:
                return [BLAS.fromFloat32(run(Float.self, BLAS.toFloat32(dy), x.map { BLAS.toFloat32($0) }), to: dy.dataType)]
            default: throw SegFormerError.unsupported("\(label): pool gradient of \(dy.dataType) tensors")
            }
        }
    }

    static func poolGrad<T: BinaryFloatingPoint>(_: T.Type, _ dy: Tensor, _ x: Tensor?, _ xShape: [Int], _ planes: Int,
                                                 _ plan: WindowPlan, average: Bool, includePad: Bool,
                                                 _ context: ExecutionContext) -> Tensor {
        let dx = Tensor(uninitialized: dy.dataType, shape: xShape)
        let pdy = dy.pointer(T.self), pdx = dx.pointer(T.self), px = x.map { UnsafePointer($0.pointer(T.self)) }
        let inSize = plan.inSize, outSize = plan.outSize
        context.parallelFor(planes, minimumPerChunk: max(1, 16384 / max(1, outSize * plan.tapCount + inSize))) { start, end in
            for pl in start..<end {
                let dst = pdx + pl * inSize, grad = pdy + pl * outSize
                for i in 0..<inSize { dst[i] = 0 }
                if average {
                    plan.forEachWindow { p, offsets, padded in
                        let n = includePad ? padded : offsets.count
                        guard n > 0 else { return }
                        let v = grad[p] / T(n)
                        for off in offsets { dst[off] += v }
                    }
                } else if let px {
                    let src = px + pl * inSize
                    plan.forEachWindow { p, offsets, _ in
                        var m: T = 0, at = -1
                        for off in offsets where at < 0 || src[off] > m { m = src[off]; at = off }
                        if at >= 0 { dst[at] += grad[p] }
                    }
                }
            }
        }
        return dx
    }
}
