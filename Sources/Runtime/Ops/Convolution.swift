import GraphIR

// Conv (N-D, groups, pads/auto_pad, strides, dilations, optional bias).
// float32/float64 paths, chosen once per call from the geometry:
//  * 1×1, stride 1, no padding: one GEMM per image and group on the input as it is (no im2col);
//  * one input channel per group (depthwise, SegFormer's MixFFN 3×3): a direct kernel, parallel
//    over output channels;
//  * everything else 2-D: im2col over a tile of output positions (parallel over im2col rows)
//    followed by one GEMM per tile and group. Non-overlapping convs (kernel == stride, the
//    spatial-reduction convs) take this path too: their im2col is a pure re-layout.
//  * 1-D is run as 2-D with height 1; 3-D and higher use a generic N-D im2col.
// float16/bfloat16 are computed in float32.

extension OpRegistry {
    static let convolutionOps: [OpSchema] = [
        OpSchema("Conv", opsets: 1...23, inputs: 2...3,
                 inferTypes: { try Convolution.inferConv($0) },
                 makeKernel: { node, _ in try Convolution.convKernel(node) })
            .withGradient { try Convolution.convGradient($0) },
        OpSchema("ConvTranspose", opsets: 1...23, inputs: 2...3,
                 inferTypes: { try Convolution.inferConvTranspose($0) },
                 makeKernel: { node, _ in try Convolution.convTransposeKernel(node) })
            .withGradient { try Convolution.convTransposeGradient($0) },
        // Training kernels (Conv's backward; see "MARK: gradients").
        OpSchema("ConvGradInput", domain: trainingDomain, inputs: 3...3, shapeInputs: [2],
                 inferTypes: { ctx in [LinearAlgebra.inferFromTarget(ctx, 2)] },
                 makeKernel: { node, _ in try Convolution.convGradKernel(node, weight: false) }),
        OpSchema("ConvGradWeight", domain: trainingDomain, inputs: 3...3, shapeInputs: [2],
                 inferTypes: { ctx in [LinearAlgebra.inferFromTarget(ctx, 2)] },
                 makeKernel: { node, _ in try Convolution.convGradKernel(node, weight: true) }),
        OpSchema("ConvGradBias", domain: trainingDomain, inputs: 1...1,
                 inferTypes: { ctx in
                     guard let t = ctx.type(0) else { return [nil] }
                     return [TensorType(t.dataType, t.shape.map { $0.count >= 2 ? [$0[1]] : [] })]
                 },
                 makeKernel: { node, _ in Convolution.convGradBiasKernel(node) }),
    ]
}

/// Spatial window attributes shared by Conv and the pools.
struct WindowAttributes {
    var autoPad: String
    var kernelShape: [Int]?
    var strides: [Int]?
    var dilations: [Int]?
    var pads: [Int]?

    init(_ node: Node) throws {
        autoPad = try node.string("auto_pad", default: "NOTSET")
        guard ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"].contains(autoPad) else {
            throw SegFormerError.invalid("\(node.label): unknown auto_pad '\(autoPad)'")
        }
        kernelShape = try node.ints("kernel_shape")
        strides = try node.ints("strides")
        dilations = try node.ints("dilations")
        pads = try node.ints("pads")
        if let s = strides, s.contains(where: { $0 < 1 }) { throw SegFormerError.invalid("\(node.label): strides must be ≥ 1, got \(s)") }
        if let d = dilations, d.contains(where: { $0 < 1 }) { throw SegFormerError.invalid("\(node.label): dilations must be ≥ 1, got \(d)") }
        if let p = pads, p.contains(where: { $0 < 0 }) { throw SegFormerError.invalid("\(node.label): pads must be ≥ 0, got \(p)") }
        if let k = kernelShape, k.contains(where: { $0 < 1 }) { throw SegFormerError.invalid("\(node.label): kernel_shape must be ≥ 1, got \(k)") }
    }

    /// Strides, dilations and pads for `rank` spatial dims, defaults filled in, lengths checked.
    func resolved(rank: Int, _ label: String) throws -> (strides: [Int], dilations: [Int], pads: [Int]) {
        let s = strides ?? [Int](repeating: 1, count: rank)
        let d = dilations ?? [Int](repeating: 1, count: rank)
        let p = pads ?? [Int](repeating: 0, count: 2 * rank)
        guard s.count == rank, d.count == rank, p.count == 2 * rank else {
            throw SegFormerError.invalid("\(label): for \(rank) spatial dims expected \(rank) strides, \(rank) dilations and \(2 * rank) pads, got strides \(s), dilations \(d), pads \(p)")
        }
        return (s, d, p)
    }
}

/// The concrete geometry of a sliding-window op over `rank` spatial dimensions.
struct WindowGeometry {
    var inputSpatial: Int { input.reduce(1, *) }
    var outputSpatial: Int { output.reduce(1, *) }
    var taps: Int { kernel.reduce(1, *) }
    /// A 1×…×1 kernel with unit strides and no padding: the conv is a plain GEMM over positions.
    var isPointwise: Bool {
        taps == 1 && strides.allSatisfy { $0 == 1 } && padBegin.allSatisfy { $0 == 0 } && padEnd.allSatisfy { $0 == 0 }
    }
    var input: [Int]
    var kernel: [Int]
    var strides: [Int]
    var dilations: [Int]
    var padBegin: [Int]
    var padEnd: [Int]
    var output: [Int]

    var rank: Int { input.count }

    init(input: [Int], kernel: [Int], strides: [Int], dilations: [Int], padBegin: [Int], padEnd: [Int], output: [Int]) {
        self.input = input; self.kernel = kernel; self.strides = strides; self.dilations = dilations
        self.padBegin = padBegin; self.padEnd = padEnd; self.output = output
    }

    /// Resolves pads (auto_pad) and output sizes. `ceilMode` is the pools' ceil_mode (a last window
    /// that would start inside the end padding is dropped, as PyTorch and the ONNX reference do).
    init(input: [Int], kernel: [Int], attributes a: WindowAttributes, ceilMode: Bool = false, _ label: String) throws {
        let rank = input.count
        let (s, d, p) = try a.resolved(rank: rank, label)
        guard kernel.count == rank else {
            throw SegFormerError.invalid("\(label): kernel has \(kernel.count) spatial dims, input has \(rank) (\(input))")
        }
        self.input = input; self.kernel = kernel; strides = s; dilations = d
        padBegin = []; padEnd = []; output = []
        for i in 0..<rank {
            let dk = (kernel[i] - 1) * d[i] + 1
            var pb = p[i], pe = p[i + rank], out: Int
            switch a.autoPad {
            case "SAME_UPPER", "SAME_LOWER":
                out = (input[i] + s[i] - 1) / s[i]
                let total = max(0, (out - 1) * s[i] + dk - input[i])
                pb = a.autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
                pe = total - pb
            case "VALID":
                pb = 0; pe = 0
                out = input[i] >= dk ? (input[i] - dk) / s[i] + 1 : 0
            default:
                let span = input[i] + pb + pe - dk
                if span < 0 { out = 0 } else if ceilMode {
                    out = (span + s[i] - 1) / s[i] + 1
                    if (out - 1) * s[i] >= input[i] + pb { out -= 1 }
                } else { out = span / s[i] + 1 }
            }
            guard out >= 1 else {
                throw SegFormerError.invalid("\(label): input spatial size \(input) with kernel \(kernel), strides \(s), dilations \(d), pads \(p) (auto_pad \(a.autoPad)) gives an empty output")
            }
            padBegin.append(pb); padEnd.append(pe); output.append(out)
        }
        var total = 1
        for v in output {
            let (r, o) = total.multipliedReportingOverflow(by: v)
            guard !o, r < (1 << 34) else {
                throw SegFormerError.invalid("\(label): output spatial size \(output) is absurd (pads \(p))")
            }
            total = r
        }
    }

