import GraphIR

extension Convolution {
    // MARK: ConvTranspose
    //
    // The adjoint of Conv: per image and group, col = Wᵍᵀ·Xᵍ (one GEMM, [Mg·taps] × [input positions]),
    // then col2im scatters col into the output (parallel over output channels, so no two threads
    // write the same element).

    struct TransposeAttributes {
        var window: WindowAttributes
        var group: Int
        var outputPadding: [Int]?
        var outputShape: [Int]?

        init(_ node: Node) throws {
            window = try WindowAttributes(node)
            group = try node.int("group", default: 1)
            guard group >= 1 else { throw SegFormerError.invalid("\(node.label): group must be ≥ 1, got \(group)") }
            outputPadding = try node.ints("output_padding")
            outputShape = try node.ints("output_shape")
            if let op = outputPadding, op.contains(where: { $0 < 0 }) {
                throw SegFormerError.invalid("\(node.label): output_padding must be ≥ 0, got \(op)")
            }
        }

        /// Output size, pad at the start and pad at the end per spatial dim (known sizes).
        func geometry(input: [Int], kernel: [Int], _ label: String) throws -> WindowGeometry {
            let rank = input.count
            let (s, d, p) = try window.resolved(rank: rank, label)
            let op = outputPadding ?? [Int](repeating: 0, count: rank)
            guard op.count == rank, kernel.count == rank else {
                throw SegFormerError.invalid("\(label): output_padding \(op) / kernel \(kernel) do not match \(rank) spatial dims")
            }
            var wanted: [Int]? = nil
            if let os = outputShape {
                guard os.count == rank || os.count == rank + 2 else {
                    throw SegFormerError.invalid("\(label): output_shape \(os) does not match \(rank) spatial dims")
                }
                wanted = Array(os.suffix(rank))
            } else if window.autoPad == "SAME_UPPER" || window.autoPad == "SAME_LOWER" {
                wanted = zip(input, s).map { $0 * $1 }
            }
            var g = WindowGeometry(input: input, kernel: kernel, strides: s, dilations: d, padBegin: [], padEnd: [], output: [])
            for i in 0..<rank {
                let full = s[i] * (input[i] - 1) + op[i] + (kernel[i] - 1) * d[i] + 1
                var pb = p[i], pe = p[i + rank]
                if window.autoPad == "VALID" { pb = 0; pe = 0 }
                if let wanted {
                    let total = full - wanted[i]
                    // SAME_UPPER puts the odd pad at the end, otherwise at the start (ONNX spec).
                    pb = window.autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
                    pe = total - pb
                }
                let out = full - pb - pe
                guard out >= 1, out < (1 << 31) else {
                    throw SegFormerError.invalid("\(label): input \(input), kernel \(kernel), strides \(s), pads \(p), output_padding \(op) give output size \(out)")
                }
                g.padBegin.append(pb); g.padEnd.append(pe); g.output.append(out)
            }
            return g
        }
    }
    static func convTransposeKernel(_ node: Node) throws -> Kernel {
        let label = node.label
        let attrs = try TransposeAttributes(node)
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0, "X"), w = try inputs.required(1, "W")
            let b = inputs.optional(2)
            guard x.dataType == w.dataType, b == nil || b!.dataType == x.dataType else {
                throw SegFormerError.invalid("\(label): ConvTranspose inputs have different types X \(x.dataType), W \(w.dataType)")
            }
            guard x.rank >= 3, w.rank == x.rank else {
                throw SegFormerError.invalid("\(label): ConvTranspose needs X of rank ≥ 3 and W of the same rank, got \(x.shape) and \(w.shape)")
            }
            let group = attrs.group
            let n = x.shape[0], c = x.shape[1], mg = w.shape[1], m = mg * group
            guard c == w.shape[0], c % group == 0 else {
                throw SegFormerError.invalid("\(label): ConvTranspose input X \(x.shape) has \(c) channels; W \(w.shape) with group \(group) needs W[0] == C divisible by group")
            }
            if let b, b.shape != [m] {
                throw SegFormerError.invalid("\(label): ConvTranspose bias B must have shape [\(m)], got \(b.shape)")
            }
            let kernel = Array(w.shape.dropFirst(2))
            if let ks = attrs.window.kernelShape, ks != kernel {
                throw SegFormerError.invalid("\(label): ConvTranspose kernel_shape \(ks) differs from the weight's spatial shape \(w.shape)")
            }
            let g = try attrs.geometry(input: Array(x.shape.dropFirst(2)), kernel: kernel, label)
            let s = ConvShape(n: n, c: c, m: m, group: group, geometry: g)
            switch x.dataType {
            case .float: return [try transpose(Float.self, x, w, b, s, context)]
            case .double: return [try transpose(Double.self, x, w, b, s, context)]
            case .float16, .bfloat16:
                let y = try transpose(Float.self, BLAS.toFloat32(x), BLAS.toFloat32(w), b.map { BLAS.toFloat32($0) }, s, context)
                return [BLAS.fromFloat32(y, to: x.dataType)]
            default: throw SegFormerError.unsupported("\(label): ConvTranspose of \(x.dataType) tensors")
            }
        }
    }

    static func transpose<T: BinaryFloatingPoint>(_: T.Type, _ x: Tensor, _ w: Tensor, _ b: Tensor?, _ s: ConvShape,
                                                  _ context: ExecutionContext) throws -> Tensor {
        let g = s.geometry
        let y = Tensor(uninitialized: x.dataType, shape: [s.n, s.m] + g.output)
        let inSpatial = g.inputSpatial, outSpatial = g.outputSpatial, taps = g.taps
        let cg = s.cPerGroup, mg = s.mPerGroup
        let px = x.pointer(T.self), pw = w.pointer(T.self), py = y.pointer(T.self)
        fillBias(py, b.map { UnsafePointer($0.pointer(T.self)) }, n: s.n, m: s.m, spatial: outSpatial)
        if y.count == 0 || x.count == 0 || w.count == 0 { return y }
        let rows = mg * taps
        guard rows.multipliedReportingOverflow(by: inSpatial).partialValue < (1 << 31) else {
            throw SegFormerError.unsupported("ConvTranspose: column buffer of \(rows)×\(inSpatial) is too large")
        }
        try BLAS.checkSizes(rows, inSpatial, cg, rows, inSpatial, inSpatial)
        let colTensor = columnBuffer(T.self, count: rows * inSpatial)
        let col = colTensor.pointer(T.self)
        for img in 0..<s.n {
            for grp in 0..<s.group {
                BLAS.gemm(T.self, context, transA: true, m: rows, n: inSpatial, k: cg, a: pw + grp * cg * rows, lda: rows,
                          b: px + (img * s.c + grp * cg) * inSpatial, ldb: inSpatial, c: col, ldc: inSpatial)
                col2im(col, py + (img * s.m + grp * mg) * outSpatial, g, channels: mg, context)
            }
        }
        return y
    }
}
