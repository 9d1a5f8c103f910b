extension GraphPass {
    /// A sum of resized images that a token matrix each lays out as NCHW becomes one channels-last
    /// `ResizeSum` (in `fusedDomain`) over the tokens themselves, with the per-channel bias and Relu
    /// after the sum:
    ///
    ///     image_i = Reshape(Transpose(t_i, [0, 2, 1]), s_i)           t_i: [B, n_i, C], s_i = [B', C', h_i, w_i]
    ///     Relu(((Resize(image_1) + Resize(image_2)) + …) + b)
    ///       = Transpose(ResizeSum(b, Reshape(t_1, [B', h_1, w_1, C']), roi_1, scales_1, sizes_1, …), [0, 3, 1, 2])
    ///
    /// Why it is the same function: token k of t_i is pixel (k / w_i, k % w_i) of the image, so
    /// `Reshape(t_i, [B', h_i, w_i, C'])` holds the image channels-last (the NHWC view needs no copy);
    /// ResizeSum interpolates every channel with the Resize's own tap tables and float operations,
    /// then adds the terms in the Adds' order (each Add is commutative in IEEE arithmetic, so only the
    /// association matters: the pattern is a left-deep chain), the bias and the Relu. The Transpose
    /// gives the readers the NCHW image they read before (a later pass reads it channels-last instead:
    /// `pointwiseConvOverChannelsLast`). SegFormer's decode head sums its four stages' maps this way at
    /// 1/4 resolution; channels-last, each output row of all four maps is made and summed in cache,
    /// and the stage maps need no transposed copies.
    ///
    /// Matched only: a chain of at least two terms, each a Resize (opset ≥ 11, `sizes` given, the
    /// first Resize's attributes, no tf_crop_and_resize) of such an image, or such an image itself
    /// (a stage already at the output size), every term of the sum's inferred shape; an optional
    /// constant per-channel bias ([C, 1, 1] or [1, C, 1, 1]) as the last term; each intermediate read
    /// by the next op of the pattern alone (the images also by Shape nodes, which read the view's shape
    /// permuted instead); a Reshape with allowzero, or a target s_i whose contents type inference knows,
    /// with entry 1 not 0 and entries 2 and 3 sizes (not 0 or -1), so both Reshapes resolve it alike.
    /// Inference graphs only: ResizeSum has no gradient rule.
    public static let fuseResizeSum = overNodes("fuse-resize-sum", of: OpType.add) { index, root, r in
        guard r.context.opset >= 11, let type = r.context.types[root.outputs[0]], type.dataType == .float,
              let shape = type.shape, shape.count == 4 else { return }
        // The top of a chain only: an Add whose reader would extend the chain is left for that reader.
        if let next = r.soleReader(of: root.outputs[0], OpType.add),
           next.node.operandOrders.contains(where: { $0.0 == root.outputs[0] &&
               (ResizeSumTerm($0.1, shape, r) != nil || r.isChannelBias($0.1, of: shape)) }) { return }
        var output = root.outputs[0]
        var replaced = [index]
        var bias = ""
        var chain = root
        // The bias: a per-channel constant added last (split-conv-over-concat writes a conv's bias so).
        for (rest, other) in root.operandOrders where bias.isEmpty && r.isChannelBias(other, of: shape) {
            if let below = r.soleProducer(of: rest, OpType.add), below.inputs.count == 2 {
                bias = other
                chain = below
            }
        }
        guard let terms = ResizeSumTerm.chain(chain, shape, r), terms.count >= 2,
              terms.contains(where: { $0.resize != nil }) else { return }
        let attributes = terms.first { $0.resize != nil }!.resize!.attributes
        guard terms.allSatisfy({ $0.resize.map { sameAttributes($0.attributes, attributes) } ?? true }) else { return }
        var fused = attributes
        if let relu = r.soleReader(of: output, OpType.relu) {
            fused["activation"] = .string(OpType.relu)
            replaced.append(relu.index)
            output = relu.node.outputs[0]
        }
        replaced.forEach(r.replace)
        var inputs = [bias, "", ""]   // the projection: `pointwiseConvOverChannelsLast` may add one
        for term in terms {
            let target = r.add(OpType.gather, [term.target, r.int64s([0, 2, 3, 1])], attributes: ["axis": .int(0)])
            let view = r.add(OpType.reshape, [term.tokens, target], attributes: term.reshapeAttributes)
            r.rewireShapeReaders(term.shapeReaders, to: view, permutation: [0, 3, 1, 2])
            let resize = term.resize?.inputs ?? []
            inputs += [view] + (1...3).map { $0 < resize.count ? resize[$0] : "" }
        }
        fused["layout"] = .string("NHWC")
        let sum = r.add(OpType.resizeSum, domain: fusedDomain, inputs, attributes: fused)
        r.add(OpType.transpose, [sum], attributes: ["perm": .ints([0, 3, 1, 2])], writing: output)
    }

    /// Whether two nodes' attributes are the same numbers and strings (tensor and graph attributes never are).
    private static func sameAttributes(_ a: [String: Attribute], _ b: [String: Attribute]) -> Bool {
        a.count == b.count && a.allSatisfy { key, value in
            switch (value, b[key]) {
            case let (.int(x), .int(y)?): return x == y
            case let (.float(x), .float(y)?): return x == y
            case let (.string(x), .string(y)?): return x == y
            case let (.ints(x), .ints(y)?): return x == y
            case let (.floats(x), .floats(y)?): return x == y
            case let (.strings(x), .strings(y)?): return x == y
            default: return false
            }
        }
    }

}

