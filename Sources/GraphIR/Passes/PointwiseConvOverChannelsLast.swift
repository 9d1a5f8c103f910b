extension GraphPass {
    /// A 1×1 convolution of a channels-last tensor viewed as NCHW is a matrix product over its pixels:
    ///
    ///     Conv1x1(Transpose(x, [0, 3, 1, 2]), W [, b])                       x: [B, H, W, C] (NHWC)
    ///       = Reshape(Transpose(Reshape(x, [0, -1, C])·W2ᵀ [+ b], [0, 2, 1]), [B, M, H, W])
    ///
    /// with W2 = W as an M×C matrix. Why: pixel (h, w) of the NCHW view is row h·W + w of x read as a
    /// [B, H·W, C] token matrix, and the convolution's output at channel m is Σ_c W2[m, c]·x[…, c],
    /// which is entry m of that row times W2ᵀ; the Transpose/Reshape lay the [B, H·W, M] result out as
    /// NCHW again. fuse-matmul-epilogue then writes the product transposed directly (Bᵀ·Aᵀ, the bias per
    /// row), so no copy of x or of the result is made. W2ᵀ is written as Reshape/Transpose nodes of W
    /// (folded when W is a constant). Matched: a float32 x of rank 4 that the Transpose's perm turns
    /// from NHWC into NCHW, read by the convolution alone. When x is a `ResizeSum`'s output that nothing
    /// else reads, the sum takes the convolution in instead (its projection: each band of output rows
    /// goes through W while in cache, written NCHW) — the same sums of products, in a GEMM's order.
    public static let pointwiseConvOverChannelsLast = overPointwiseConvs("pointwise-conv-over-channels-last",
                                                                         minimumOpset: 10) { conv, r in   // Slice with inputs
        guard let transpose = r.soleProducer(of: conv.input, OpType.transpose), (try? transpose.ints("perm")) == [0, 3, 1, 2],
              let x = r.context.types[transpose.inputs[0]], x.dataType == .float, x.shape?.count == 4,
              x.shape?[3].value ?? conv.inChannels == conv.inChannels else { return }
        let k = conv.inChannels, m = conv.outChannels
        // A ResizeSum's NHWC output read by nothing else: the sum takes the convolution as its projection.
        if let i = r.producerIndex(of: transpose.inputs[0], OpType.resizeSum, domain: fusedDomain),
           let t = r.producerIndex(of: conv.input, OpType.transpose) {
            let sum = r.nodes[i]
            guard sum.inputs.count > 3, sum.inputs[1].isEmpty, sum.inputs[2].isEmpty else { return }
            var inputs = sum.inputs
            inputs[1] = conv.weight
            inputs[2] = conv.bias ?? ""
            [i, t, conv.index].forEach(r.replace)
            r.add(OpType.resizeSum, domain: fusedDomain, inputs, attributes: sum.attributes, writing: conv.node.outputs[0])
            return
        }
        let tokens = r.add(OpType.reshape, [transpose.inputs[0], r.int64s([0, -1, k])])
        let wT = r.add(OpType.transpose, [r.add(OpType.reshape, [conv.weight, r.int64s([m, k])])],
                       attributes: ["perm": .ints([1, 0])])   // W2ᵀ: [C, M]
        var y = r.add(OpType.matMul, [tokens, wT])
        if let b = conv.bias { y = r.add(OpType.add, [y, b]) }
        let nchw = r.add(OpType.gather, [r.add(OpType.shape, [transpose.inputs[0]]), r.int64s([0, 3, 1, 2])],
                         attributes: ["axis": .int(0)])
        r.replace(conv.index)
        r.add(OpType.reshape, [r.add(OpType.transpose, [y], attributes: ["perm": .ints([0, 2, 1])]),
                               r.replacingChannels(of: nchw, rank: 4, with: m)], writing: conv.node.outputs[0])
    }
}
