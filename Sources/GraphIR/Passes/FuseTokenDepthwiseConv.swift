extension GraphPass {
    /// A depthwise convolution over tokens, as SegFormer's MixFFN exports it, becomes one
    /// `TokenDepthwiseConv` (in `fusedDomain`) that works on the tokens in their own channels-last
    /// layout, with the GELU after it fused in:
    ///
    ///     X [B, N, C] → Transpose(0, 2, 1) → Reshape(shape) [B, C, H, W] → Conv (depthwise) →
    ///       Reshape [B, C, H·W] → Transpose(0, 2, 1) → Gelu (optional)
    ///       = TokenDepthwiseConv(X, W, shape, bias; activation = Gelu)
    ///
    /// Why it is the same function: the Reshape after the first Transpose only splits the token axis
    /// into H × W (it keeps the batch and the C channels: checked on the inferred shapes), the conv
    /// then mixes each channel's own H × W plane, the second Reshape merges H × W again and the second
    /// Transpose puts the channels back last — so each output token is the depthwise window sum over
    /// the neighbouring tokens, channel by channel, which the fused kernel computes directly. H and W
    /// are the Reshape's `shape` input, resolved at run time as the Reshape resolves it. Matched only:
    /// float32 X of rank 3 with a known channel count C; perms exactly (0, 2, 1); a 2-D Conv with
    /// group = C and a weight of inferred shape [C, 1, KH, KW], KH and KW odd, stride 1, dilation 1,
    /// explicit pads (K − 1)/2 on every side (so the output keeps H × W); both Reshapes' inferred
    /// shapes starting with X's batch dim and C; each intermediate read by the next op alone (the
    /// conv's output may also be read by Shape nodes, which then read the conv's input: the same
    /// shape); a Gelu reader with approximate = none (in ai.onnx or in `fusedDomain`). In the
    /// inference and the training pipelines (the fused kernel gives the unfused graph's bits).
    public static let fuseTokenDepthwiseConv = overNodes("fuse-token-depthwise-conv", of: OpType.conv) { index, conv, r in
        guard conv.inputs.count >= 2,
              let nchw = r.soleProducer(of: conv.inputs[0], OpType.reshape),
              let transpose = r.soleProducer(of: nchw.inputs[0], OpType.transpose), swapsLastTwoOfThree(transpose),
              let x = transpose.inputs.first, r.context.types[x]?.dataType == .float,
              let tokens = r.shape(x), tokens.count == 3, let c = tokens[2].value,
              let planes = r.shape(nchw.outputs[0]), planes.count == 4, planes[0] == tokens[0], planes[1] == .known(c),
              isSameSizeDepthwise(conv, channels: c, r),
              let flatten = r.readerBesideShapes(of: conv.outputs[0], OpType.reshape),
              let merged = r.shape(flatten.node.outputs[0]), merged.count == 3, merged[0] == tokens[0], merged[1] == .known(c),
              let back = r.soleReader(of: flatten.node.outputs[0], OpType.transpose), swapsLastTwoOfThree(back.node)
        else { return }
        var attributes: [String: Attribute] = [:]
        if r.context.opset >= 14, (try? nchw.int("allowzero", default: 0)) == 1 { attributes["allowzero"] = .int(1) }
        var replaced = [index, flatten.index, back.index]
        var output = back.node.outputs[0]
        if let gelu = exactGeluReader(of: output, r) {
            attributes["activation"] = .string(OpType.gelu)
            replaced.append(gelu.index)
            output = gelu.node.outputs[0]
        }
        replaced.forEach(r.replace)
        r.rewireShapeReaders(flatten.shapeReaders, to: nchw.outputs[0])
        let bias = conv.input(2).map { [$0] } ?? []
        r.add(OpType.tokenDepthwiseConv, domain: fusedDomain, [x, conv.inputs[1], nchw.inputs[1]] + bias,
              attributes: attributes, writing: output)
    }

    /// Whether `transpose` is Transpose(perm = 0, 2, 1): tokens ⇄ channels.
    private static func swapsLastTwoOfThree(_ transpose: Node) -> Bool { (try? transpose.ints("perm")) == [0, 2, 1] }

    /// Whether `conv` is a 2-D depthwise conv over `channels` channels that keeps the spatial size:
    /// weight [C, 1, KH, KW] (KH, KW odd), group C, stride 1, dilation 1, explicit pads (K − 1)/2, a
    /// float bias of C values if any.
    private static func isSameSizeDepthwise(_ conv: Node, channels c: Int, _ r: GraphRewriter) -> Bool {
        guard let w = r.shape(conv.inputs[1]), w.count == 4, w[0] == .known(c), w[1] == .known(1),
              let kh = w[2].value, let kw = w[3].value, kh % 2 == 1, kw % 2 == 1,
              r.context.types[conv.inputs[1]]?.dataType == .float,
              (try? conv.int("group", default: 1)) == c,
              (try? conv.string("auto_pad", default: "NOTSET")) == "NOTSET",
              ((try? conv.ints("kernel_shape")) ?? [kh, kw]) == [kh, kw],
              ((try? conv.ints("strides")) ?? [1, 1]) == [1, 1],
              ((try? conv.ints("dilations")) ?? [1, 1]) == [1, 1],
              ((try? conv.ints("pads")) ?? [0, 0, 0, 0]) == [(kh - 1) / 2, (kw - 1) / 2, (kh - 1) / 2, (kw - 1) / 2]
        else { return false }
        guard let b = conv.input(2) else { return true }
        return r.shape(b) == [.known(c)] && r.context.types[b]?.dataType == .float
    }

    /// The exact-GELU node reading `value` alone (ai.onnx from opset 20, else the fused form the
    /// fuse-gelu pass writes), with its index.
    private static func exactGeluReader(of value: String, _ r: GraphRewriter) -> (index: Int, node: Node)? {
        let gelu = r.soleReader(of: value, OpType.gelu) ?? r.soleReader(of: value, OpType.gelu, domain: fusedDomain)
        guard let gelu, (try? gelu.node.string("approximate", default: "none")) == "none" else { return nil }
        return gelu
    }
}