/// One term of a ResizeSum chain: a token matrix laid out as an NCHW image, resized or not.
struct ResizeSumTerm {
    let tokens: String
    let target: String
    let resize: Node?
    let shapeReaders: [Int]
    /// The Reshape's (allowzero), which the channels-last view keeps.
    let reshapeAttributes: [String: Attribute]

    /// `value` as a term of a sum of the inferred `shape`, or nil.
    init?(_ value: String, _ shape: [Dim], _ r: GraphRewriter) {
        guard r.shape(value) == shape else { return nil }
        var image = value
        var resize: Node?
        if let node = r.soleProducer(of: value, OpType.resize) {
            let mode = (try? node.string("mode", default: "nearest")) ?? ""
            guard node.input(3) != nil, ["linear", "nearest", "cubic"].contains(mode),
                  (try? node.string("coordinate_transformation_mode", default: "half_pixel")) != "tf_crop_and_resize" else { return nil }
            resize = node
            image = node.inputs[0]
        }
        guard let (reshape, readers) = r.producerReadForShape(of: image, OpType.reshape),
              let transpose = r.soleProducer(of: reshape.inputs[0], OpType.transpose),
              (try? transpose.ints("perm")) == [0, 2, 1], r.shape(transpose.inputs[0])?.count == 3,
              let allowZero = try? reshape.int("allowzero", default: 0) else { return nil }
        // A 0 in the target copies the input's dim at its index unless allowzero: then entry 1 must not
        // be 0 (it would copy n, not C) and entries 2, 3 must be sizes, whose index the view changes.
        if allowZero == 0 {
            guard let s = r.context.contents[reshape.inputs[1]], s.count == 4, s[1] != .known(0),
                  [s[2], s[3]].allSatisfy({ $0.value.map { $0 > 0 } ?? true }) else { return nil }
        }
        tokens = transpose.inputs[0]
        target = reshape.inputs[1]
        reshapeAttributes = reshape.attributes
        self.resize = resize
        shapeReaders = readers
    }

    /// The terms of a left-deep chain of Adds ending in `add`, in the order the Adds add them.
    static func chain(_ add: Node, _ shape: [Dim], _ r: GraphRewriter) -> [ResizeSumTerm]? {
        for (rest, last) in add.operandOrders {
            guard let term = ResizeSumTerm(last, shape, r) else { continue }
            if let first = ResizeSumTerm(rest, shape, r) { return [first, term] }
            if let below = r.soleProducer(of: rest, OpType.add), let terms = chain(below, shape, r) { return terms + [term] }
        }
        return nil
    }
}
