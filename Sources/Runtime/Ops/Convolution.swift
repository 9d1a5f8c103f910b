import GraphIR

// Conv (N-D, groups, pads/auto_pad, strides, dilations, optional bias), ConvTranspose and Conv's
// training kernels: schemas, shape rules and gradient rules here; the kernels beside this file
// (ConvForward, Depthwise, Im2col, ConvTranspose, ConvGradients; sizes and tiling in ConvGeometry).
// float32/float64 paths, chosen once per call from the geometry:
//  * 1×1, stride 1, no padding: one GEMM per image and group on the input as it is (no im2col);
//  * one input channel per group (depthwise, SegFormer's MixFFN 3×3): a direct kernel, parallel
//    over output channels;
//  * everything else 2-D: im2col over a tile of output positions (parallel over im2col rows)
//    followed by one GEMM per tile and group. Non-overlapping convs (kernel == stride, the
//    spatial-reduction convs) take this path too: their im2col is a pure re-layout.
//  * 1-D is run as 2-D with height 1; 3-D and higher use a generic N-D im2col.
// ChannelsLastConv (fused domain) is Conv writing [N, spatial…, M]: the same paths with the GEMM's
// transpose flags, or, with channels_last_input = 1, a transposed im2col of an [N, H, W, C] input
// (ChannelsLastConv.swift).
// float16/bfloat16 are computed in float32.

extension OpRegistry {
    static let convolutionOps: [OpSchema] = [
        OpSchema(OpType.conv, opsets: 1...23, inputs: 2...3,
                 inferTypes: { try Convolution.inferConv($0) },
                 makeKernel: { node, _ in try Convolution.convKernel(node) })
            .withGradient { try Convolution.convGradient($0) }.withWork(WorkRules.convolution(transposed: false)),
        OpSchema("ConvTranspose", opsets: 1...23, inputs: 2...3,
                 inferTypes: { try Convolution.inferConvTranspose($0) },
                 makeKernel: { node, _ in try Convolution.convTransposeKernel(node) })
            .withGradient { try Convolution.convTransposeGradient($0) }.withWork(WorkRules.convolution(transposed: true)),
        // The fuse-token-depthwise-conv pass's op (Kernels/Convolution/TokenDepthwise.swift). The
        // output has the tokens' type; with a projection P [C, M] (inputs 4–6: P, its bias, a
        // residual; fuse-token-depthwise-projection, inference only) the tokens' shape with M channels,
        // and with it a LayerNorm of that output (inputs 7–8, second output; fuse-layer-norm-into-producer).
        OpSchema(OpType.tokenDepthwiseConv, domain: fusedDomain, inputs: 3...9, outputs: 1...2,
                 inferTypes: { ctx in
                     guard ctx.node.input(4) != nil else { return [ctx.type(0)] }
                     guard let x = ctx.type(0), let s = x.shape, s.count == 3, let m = ctx.type(4)?.shape?.last else {
                         return ctx.withLayerNormOutput([ctx.type(0).map { TensorType($0.dataType, nil) }])
                     }
                     return ctx.withLayerNormOutput([TensorType(x.dataType, [s[0], s[1], m])])
                 },
                 makeKernel: { node, _ in try Convolution.tokenDepthwiseKernel(node) })
            .withGradient { try Convolution.tokenDepthwiseGradient($0) }.withWork(WorkRules.convolution(transposed: false)),
        // The fuse-conv-to-tokens pass's op: Conv with the output channels last (Kernels/Convolution/
        // ConvForward.swift). Inference only: no gradient rule.
        OpSchema(OpType.channelsLastConv, domain: fusedDomain, inputs: 2...3,
                 inferTypes: { try Convolution.inferChannelsLastConv($0) },
                 makeKernel: { node, _ in try Convolution.channelsLastConvKernel(node) })
            .withWork(WorkRules.convolution(transposed: false)),
        // Training kernels (Conv's backward; see "MARK: gradient rules").
        OpSchema("ConvGradInput", domain: trainingDomain, inputs: 3...3, shapeInputs: [2],
                 inferTypes: { ctx in [LinearAlgebra.inferFromTarget(ctx, 2)] },
                 makeKernel: { node, _ in try Convolution.convGradKernel(node, weight: false) }),
        OpSchema("ConvGradWeight", domain: trainingDomain, inputs: 3...3, shapeInputs: [2],
                 inferTypes: { ctx in [LinearAlgebra.inferFromTarget(ctx, 2)] },
                 makeKernel: { node, _ in try Convolution.convGradKernel(node, weight: true) }),
        OpSchema("TokenDepthwiseConvGrad", domain: trainingDomain, inputs: 4...4, outputs: 2...2,
                 inferTypes: { ctx in [ctx.type(2), ctx.type(2).map { TensorType($0.dataType, $0.shape.map { [$0[0]] }) }] },
                 makeKernel: { node, _ in try Convolution.tokenDepthwiseGradKernel(node) }),
        OpSchema("ConvGradBias", domain: trainingDomain, inputs: 1...1,
                 inferTypes: { ctx in
                     guard let t = ctx.type(0) else { return [nil] }
                     return [TensorType(t.dataType, t.shape.map { $0.count >= 2 ? [$0[1]] : [] })]
                 },
                 makeKernel: { node, _ in Convolution.convGradBiasKernel(node) }),
    ]
}

