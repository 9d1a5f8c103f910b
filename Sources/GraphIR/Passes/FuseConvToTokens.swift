extension GraphPass {
    /// A 2-D convolution whose output the graph turns into tokens — SegFormer's patch embeddings and
    /// the spatial-reduction convs of its attention — writes them channels-last itself, and reads its
    /// input channels-last when the graph made it from tokens:
    ///
    ///     Conv(X, W, B) [N, M, OH, OW] → Reshape [N, M, OH·OW] → Transpose(0, 2, 1)
    ///       = Reshape(ChannelsLastConv(X, W, B) [N, OH, OW, M], [0, −1, M])
    ///
    /// Why it is the same function: the Reshape keeps N and the M channels (checked on the inferred
    /// shapes), so it only merges OH × OW, and the Transpose moves the channels last; the
    /// `ChannelsLastConv` (in `fusedDomain`) is the same conv with its output channels last, and the
    /// Reshape to [N, OH·OW, M] is a view. Its GEMM computes colᵀ·Wᵀ (transpose flags, no copy), so the
    /// Transpose's copy goes. Shape nodes of the conv's output read the channels-last output's shape
    /// permuted back. Matched only: a float32 conv with a weight of rank 4 and a known output channel
    /// count; at opset ≥ 5 (Reshape's shape input); the Reshape of the conv's output read by the
    /// Transpose alone, and the conv's output read by the Reshape and plain Shape nodes.
    ///
    /// With one group, an input that is a channels-last image seen channels-first is read as it is
    /// (channels_last_input = 1, the weight transposed to [M, KH, KW, C], folded once):
    ///  * Y [N, H, W, C] → Transpose(0, 3, 1, 2) (the patch embeddings of stages 2–4): Y, the
    ///    Transpose left to its other readers if any (SegFormer's decode head reads each stage's image);
    ///  * tokens [N, L, C] → Transpose(0, 2, 1) → Reshape(shape) [N, C, H, W] (the spatial
    ///    reductions): Reshape(tokens, [shape₀, shape₂, shape₃, C]) — the same split of the L tokens
    ///    into H × W (a 0 or −1 in shape₀..₃ means what it meant: N and L sit at the same axes).
    /// (the spatial reductions' Transpose and Reshape read by the conv alone). In the inference pipeline only:
    /// `ChannelsLastConv` has no gradient rule.
    public static let fuseConvToTokens = overNodes("fuse-conv-to-tokens", of: OpType.conv) { index, conv, r in
        guard r.context.opset >= 5, conv.inputs.count >= 2, r.context.types[conv.inputs[0]]?.dataType == .float,
              let w = r.shape(conv.inputs[1]), w.count == 4, let m = w[0].value,
              let planes = r.shape(conv.outputs[0]), planes.count == 4,
              let flatten = r.readerBesideShapes(of: conv.outputs[0], OpType.reshape),
              let merged = r.shape(flatten.node.outputs[0]), merged.count == 3, merged[0] == planes[0], merged[1] == .known(m),
              let back = r.soleReader(of: flatten.node.outputs[0], OpType.transpose), (try? back.node.ints("perm")) == [0, 2, 1]
        else { return }
        [index, flatten.index, back.index].forEach(r.replace)
        var inputs = conv.inputs, attributes = conv.attributes
        if (try? conv.int("group", default: 1)) == 1, let image = channelsLastImage(of: conv.inputs[0], r) {
            inputs[0] = image
            inputs[1] = r.add(OpType.transpose, [conv.inputs[1]], attributes: ["perm": .ints([0, 2, 3, 1])])
            attributes["channels_last_input"] = .int(1)
        }
        let channelsLast = r.add(OpType.channelsLastConv, domain: fusedDomain, inputs, attributes: attributes)
        r.rewireShapeReaders(flatten.shapeReaders, to: channelsLast, permutation: [0, 3, 1, 2])
        r.add(OpType.reshape, [channelsLast, r.int64s([0, -1, m])], writing: back.node.outputs[0])
    }

    /// The channels-last image [N, H, W, C] that `value` [N, C, H, W] is the channels-first view of,
    /// (see fuseConvToTokens).
    private static func channelsLastImage(of value: String, _ r: GraphRewriter) -> String? {
        guard let planes = r.shape(value), planes.count == 4, let c = planes[1].value else { return nil }
        if let transpose = r.producer(of: value, OpType.transpose), (try? transpose.ints("perm")) == [0, 3, 1, 2] {
            return transpose.inputs[0]
        }
        guard let split = r.soleProducer(of: value, OpType.reshape), split.inputs.count == 2,
              let transpose = r.soleProducer(of: split.inputs[0], OpType.transpose), (try? transpose.ints("perm")) == [0, 2, 1],
              let tokens = r.shape(transpose.inputs[0]), tokens.count == 3, tokens[0] == planes[0], tokens[2] == .known(c)
        else { return nil }
        let shape = split.inputs[1]
        let target = r.add(OpType.concat, [r.slice(shape, axis: 0, 0, 1), r.slice(shape, axis: 0, 2, 4), r.int64s([c])],
                           attributes: ["axis": .int(0)])
        return r.add(OpType.reshape, [transpose.inputs[0], target], attributes: split.attributes.filter { $0.key == "allowzero" })
    }
}