    /// The 1-D geometry seen as 2-D with a height-1 leading dimension.
    var lifted2D: WindowGeometry {
        var g = self
        g.input = [1] + input; g.kernel = [1] + kernel; g.strides = [1] + strides; g.dilations = [1] + dilations
        g.padBegin = [0] + padBegin; g.padEnd = [0] + padEnd; g.output = [1] + output
        return g
    }

    /// The same computation symbolically (for shape inference); nil entries of `kernel` are unknown.
    static func symbolicOutput(input: [Dim], kernel: [Int?], attributes a: WindowAttributes, ceilMode: Bool = false,
                               _ label: String) throws -> [Dim] {
        let rank = input.count
        guard kernel.count == rank else {
            throw SegFormerError.invalid("\(label): kernel has \(kernel.count) spatial dims, input has \(rank)")
        }
        let (s, d, p) = try a.resolved(rank: rank, label)
        var out: [Dim] = []
        for i in 0..<rank {
            guard let k = kernel[i] else { out.append(.symbol("\(label)_out\(i)")); return out + (i + 1..<rank).map { .symbol("\(label)_out\($0)") } }
            if let v = input[i].value {
                let g = try WindowGeometry(input: [v], kernel: [k],
                                           attributes: a.slice(i, rank: rank), ceilMode: ceilMode, label)
                out.append(.known(g.output[0]))
                continue
            }
            let name = input[i].description
            let dk = (k - 1) * d[i] + 1
            switch a.autoPad {
            case "SAME_UPPER", "SAME_LOWER":
                out.append(s[i] == 1 ? input[i] : .symbol("ceil(\(name)/\(s[i]))"))
            case "VALID":
                out.append(s[i] == 1 && dk == 1 ? input[i] : .symbol("ceil((\(name)-\(dk - 1))/\(s[i]))"))
            default:
                let extra = p[i] + p[i + rank] - dk
                if s[i] == 1 && extra == -1 { out.append(input[i]); continue }
                let expr = extra == 0 ? name : extra > 0 ? "\(name)+\(extra)" : "\(name)-\(-extra)"
                out.append(.symbol("\(ceilMode ? "ceil" : "floor")((\(expr))/\(s[i]))+1"))
            }
        }
        return out
    }
}

extension WindowAttributes {
    /// The attributes of spatial dimension `i` alone (for computing one dimension at a time).
    func slice(_ i: Int, rank: Int) -> WindowAttributes {
        var a = self
        a.kernelShape = kernelShape.map { [$0[i]] }
        a.strides = strides.map { [$0[i]] }
        a.dilations = dilations.map { [$0[i]] }
        a.pads = pads.map { [$0[i], $0[i + rank]] }
        return a
    }
}

enum Convolution {
    // MARK: shape rule

    static func inferConv(_ ctx: TypeInferenceContext) throws -> [TensorType?] {
        guard let tx = ctx.type(0) else { return [nil] }
        guard let xs = tx.shape else { return [TensorType(tx.dataType, nil)] }
        let label = ctx.node.label
        guard xs.count >= 3 else { throw SegFormerError.invalid("\(label): Conv input must have rank ≥ 3, got \(tx)") }
        let attrs = try WindowAttributes(ctx.node)
        let ws = ctx.type(1)?.shape
        if let ws, ws.count != xs.count {
            throw SegFormerError.invalid("\(label): Conv weight rank \(ws.count) differs from input rank \(xs.count)")
        }
        let rank = xs.count - 2
        var kernel: [Int?] = attrs.kernelShape ?? (ws.map { $0.dropFirst(2).map(\.value) } ?? [Int?](repeating: nil, count: rank))
        if kernel.count != rank { kernel = [Int?](repeating: nil, count: rank) }
        let m: Dim = ws?[0] ?? .symbol("\(label)_M")
        let spatial = try WindowGeometry.symbolicOutput(input: Array(xs.dropFirst(2)), kernel: kernel, attributes: attrs, label)
        return [TensorType(tx.dataType, [xs[0], m] + spatial)]
    }

    // MARK: kernel

    static func convKernel(_ node: Node) throws -> Kernel {
        let label = node.label
        let attrs = try WindowAttributes(node)
        let group = try node.int("group", default: 1)
        guard group >= 1 else { throw SegFormerError.invalid("\(label): group must be ≥ 1, got \(group)") }
        return ClosureKernel { inputs, context in
            BLAS.useThreads(context.threads)
            let x = try inputs.required(0, "X"), w = try inputs.required(1, "W")
            let b = inputs.optional(2)
            return [try conv(x, w, b, attrs, group, label, context)]
        }
    }

    /// Validated sizes of one Conv call.
    struct ConvShape {
        var n: Int, c: Int, m: Int, group: Int
        var geometry: WindowGeometry
        var cPerGroup: Int { c / group }
        var mPerGroup: Int { m / group }
        /// The same convolution with a 1-D geometry seen as 2-D (height 1), which the kernels handle.
        var lifted: ConvShape {
            var s = self
            if s.geometry.rank == 1 { s.geometry = s.geometry.lifted2D }
            return s
        }
    }