extension Convolution {
    // MARK: shape rules

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

    /// ChannelsLastConv: Conv's output with the channels last, [N, OH, OW, M]; with channels_last_input
    /// = 1, X is [N, H, W, C] and W [M, KH, KW, C].
    static func inferChannelsLastConv(_ ctx: TypeInferenceContext) throws -> [TensorType?] {
        guard try ctx.node.int("channels_last_input", default: 0) != 0 else {
            return try inferConv(ctx).map { t in t.map { t in TensorType(t.dataType, t.shape.map { [$0[0]] + $0.dropFirst(2) + [$0[1]] }) } }
        }
        guard let tx = ctx.type(0) else { return [nil] }
        guard let xs = tx.shape else { return [TensorType(tx.dataType, nil)] }
        let label = ctx.node.label
        let ws = ctx.type(1)?.shape
        guard xs.count == 4, ws == nil || ws!.count == 4 else {
            throw SegFormerError.invalid("\(label): ChannelsLastConv needs X [N, H, W, C] and W [M, KH, KW, C], got \(tx) and \(ctx.type(1).map { "\($0)" } ?? "?")")
        }
        let attrs = try WindowAttributes(ctx.node)
        let kernel: [Int?] = attrs.kernelShape ?? ws.map { [$0[1].value, $0[2].value] } ?? [nil, nil]
        let m: Dim = ws?[0] ?? .symbol("\(label)_M")
        let spatial = try WindowGeometry.symbolicOutput(input: [xs[1], xs[2]], kernel: kernel, attributes: attrs, label)
        return [TensorType(tx.dataType, [xs[0]] + spatial + [m])]
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

    // MARK: gradient rules
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

    /// TokenDepthwiseConv: with a GELU, the conv's own output U is recomputed (the forward keeps only
    /// the GELU's) and dU = GeluGrad(dY, U); dX is the same conv of dU with the kernel rotated by 180°
    /// (`adjoint`), dW and dB come from TokenDepthwiseConvGrad(dU, X, W, shape).
    static func tokenDepthwiseGradient(_ ctx: GradientContext) throws -> [String?] {
        let node = ctx.node, b = ctx.builder
        guard node.input(4) == nil else {
            throw SegFormerError.unsupported("\(node.label): TokenDepthwiseConv with a projection has no gradient rule (inference only)")
        }
        var conv = node.attributes
        conv["activation"] = nil
        var du = try ctx.gradient()
        if node.attributes["activation"] != nil {
            let u = b.add1(OpType.tokenDepthwiseConv, domain: fusedDomain, node.inputs, attributes: conv, name: OpType.tokenDepthwiseConv)
            du = b.add1("GeluGrad", domain: trainingDomain, [du, u], name: "GeluGrad")
        }
        var result: [String?] = [nil, nil, nil, nil]
        if ctx.needs(0) {
            var adjoint = conv
            adjoint["adjoint"] = .int(1)
            result[0] = b.add1(OpType.tokenDepthwiseConv, domain: fusedDomain, [du, ctx.input(1), ctx.input(2)],
                               attributes: adjoint, name: "TokenDepthwiseConvGradInput")
        }
        let hasBias = node.input(3) != nil
        if ctx.needs(1) || (hasBias && ctx.needs(3)) {
            let grads = b.add("TokenDepthwiseConvGrad", domain: trainingDomain, [du, ctx.input(0), ctx.input(1), ctx.input(2)],
                              attributes: conv.filter { $0.key == "allowzero" }, outputs: 2, name: "TokenDepthwiseConvGrad")
            result[1] = ctx.needs(1) ? grads[0] : nil
            result[3] = hasBias && ctx.needs(3) ? grads[1] : nil
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
            result[0] = ctx.builder.add1(OpType.conv, [dy, ctx.input(1)], attributes: convAttrs, name: "ConvTransposeGradInput")
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
}
