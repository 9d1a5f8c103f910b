extension GraphPass {
    /// A 1×1 convolution of a channel concatenation is the sum of 1×1 convolutions of the parts:
    ///
    ///     Conv1x1(Concat(a_1, …, a_n; axis 1), W, b)  =  Σ_i Conv1x1(a_i, W_i) + b
    ///
    /// where W_i is the slice of W's input channels that meets a_i. Why: output channel m is
    /// Σ_c W[m, c]·x[c], and splitting the sum over c at the concatenation's boundaries gives one
    /// term per part. The slices are written as Slice nodes of W (folded to constants when W is one;
    /// a training graph's fed W is sliced each step, and Slice's gradient rule takes each part's
    /// gradient back to its columns of W); the bias is added once, after the sum. Matches a weight of
    /// known shape and a Concat nothing else reads, with every part's channel count known
    /// (`GraphRewriter.channels(of:)`; each part's convolution checks it at run time).
    ///
    /// On its own it trades one big convolution for n small ones and n−1 Adds; it exists so that each
    /// part's map can move further up its own branch (`convBeforeResize`, `foldConvIntoMatMul`).
    public static let splitConvOverConcat = overPointwiseConvs("split-conv-over-concat", minimumOpset: 10) { conv, r in   // Slice with inputs
        guard let concat = r.soleProducer(of: conv.input, OpType.concat), concat.inputs.count >= 2,
              let rank = r.shape(conv.input)?.count, rank == 4,
              let axis = try? concat.int("axis"), axis == 1 || axis == 1 - rank else { return }
        let channels = concat.inputs.map { r.channels(of: $0) }
        guard channels.allSatisfy({ $0 != nil }), channels.reduce(0, { $0 + $1! }) == conv.inChannels else { return }

        var attributes = conv.node.attributes
        attributes["kernel_shape"] = nil   // inferred from each slice
        var terms: [String] = []
        var start = 0
        for (part, c) in zip(concat.inputs, channels.map { $0! }) {
            terms.append(r.add(OpType.conv, [part, r.slice(conv.weight, axis: 1, start, start + c)], attributes: attributes))
            start += c
        }
        if let bias = conv.bias {
            terms.append(r.add(OpType.reshape, [bias, r.int64s([-1, 1, 1])]))   // [M] → [M, 1, 1] over N×M×H×W
        }
        r.replace(conv.index)
        r.sum(terms, writing: conv.node.outputs[0])
    }
}