    static func conv(_ x: Tensor, _ w: Tensor, _ b: Tensor?, _ attrs: WindowAttributes, _ group: Int,
                     _ label: String, _ context: ExecutionContext) throws -> Tensor {
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
        case .float: return try run(Float.self, x, w, b, s, outShape, context)
        case .double: return try run(Double.self, x, w, b, s, outShape, context)
        case .float16, .bfloat16:
            let y = try run(Float.self, BLAS.toFloat32(x), BLAS.toFloat32(w), b.map { BLAS.toFloat32($0) }, s, outShape, context)
            return BLAS.fromFloat32(y, to: x.dataType)
        default:
            throw SegFormerError.unsupported("\(label): Conv of \(x.dataType) tensors")
        }
    }

    static func run<T: BinaryFloatingPoint>(_: T.Type, _ x: Tensor, _ w: Tensor, _ b: Tensor?, _ s0: ConvShape,
                                            _ outShape: [Int], _ context: ExecutionContext) throws -> Tensor {
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
        try gemmConv(T.self, px, pw, pb, py, s, context)
        return y
    }

    static func fillBias<T: BinaryFloatingPoint>(_ py: UnsafeMutablePointer<T>, _ pb: UnsafePointer<T>?, n: Int, m: Int, spatial: Int) {
        for i in 0..<(n * m) {
            let v = pb?[i % m] ?? 0
            let row = py + i * spatial
            for j in 0..<spatial { row[j] = v }
        }
    }

    // MARK: depthwise (one input channel per group), direct

    static func depthwise2D<T: BinaryFloatingPoint>(_ px: UnsafePointer<T>, _ pw: UnsafePointer<T>, _ pb: UnsafePointer<T>?,
                                                    _ py: UnsafeMutablePointer<T>, _ s: ConvShape, _ context: ExecutionContext) {
        let g = s.geometry
        let (H, W) = (g.input[0], g.input[1]), (KH, KW) = (g.kernel[0], g.kernel[1])
        let (OH, OW) = (g.output[0], g.output[1]), (SH, SW) = (g.strides[0], g.strides[1])
        let (DH, DW) = (g.dilations[0], g.dilations[1]), (PH, PW) = (g.padBegin[0], g.padBegin[1])
        let m = s.m, mPerGroup = s.mPerGroup, c = s.c
        let work = OH * OW * KH * KW
        context.parallelFor(s.n * m, minimumPerChunk: max(1, 32768 / max(1, work))) { start, end in
            for idx in start..<end {
                let img = idx / m, oc = idx % m
                let src = px + (img * c + oc / mPerGroup) * H * W
                let wk = pw + oc * KH * KW
                let dst = py + idx * OH * OW
                let bias = pb?[oc] ?? 0
                for j in 0..<(OH * OW) { dst[j] = bias }
                for oh in 0..<OH {
                    let drow = dst + oh * OW
                    let top = oh * SH - PH
                    if SW == 1 && KW == 3 && KH == 3 && top >= 0 && top + 2 * DH < H {
                        // 3×3 with all three input rows inside: the nine taps in one pass over the
                        // interior columns (one store per output), then the edge columns.
                        let b0 = -PW, b1 = DW - PW, b2 = 2 * DW - PW
                        let r0 = validRange(base: b0, stride: 1, size: W, count: OW)
                        let r2 = validRange(base: b2, stride: 1, size: W, count: OW)
                        let lo = max(r0.0, r2.0), hi = max(lo, min(r0.1, r2.1))
                        let u = src + top * W, v = u + DH * W, z = v + DH * W
                        let u0 = u + b0, u1 = u + b1, u2 = u + b2
                        let v0 = v + b0, v1 = v + b1, v2 = v + b2
                        let z0 = z + b0, z1 = z + b1, z2 = z + b2
                        let w00 = wk[0], w01 = wk[1], w02 = wk[2], w10 = wk[3], w11 = wk[4], w12 = wk[5]
                        let w20 = wk[6], w21 = wk[7], w22 = wk[8]
                        for ow in lo..<hi {
                            let a = w00 * u0[ow] + w01 * u1[ow] + w02 * u2[ow]
                            let b = w10 * v0[ow] + w11 * v1[ow] + w12 * v2[ow]
                            let c = w20 * z0[ow] + w21 * z1[ow] + w22 * z2[ow]
                            drow[ow] = bias + (a + b + c)
                        }
                        var ow = 0
                        while ow < OW {
                            if ow == lo { ow = hi; if ow >= OW { break } }
                            var acc = drow[ow]
                            for kr in 0..<3 {
                                let row = u + kr * DH * W
                                for t in 0..<3 {
                                    let iw = ow + t * DW - PW
                                    if iw >= 0 && iw < W { acc += wk[kr * 3 + t] * row[iw] }
                                }
                            }
                            drow[ow] = acc
                            ow += 1
                        }
                        continue
                    }
                    for kh in 0..<KH {
                        let ih = top + kh * DH
                        if ih < 0 || ih >= H { continue }
                        let srow = src + ih * W
                        if SW == 1 && KW == 3 {
                            // The 3-wide row (MixFFN's 3×3): all three taps in one pass over the
                            // interior, where every tap is inside the input; taps one by one at the edges.
                            let w0 = wk[kh * 3], w1 = wk[kh * 3 + 1], w2 = wk[kh * 3 + 2]
                            let b0 = -PW, b1 = DW - PW, b2 = 2 * DW - PW
                            let r0 = validRange(base: b0, stride: 1, size: W, count: OW)
                            let r2 = validRange(base: b2, stride: 1, size: W, count: OW)
                            let lo = max(r0.0, r2.0), hi = max(lo, min(r0.1, r2.1))
                            let s0 = srow + b0, s1 = srow + b1, s2 = srow + b2
                            for ow in lo..<hi { drow[ow] += w0 * s0[ow] + w1 * s1[ow] + w2 * s2[ow] }
                            var ow = 0
                            while ow < OW {
                                if ow == lo { ow = hi; if ow >= OW { break } }
                                var acc = drow[ow]
                                if ow + b0 >= 0 && ow + b0 < W { acc += w0 * s0[ow] }
                                if ow + b1 >= 0 && ow + b1 < W { acc += w1 * s1[ow] }
                                if ow + b2 >= 0 && ow + b2 < W { acc += w2 * s2[ow] }
                                drow[ow] = acc
                                ow += 1
                            }
                            continue
                        }
                        for kw in 0..<KW {
                            let wv = wk[kh * KW + kw]
                            let base = kw * DW - PW
                            let (lo, hi) = validRange(base: base, stride: SW, size: W, count: OW)
                            if lo >= hi { continue }
                            if SW == 1 {
                                let sp = srow + base
                                for ow in lo..<hi { drow[ow] += wv * sp[ow] }
                            } else {
                                for ow in lo..<hi { drow[ow] += wv * srow[ow * SW + base] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Output positions `o` in 0..<count whose input coordinate `o·stride + base` lies in 0..<size.
    @inline(__always)
    static func validRange(base: Int, stride: Int, size: Int, count: Int) -> (Int, Int) {
        let lo = base >= 0 ? 0 : (-base + stride - 1) / stride
        let last = size - 1 - base
        let hi = last < 0 ? 0 : min(count, last / stride + 1)
        return (min(lo, hi), hi)
    }

    // MARK: GEMM-based conv

    /// Elements of the im2col buffer per tile: 1 MB of float32, so a tile stays in L2 between im2col
    /// and its GEMM (measured no slower than whole-image columns on SegFormer's shapes).
    nonisolated(unsafe) static var columnBudget = 1 << 18
    /// Narrowest tile of output positions (narrower tiles make the GEMM inefficient).
    nonisolated(unsafe) static var minimumTile = 256

    static func gemmConv<T: BinaryFloatingPoint>(_: T.Type, _ px: UnsafePointer<T>, _ pw: UnsafePointer<T>, _ pb: UnsafePointer<T>?,
                                                 _ py: UnsafeMutablePointer<T>, _ s: ConvShape, _ context: ExecutionContext) throws {
        let g = s.geometry
        let inSpatial = g.inputSpatial, outSpatial = g.outputSpatial, taps = g.taps
        let cg = s.cPerGroup, mg = s.mPerGroup
        let rows = cg * taps
        let pointwise = g.isPointwise
        try BLAS.checkSizes(mg, outSpatial, rows, rows, outSpatial, outSpatial)
        // Bias first, so each GEMM accumulates onto it (beta 1).
        if pb != nil { fillBias(py, pb, n: s.n, m: s.m, spatial: outSpatial) }
        let beta: Double = pb == nil ? 0 : 1
        if pointwise {
            for img in 0..<s.n {
                for grp in 0..<s.group {
                    BLAS.gemm(T.self, m: mg, n: outSpatial, k: cg, a: pw + grp * mg * cg, lda: cg,
                              b: px + (img * s.c + grp * cg) * inSpatial, ldb: inSpatial, beta: beta,
                              c: py + (img * s.m + grp * mg) * outSpatial, ldc: outSpatial)
                }
            }
            return
        }
        let tile: Int
        if g.rank == 2 {
            tile = rows * outSpatial <= columnBudget ? outSpatial : min(outSpatial, max(minimumTile, columnBudget / rows))
        } else {
            tile = outSpatial   // the generic N-D im2col works on whole images
            guard rows.multipliedReportingOverflow(by: outSpatial).partialValue < (1 << 31) else {
                throw SegFormerError.unsupported("Conv: im2col buffer of \(rows)×\(outSpatial) is too large for the generic N-D path")
            }
        }
        let colTensor = Tensor(uninitialized: T.self == Double.self ? .double : .float, shape: [rows * tile])
        let col = colTensor.pointer(T.self)
        for img in 0..<s.n {
            for grp in 0..<s.group {
                let xg = px + (img * s.c + grp * cg) * inSpatial
                let wg = pw + grp * mg * rows
                let yg = py + (img * s.m + grp * mg) * outSpatial
                var p0 = 0
                while p0 < outSpatial {
                    let p1 = min(outSpatial, p0 + tile)
                    if g.rank == 2 {
                        im2col2D(xg, col, g, channels: cg, p0: p0, p1: p1, context)
                    } else {
                        im2colND(xg, col, g, channels: cg, context)
                    }
                    BLAS.gemm(T.self, m: mg, n: p1 - p0, k: rows, a: wg, lda: rows, b: col, ldb: p1 - p0,
                              beta: beta, c: yg + p0, ldc: outSpatial)
                    p0 = p1
                }
            }
        }
    }

    /// col[r, p - p0] = x[c, oh·sh − ph + kh·dh, ow·sw − pw + kw·dw] (0 outside), r = (c, kh, kw),
    /// for flat output positions p = oh·OW + ow in p0..<p1. Parallel over rows.
    static func im2col2D<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, _ col: UnsafeMutablePointer<T>, _ g: WindowGeometry,
                                                 channels: Int, p0: Int, p1: Int, _ context: ExecutionContext) {
        let (H, W) = (g.input[0], g.input[1]), (KH, KW) = (g.kernel[0], g.kernel[1])
        let OW = g.output[1], (SH, SW) = (g.strides[0], g.strides[1])
        let (DH, DW) = (g.dilations[0], g.dilations[1]), (PH, PW) = (g.padBegin[0], g.padBegin[1])
        let width = p1 - p0
        let rows = channels * KH * KW
        context.parallelFor(rows, minimumPerChunk: max(1, 65536 / max(1, width))) { r0, r1 in
            for r in r0..<r1 {
                let cc = r / (KH * KW), kh = (r / KW) % KH, kw = r % KW
                let src = x + cc * H * W
                let dst = col + r * width - p0
                let base = kw * DW - PW
                let (vlo, vhi) = validRange(base: base, stride: SW, size: W, count: OW)
                var p = p0
                while p < p1 {
                    let oh = p / OW, ow0 = p - oh * OW
                    let ow1 = min(OW, ow0 + (p1 - p))
                    let rowStart = p - ow0
                    let ih = oh * SH - PH + kh * DH
                    if ih < 0 || ih >= H {
                        for ow in ow0..<ow1 { dst[rowStart + ow] = 0 }
                    } else {
                        let srow = src + ih * W + base
                        let lo = max(ow0, min(vlo, ow1)), hi = max(lo, min(vhi, ow1))
                        for ow in ow0..<lo { dst[rowStart + ow] = 0 }
                        if SW == 1 {
                            for ow in lo..<hi { dst[rowStart + ow] = srow[ow] }
                        } else {
                            for ow in lo..<hi { dst[rowStart + ow] = srow[ow * SW] }
                        }
                        for ow in hi..<ow1 { dst[rowStart + ow] = 0 }
                    }
                    p = rowStart + ow1
                }
            }
        }
    }

    /// Generic N-D im2col over whole images: col[r, p] with r = (c, kernel offset), p = output position.
    static func im2colND<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, _ col: UnsafeMutablePointer<T>, _ g: WindowGeometry,
                                                 channels: Int, _ context: ExecutionContext) {
        let rank = g.rank
        let taps = g.kernel.reduce(1, *), outSpatial = g.output.reduce(1, *), inSpatial = g.input.reduce(1, *)
        var inStrides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * g.input[i + 1] }
        context.parallelFor(channels * taps, minimumPerChunk: max(1, 65536 / max(1, outSpatial))) { r0, r1 in
            var koff = [Int](repeating: 0, count: rank), o = [Int](repeating: 0, count: rank)
            for r in r0..<r1 {
                let cc = r / taps
                var t = r % taps
                for i in stride(from: rank - 1, through: 0, by: -1) { koff[i] = t % g.kernel[i]; t /= g.kernel[i] }
                let src = x + cc * inSpatial
                let dst = col + r * outSpatial
                for i in 0..<rank { o[i] = 0 }
                for p in 0..<outSpatial {
                    var offset = 0, inside = true
                    for i in 0..<rank {
                        let v = o[i] * g.strides[i] - g.padBegin[i] + koff[i] * g.dilations[i]
                        if v < 0 || v >= g.input[i] { inside = false; break }
                        offset += v * inStrides[i]
                    }
                    dst[p] = inside ? src[offset] : 0
                    var d = rank - 1
                    while d >= 0 { o[d] += 1; if o[d] < g.output[d] { break }; o[d] = 0; d -= 1 }
                }
            }
        }
    }

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

    static func inferConvTranspose(_ ctx: TypeInferenceContext) throws -> [TensorType?] {
        guard let tx = ctx.type(0) else { return [nil] }
        guard let xs = tx.shape, let ws = ctx.type(1)?.shape, xs.count >= 3, ws.count == xs.count else {
            return [TensorType(tx.dataType, nil)]
        }
        let label = ctx.node.label
        let attrs = try TransposeAttributes(ctx.node)
        let m: Dim = ws[1].value.map { .known($0 * attrs.group) } ?? .symbol("\(label)_M")
        let rank = xs.count - 2
        let kernel = attrs.window.kernelShape ?? ws.dropFirst(2).compactMap(\.value)
        var spatial: [Dim]
        if let inp = TensorType(tx.dataType, Array(xs.dropFirst(2))).knownShape, kernel.count == rank {
            spatial = try attrs.geometry(input: inp, kernel: kernel, label).output.map { .known($0) }
        } else if let os = attrs.outputShape, os.count == rank || os.count == rank + 2 {
            spatial = os.suffix(rank).map { .known($0) }
        } else {
            spatial = (0..<rank).map { .symbol("\(label)_out\($0)") }
        }
        return [TensorType(tx.dataType, [xs[0], m] + spatial)]
    }

    static func convTransposeKernel(_ node: Node) throws -> Kernel {
        let label = node.label
        let attrs = try TransposeAttributes(node)
        return ClosureKernel { inputs, context in
            BLAS.useThreads(context.threads)
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
        let colTensor = Tensor(uninitialized: T.self == Double.self ? .double : .float, shape: [rows * inSpatial])
        let col = colTensor.pointer(T.self)
        for img in 0..<s.n {
            for grp in 0..<s.group {
                BLAS.gemm(T.self, transA: true, m: rows, n: inSpatial, k: cg, a: pw + grp * cg * rows, lda: rows,
                          b: px + (img * s.c + grp * cg) * inSpatial, ldb: inSpatial, c: col, ldc: inSpatial)
                col2im(col, py + (img * s.m + grp * mg) * outSpatial, g, channels: mg, context)
            }
        }
        return y
    }

    /// y[c, o] += col[(c, k), i] where o = i·stride − padBegin + k·dilation lies inside the output.
    /// The last spatial dim runs as a contiguous range; the outer ones through an odometer.
    static func col2im<T: BinaryFloatingPoint>(_ col: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ g: WindowGeometry,
                                               channels: Int, _ context: ExecutionContext) {
        let rank = g.rank, last = rank - 1
        let taps = g.taps, inSpatial = g.inputSpatial, outSpatial = g.outputSpatial
        var outStrides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { outStrides[i] = outStrides[i + 1] * g.output[i + 1] }
        let inLast = g.input[last], outer = inSpatial / max(1, inLast)
        context.parallelFor(channels, minimumPerChunk: max(1, 32768 / max(1, taps * inSpatial))) { c0, c1 in
            var k = [Int](repeating: 0, count: rank), idx = [Int](repeating: 0, count: rank)
            for c in c0..<c1 {
                let dst = y + c * outSpatial
                for t in 0..<taps {
                    var rem = t
                    for d in stride(from: last, through: 0, by: -1) { k[d] = rem % g.kernel[d]; rem /= g.kernel[d] }
                    let src = col + (c * taps + t) * inSpatial
                    let base = k[last] * g.dilations[last] - g.padBegin[last]
                    // Input positions i whose output i·s + base lies in 0..<out (validRange in reverse).
                    let sLast = g.strides[last], outLast = g.output[last]
                    let lo = base >= 0 ? 0 : (-base + sLast - 1) / sLast
                    let hi = outLast - 1 - base < 0 ? 0 : min(inLast, (outLast - 1 - base) / sLast + 1)
                    for d in 0..<rank { idx[d] = 0 }
                    for row in 0..<outer {
                        var off = 0, inside = true
                        for d in 0..<last {
                            let o = idx[d] * g.strides[d] - g.padBegin[d] + k[d] * g.dilations[d]
                            if o < 0 || o >= g.output[d] { inside = false; break }
                            off += o * outStrides[d]
                        }
                        if inside && lo < hi {
                            let s = src + row * inLast, drow = dst + off + base
                            if sLast == 1 { for i in lo..<hi { drow[i] += s[i] } } else { for i in lo..<hi { drow[i * sLast] += s[i] } }
                        }
                        var d = last - 1
                        while d >= 0 { idx[d] += 1; if idx[d] < g.input[d] { break }; idx[d] = 0; d -= 1 }
                    }
                }
            }
        }
    }

    // MARK: gradients
    //
    // dX = ConvGradInput(dY, W, shape(X)), dW = ConvGradWeight(dY, X, shape(W)), dB = ConvGradBias(dY)
    // (sum over images and positions). The paths mirror the forward:
    //  * 1×1, stride 1, no padding: per image and group dXᵍ = Wᵍᵀ·dYᵍ and dWᵍ += dYᵍ·Xᵍᵀ, single GEMMs
    //    with transpose flags;
    //  * depthwise 2-D: direct kernels, parallel over channels; dX of a stride-1 conv with depth
    //    multiplier 1 is the forward depthwise conv of dY with the 180°-rotated kernel;
    //  * otherwise 2-D: per tile of output positions, col = Wᵍᵀ·dYᵍ then col2im (parallel over
    //    channels) for dX, and im2col then dWᵍ += dYᵍ·colᵀ for dW; N-D uses whole-image columns.

    static func convGradient(_ ctx: GradientContext) throws -> [String?] {
        let node = ctx.node
        let dy = try ctx.gradient()
        var result: [String?] = [nil, nil, nil]
        if ctx.needs(0) {
            result[0] = ctx.builder.add1("ConvGradInput", domain: trainingDomain, [dy, ctx.input(1), ctx.shape(of: ctx.input(0))],
                                         attributes: node.attributes, name: "ConvGradInput")
        }
        if ctx.needs(1) {
            result[1] = ctx.builder.add1("ConvGradWeight", domain: trainingDomain, [dy, ctx.input(0), ctx.shape(of: ctx.input(1))],
                                         attributes: node.attributes, name: "ConvGradWeight")
        }
        if node.inputs.count > 2, !node.inputs[2].isEmpty, ctx.needs(2) {
            result[2] = ctx.builder.add1("ConvGradBias", domain: trainingDomain, [dy], name: "ConvGradBias")
        }
        return result
    }

    /// ConvTranspose is the adjoint of Conv(·, W) with the same strides, pads, dilations and group,
    /// so dX = Conv(dY, W) and dW = ConvGradWeight(X, dY) of that conv (X plays the conv's dY).
    /// Pads resolved from output_shape or SAME auto_pad are not supported (they depend on shapes).
    static func convTransposeGradient(_ ctx: GradientContext) throws -> [String?] {
        let node = ctx.node
        let attrs = try TransposeAttributes(node)
        guard attrs.outputShape == nil, attrs.window.autoPad == "NOTSET" || attrs.window.autoPad == "VALID" else {
            throw SegFormerError.unsupported("\(node.label): gradient of ConvTranspose with output_shape or SAME auto_pad")
        }
        let dy = try ctx.gradient()
        var convAttrs: [String: Attribute] = [:]
        for k in ["strides", "dilations", "pads", "group", "kernel_shape", "auto_pad"] { convAttrs[k] = node.attributes[k] }
        var result: [String?] = [nil, nil, nil]
        if ctx.needs(0) {
            result[0] = ctx.builder.add1("Conv", [dy, ctx.input(1)], attributes: convAttrs, name: "ConvTransposeGradInput")
        }
        if ctx.needs(1) {
            result[1] = ctx.builder.add1("ConvGradWeight", domain: trainingDomain, [ctx.input(0), dy, ctx.shape(of: ctx.input(1))],
                                         attributes: convAttrs, name: "ConvTransposeGradWeight")
        }
        if node.inputs.count > 2, !node.inputs[2].isEmpty, ctx.needs(2) {
            result[2] = ctx.builder.add1("ConvGradBias", domain: trainingDomain, [dy], name: "ConvGradBias")
        }
        return result
    }

    /// ConvGradInput(dY, W, xShape) (weight: false) or ConvGradWeight(dY, X, wShape) (weight: true),
    /// with the forward Conv's attributes.
    static func convGradKernel(_ node: Node, weight: Bool) throws -> Kernel {
        let label = node.label
        let attrs = try WindowAttributes(node)
        let group = try node.int("group", default: 1)
        guard group >= 1 else { throw SegFormerError.invalid("\(label): group must be ≥ 1, got \(group)") }
        return ClosureKernel { inputs, context in
            BLAS.useThreads(context.threads)
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
                weight ? try gradWeight(T.self, dy, operand, s, wShape, context) : try gradInput(T.self, dy, operand, s, xShape, context)
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

    // MARK: vector helpers (SIMD for float32: Swift does not reassociate scalar float sums).
    // Products use fused multiply-add (addProduct), as PyTorch's kernels do: AdamW's first steps
    // divide each gradient element by its own size, so elements near eps amplify rounding
    // differences, and training then matches PyTorch only with the same (fused) rounding.

    @inline(__always)
    static func sum<T: BinaryFloatingPoint>(_ a: UnsafePointer<T>, _ n: Int) -> T {
        if T.self == Float.self {
            let p = UnsafeRawPointer(a)
            var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
            var i = 0
            while i + 16 <= n {
                acc0 += p.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                acc1 += p.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self)
                i += 16
            }
            var total = (acc0 + acc1).sum()
            let f = p.assumingMemoryBound(to: Float.self)
            while i < n { total += f[i]; i += 1 }
            return T(total)
        }
        var s0: T = 0, s1: T = 0
        var i = 0
        while i + 2 <= n { s0 += a[i]; s1 += a[i + 1]; i += 2 }
        if i < n { s0 += a[i] }
        return s0 + s1
    }

    /// Σ a[i]·b[i·bStride] for i in 0..<n.
    @inline(__always)
    static func dot<T: BinaryFloatingPoint>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ n: Int, bStride: Int = 1) -> T {
        if T.self == Float.self && bStride == 1 {
            let pa = UnsafeRawPointer(a), pb = UnsafeRawPointer(b)
            var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
            var i = 0
            while i + 16 <= n {
                acc0.addProduct(pa.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self),
                                pb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
                acc1.addProduct(pa.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self),
                                pb.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self))
                i += 16
            }
            if i + 8 <= n {
                acc0.addProduct(pa.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self),
                                pb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
                i += 8
            }
            var total = (acc0 + acc1).sum()
            let fa = pa.assumingMemoryBound(to: Float.self), fb = pb.assumingMemoryBound(to: Float.self)
            while i < n { total += fa[i] * fb[i]; i += 1 }
            return T(total)
        }
        var s0: T = 0, s1: T = 0
        var i = 0
        while i + 2 <= n { s0 += a[i] * b[i * bStride]; s1 += a[i + 1] * b[(i + 1) * bStride]; i += 2 }
        if i < n { s0 += a[i] * b[i * bStride] }
        return s0 + s1
    }

    // MARK: dX

    static func gradInput<T: BinaryFloatingPoint>(_: T.Type, _ dy: Tensor, _ w: Tensor, _ s0: ConvShape, _ xShape: [Int],
                                                  _ context: ExecutionContext) throws -> Tensor {
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
        let pointwise = g.isPointwise
        try BLAS.checkSizes(rows, outSpatial, mg, rows, outSpatial, outSpatial)
        if pointwise {
            for img in 0..<s.n {
                for grp in 0..<s.group {
                    BLAS.gemm(T.self, transA: true, m: cg, n: inSpatial, k: mg, a: pw + grp * mg * cg, lda: cg,
                              b: pdy + (img * s.m + grp * mg) * outSpatial, ldb: outSpatial,
                              c: pdx + (img * s.c + grp * cg) * inSpatial, ldc: inSpatial)
                }
            }
            return dx
        }
        BLAS.scale(pdx, m: 1, n: dx.count, ldc: dx.count, beta: 0)
        let tile: Int
        if g.rank == 2 {
            tile = rows * outSpatial <= columnBudget ? outSpatial : min(outSpatial, max(minimumTile, columnBudget / rows))
        } else {
            tile = outSpatial
            guard rows.multipliedReportingOverflow(by: outSpatial).partialValue < (1 << 31) else {
                throw SegFormerError.unsupported("Conv gradient: column buffer of \(rows)×\(outSpatial) is too large for the generic N-D path")
            }
        }
        // col2im over the whole image is ConvTranspose's, with the conv's input and output swapped.
        let swapped = WindowGeometry(input: g.output, kernel: g.kernel, strides: g.strides, dilations: g.dilations,
                                     padBegin: g.padBegin, padEnd: g.padEnd, output: g.input)
        let colTensor = Tensor(uninitialized: T.self == Double.self ? .double : .float, shape: [rows * tile])
        let col = colTensor.pointer(T.self)
        for img in 0..<s.n {
            for grp in 0..<s.group {
                let dyg = pdy + (img * s.m + grp * mg) * outSpatial
                let wg = pw + grp * mg * rows
                let dxg = pdx + (img * s.c + grp * cg) * inSpatial
                var p0 = 0
                while p0 < outSpatial {
                    let p1 = min(outSpatial, p0 + tile)
                    BLAS.gemm(T.self, transA: true, m: rows, n: p1 - p0, k: mg, a: wg, lda: rows, b: dyg + p0, ldb: outSpatial,
                              c: col, ldc: p1 - p0)
                    if g.rank == 2 {
                        col2im2D(col, dxg, g, channels: cg, p0: p0, p1: p1, context)
                    } else {
                        col2im(col, dxg, swapped, channels: cg, context)
                    }
                    p0 = p1
                }
            }
        }
        return dx
    }

    /// dx[c, oh·sh − ph + kh·dh, ow·sw − pw + kw·dw] += col[r, p − p0], r = (c, kh, kw), for output
    /// positions p = oh·OW + ow in p0..<p1 (the adjoint of `im2col2D`). Parallel over channels.
    static func col2im2D<T: BinaryFloatingPoint>(_ col: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, _ g: WindowGeometry,
                                                 channels: Int, p0: Int, p1: Int, _ context: ExecutionContext) {
        let (H, W) = (g.input[0], g.input[1]), (KH, KW) = (g.kernel[0], g.kernel[1])
        let OW = g.output[1], (SH, SW) = (g.strides[0], g.strides[1])
        let (DH, DW) = (g.dilations[0], g.dilations[1]), (PH, PW) = (g.padBegin[0], g.padBegin[1])
        let width = p1 - p0
        context.parallelFor(channels, minimumPerChunk: max(1, 65536 / max(1, width * KH * KW))) { c0, c1 in
            for cc in c0..<c1 {
                let plane = dx + cc * H * W
                for kh in 0..<KH {
                    for kw in 0..<KW {
                        let r = (cc * KH + kh) * KW + kw
                        let src = col + r * width - p0
                        let base = kw * DW - PW
                        let (vlo, vhi) = validRange(base: base, stride: SW, size: W, count: OW)
                        var p = p0
                        while p < p1 {
                            let oh = p / OW, ow0 = p - oh * OW
                            let ow1 = min(OW, ow0 + (p1 - p))
                            let rowStart = p - ow0
                            let ih = oh * SH - PH + kh * DH
                            if ih >= 0 && ih < H {
                                let drow = plane + ih * W + base
                                let srow = src + rowStart
                                let lo = max(ow0, min(vlo, ow1)), hi = max(lo, min(vhi, ow1))
                                if SW == 1 {
                                    for ow in lo..<hi { drow[ow] += srow[ow] }
                                } else {
                                    for ow in lo..<hi { drow[ow * SW] += srow[ow] }
                                }
                            }
                            p = rowStart + ow1
                        }
                    }
                }
            }
        }
    }

    /// Depthwise (one input channel per group) dX. Stride 1 with depth multiplier 1 and pads within
    /// the dilated kernel: the forward depthwise conv of dY with each kernel rotated by 180°.
    /// Otherwise a direct scatter, parallel over (image, input channel) so no two threads share a plane.
    static func depthwiseGradInput<T: BinaryFloatingPoint>(_: T.Type, _ pdy: UnsafePointer<T>, _ pw: UnsafePointer<T>,
                                                           _ pdx: UnsafeMutablePointer<T>, _ s: ConvShape, _ context: ExecutionContext) {
        let g = s.geometry
        let (H, W) = (g.input[0], g.input[1]), (KH, KW) = (g.kernel[0], g.kernel[1])
        let (OH, OW) = (g.output[0], g.output[1]), (SH, SW) = (g.strides[0], g.strides[1])
        let (DH, DW) = (g.dilations[0], g.dilations[1]), (PH, PW) = (g.padBegin[0], g.padBegin[1])
        let mg = s.mPerGroup, taps = KH * KW
        let spanH = (KH - 1) * DH, spanW = (KW - 1) * DW
        if mg == 1 && SH == 1 && SW == 1 && PH <= spanH && PW <= spanW
            && g.padEnd[0] <= spanH && g.padEnd[1] <= spanW {
            let rotated = [T](unsafeUninitializedCapacity: s.m * taps) { buf, count in
                for ch in 0..<s.m { for t in 0..<taps { buf[ch * taps + t] = pw[ch * taps + taps - 1 - t] } }
                count = s.m * taps
            }
            let back = WindowGeometry(input: [OH, OW], kernel: [KH, KW], strides: [1, 1], dilations: [DH, DW],
                                      padBegin: [spanH - PH, spanW - PW], padEnd: [spanH - g.padEnd[0], spanW - g.padEnd[1]],
                                      output: [H, W])
            let bs = ConvShape(n: s.n, c: s.m, m: s.c, group: s.c, geometry: back)
            rotated.withUnsafeBufferPointer { depthwise2D(pdy, $0.baseAddress!, nil, pdx, bs, context) }
            return
        }
        let c = s.c, m = s.m
        context.parallelFor(s.n * c, minimumPerChunk: max(1, 32768 / max(1, mg * OH * OW * taps))) { start, end in
            for idx in start..<end {
                let img = idx / c, ch = idx % c
                let plane = pdx + idx * H * W
                for j in 0..<(H * W) { plane[j] = 0 }
                for oc in (ch * mg)..<((ch + 1) * mg) {
                    let src = pdy + (img * m + oc) * OH * OW
                    let wk = pw + oc * taps
                    for oh in 0..<OH {
                        let srow = src + oh * OW
                        for kh in 0..<KH {
                            let ih = oh * SH - PH + kh * DH
                            if ih < 0 || ih >= H { continue }
                            let drow = plane + ih * W
                            for kw in 0..<KW {
                                let wv = wk[kh * KW + kw]
                                let base = kw * DW - PW
                                let (lo, hi) = validRange(base: base, stride: SW, size: W, count: OW)
                                if SW == 1 {
                                    let d = drow + base
                                    for ow in lo..<hi { d[ow] += wv * srow[ow] }
                                } else {
                                    for ow in lo..<hi { drow[ow * SW + base] += wv * srow[ow] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // MARK: dW

    /// dW's im2col tile budget, as a multiple of the forward's `columnBudget`.
    nonisolated(unsafe) static var gradWeightColumnFactor = 16

    static func gradWeight<T: BinaryFloatingPoint>(_: T.Type, _ dy: Tensor, _ x: Tensor, _ s0: ConvShape, _ wShape: [Int],
                                                   _ context: ExecutionContext) throws -> Tensor {
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
        let pointwise = g.isPointwise
        try BLAS.checkSizes(mg, rows, outSpatial, outSpatial, outSpatial, rows)
        if pointwise {
            // dWᵍ = Σ_img dYᵍ·Xᵍᵀ: one GEMM per image and group, K = positions, accumulating.
            for img in 0..<s.n {
                for grp in 0..<s.group {
                    BLAS.gemm(T.self, transB: true, m: mg, n: cg, k: inSpatial,
                              a: pdy + (img * s.m + grp * mg) * outSpatial, lda: outSpatial,
                              b: px + (img * s.c + grp * cg) * inSpatial, ldb: inSpatial,
                              beta: 1, c: pdw + grp * mg * cg, ldc: cg)
                }
            }
            return dw
        }
        // dW's GEMM reduces over the tile, so it takes longer tiles than the forward (K = tile).
        let budget = columnBudget * gradWeightColumnFactor
        let tile: Int
        if g.rank == 2 {
            tile = rows * outSpatial <= budget ? outSpatial : min(outSpatial, max(minimumTile, budget / rows))
        } else {
            tile = outSpatial
            guard rows.multipliedReportingOverflow(by: outSpatial).partialValue < (1 << 31) else {
                throw SegFormerError.unsupported("Conv gradient: im2col buffer of \(rows)×\(outSpatial) is too large for the generic N-D path")
            }
        }
        let colTensor = Tensor(uninitialized: T.self == Double.self ? .double : .float, shape: [rows * tile])
        let col = colTensor.pointer(T.self)
        for img in 0..<s.n {
            for grp in 0..<s.group {
                let xg = px + (img * s.c + grp * cg) * inSpatial
                let dyg = pdy + (img * s.m + grp * mg) * outSpatial
                let dwg = pdw + grp * mg * rows
                var p0 = 0
                while p0 < outSpatial {
                    let p1 = min(outSpatial, p0 + tile)
                    if g.rank == 2 {
                        im2col2D(xg, col, g, channels: cg, p0: p0, p1: p1, context)
                    } else {
                        im2colND(xg, col, g, channels: cg, context)
                    }
                    BLAS.gemm(T.self, transB: true, m: mg, n: rows, k: p1 - p0, a: dyg + p0, lda: outSpatial,
                              b: col, ldb: p1 - p0, beta: 1, c: dwg, ldc: rows)
                    p0 = p1
                }
            }
        }
        return dw
    }

    /// Depthwise dW[oc, kh, kw] = Σ_img Σ_(oh,ow) dY[img, oc, oh, ow]·X[img, c, ih, iw]: per output row a
    /// dot product over the valid columns for each tap (SIMD for float32), rows accumulated in
    /// Double. Parallel over output channels.
    static func depthwiseGradWeight<T: BinaryFloatingPoint>(_: T.Type, _ pdy: UnsafePointer<T>, _ px: UnsafePointer<T>,
                                                            _ pdw: UnsafeMutablePointer<T>, _ s: ConvShape, _ context: ExecutionContext) {
        let g = s.geometry
        let (H, W) = (g.input[0], g.input[1]), (KH, KW) = (g.kernel[0], g.kernel[1])
        let (OH, OW) = (g.output[0], g.output[1]), (SH, SW) = (g.strides[0], g.strides[1])
        let (DH, DW) = (g.dilations[0], g.dilations[1]), (PH, PW) = (g.padBegin[0], g.padBegin[1])
        let m = s.m, c = s.c, mg = s.mPerGroup, taps = KH * KW
        if T.self == Float.self && SW == 1 {
            depthwiseGradWeightFloat(UnsafeRawPointer(pdy).assumingMemoryBound(to: Float.self),
                                     UnsafeRawPointer(px).assumingMemoryBound(to: Float.self),
                                     UnsafeMutableRawPointer(pdw).assumingMemoryBound(to: Float.self), s, context)
            return
        }
        context.parallelFor(m, minimumPerChunk: max(1, 32768 / max(1, s.n * OH * OW * taps))) { start, end in
            var acc = [Double](repeating: 0, count: taps)
            for oc in start..<end {
                for t in 0..<taps { acc[t] = 0 }
                for img in 0..<s.n {
                    let src = px + (img * c + oc / mg) * H * W
                    let grad = pdy + (img * m + oc) * OH * OW
                    for oh in 0..<OH {
                        let grow = grad + oh * OW
                        for kh in 0..<KH {
                            let ih = oh * SH - PH + kh * DH
                            if ih < 0 || ih >= H { continue }
                            let srow = src + ih * W
                            for kw in 0..<KW {
                                let base = kw * DW - PW
                                let (lo, hi) = validRange(base: base, stride: SW, size: W, count: OW)
                                if lo >= hi { continue }
                                acc[kh * KW + kw] += Double(dot(grow + lo, srow + lo * SW + base, hi - lo, bStride: SW))
                            }
                        }
                    }
                }
                for t in 0..<taps { pdw[oc * taps + t] = T(acc[t]) }
            }
        }
    }

    /// Depthwise dW for float32, stride-1 columns: per tap and row a SIMD8 dot product, rows summed
    /// in Double; the ragged column ends in scalars.
    static func depthwiseGradWeightFloat(_ pdy: UnsafePointer<Float>, _ px: UnsafePointer<Float>,
                                         _ pdw: UnsafeMutablePointer<Float>, _ s: ConvShape, _ context: ExecutionContext) {
        let g = s.geometry
        let (H, W) = (g.input[0], g.input[1]), (KH, KW) = (g.kernel[0], g.kernel[1])
        let (OH, OW) = (g.output[0], g.output[1]), SH = g.strides[0]
        let (DH, DW) = (g.dilations[0], g.dilations[1]), (PH, PW) = (g.padBegin[0], g.padBegin[1])
        let m = s.m, c = s.c, mg = s.mPerGroup, taps = KH * KW
        // Valid output columns per kernel column (stride 1).
        let ranges = (0..<KW).map { validRange(base: $0 * DW - PW, stride: 1, size: W, count: OW) }
        context.parallelFor(m, minimumPerChunk: max(1, 32768 / max(1, s.n * OH * OW * taps))) { start, end in
            let acc = UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: taps)
            let edge = UnsafeMutablePointer<Double>.allocate(capacity: taps)
            defer { acc.deallocate(); edge.deallocate() }
            for oc in start..<end {
                for t in 0..<taps { acc[t] = SIMD8<Float>(); edge[t] = 0 }
                for img in 0..<s.n {
                    let src = px + (img * c + oc / mg) * H * W
                    let grad = pdy + (img * m + oc) * OH * OW
                    for oh in 0..<OH {
                        let grow = grad + oh * OW
                        let graw = UnsafeRawPointer(grow)
                        for kh in 0..<KH {
                            let ih = oh * SH - PH + kh * DH
                            if ih < 0 || ih >= H { continue }
                            for kw in 0..<KW {
                                let t = kh * KW + kw
                                let (lo, hi) = ranges[kw]
                                let xrow = src + ih * W + kw * DW - PW
                                let xraw = UnsafeRawPointer(xrow)
                                var a = SIMD8<Float>()
                                var ow = lo
                                while ow + 8 <= hi {
                                    a += graw.loadUnaligned(fromByteOffset: ow * 4, as: SIMD8<Float>.self)
                                        * xraw.loadUnaligned(fromByteOffset: ow * 4, as: SIMD8<Float>.self)
                                    ow += 8
                                }
                                var e: Float = 0
                                while ow < hi { e += grow[ow] * xrow[ow]; ow += 1 }
                                // Each row's partial sum goes into Double: a float accumulator carried
                                // over tens of thousands of products drifts by ~1e-6, enough to flip the
                                // sign of near-zero gradient elements (which AdamW's first step amplifies).
                                edge[t] += Double(a.sum()) + Double(e)
                            }
                        }
                    }
                }
                for t in 0..<taps { pdw[oc * taps + t] = Float(Double(acc[t].sum()) + edge[t]) }
            }
        }
    }
}
