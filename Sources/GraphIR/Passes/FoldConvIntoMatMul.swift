extension GraphPass {
    /// A 1×1 convolution of a token matrix laid out as an image folds into the matrix product that
    /// made the tokens:
    ///
    ///     y = x·P [+ c]                          x: [B, N, C], P: [C, K], c: [K]
    ///     Conv1x1(Reshape(Transpose(y, [0, 2, 1]), [B, K, h, w]), W [, b])
    ///       =  Reshape(Transpose(x·(P·W2ᵀ) [+ c·W2ᵀ] [+ b], [0, 2, 1]), [B, M, h, w])
    ///
    /// with W2 = W as an M×K matrix. Why: the Transpose/Reshape only relabel token n of channel k as
    /// pixel (n / w, n % w) of channel k, so the convolution's output at channel m, token n is
    /// Σ_k W2[m, k]·y[n, k] = (y·W2ᵀ)[n, m], and y·W2ᵀ = x·(P·W2ᵀ) + c·W2ᵀ by linearity. The merged
    /// weight and bias are written as MatMul/Transpose/Reshape nodes of P, c, W and b: folding computes
    /// them once when those are constants; in a training graph, where they are fed parameters, the
    /// graph computes them each step (a K×M and a C×K by K×M product) and autodiff sends the gradients
    /// through them to P, c, W and b. The Reshape's target keeps its batch and spatial entries with the
    /// channel entry replaced by M, and Shape nodes that read the old image read the new one's shape
    /// with K channels put back. Matches P, c, W, b of known shapes and intermediates nothing else
    /// reads, with the Reshape keeping the batch (checked on the inferred shapes) and the K channels (from the
    /// inferred shapes, or where they are symbolic from the convolution: it fails unless h·w = n,
    /// and then so does the new Reshape).
    public static let foldConvIntoMatMul = overPointwiseConvs("fold-conv-into-matmul", minimumOpset: 10) { conv, r in   // Slice with inputs
        guard let (reshape, shapeReaders) = r.producerReadForShape(of: conv.input, OpType.reshape),
              let transpose = r.soleProducer(of: reshape.inputs[0], OpType.transpose),
              (try? transpose.ints("perm")) == [0, 2, 1],
              let tokens = r.shape(transpose.inputs[0]), let image = r.shape(conv.input),
              tokens.count == 3, image.count == 4, image[0] == tokens[0],
              image[1].value ?? conv.inChannels == conv.inChannels else { return }
        // y = MatMul(x, P) or Add(MatMul(x, P), c) in either order.
        var product = r.soleProducer(of: transpose.inputs[0], OpType.matMul)
        var offset: String?
        if product == nil, let add = r.soleProducer(of: transpose.inputs[0], OpType.add) {
            for (m, c) in [(0, 1), (1, 0)] where product == nil {
                if let matmul = r.soleProducer(of: add.inputs[m], OpType.matMul), let t = r.knownShape(add.inputs[c]),
                   t.reduce(1, *) == conv.inChannels, t.last == conv.inChannels, t.count <= 3 {
                    product = matmul
                    offset = add.inputs[c]
                }
            }
        }
        guard let matmul = product, let p = r.knownShape(matmul.inputs[1]), p.count == 2,
              p[1] == conv.inChannels else { return }

        let k = conv.inChannels, m = conv.outChannels
        let wT = r.add(OpType.transpose, [r.add(OpType.reshape, [conv.weight, r.int64s([m, k])])],
                       attributes: ["perm": .ints([1, 0])])   // W2ᵀ: [K, M]
        var y = r.add(OpType.matMul, [matmul.inputs[0], r.add(OpType.matMul, [matmul.inputs[1], wT])])
        var bias: String?
        if let offset { bias = r.add(OpType.matMul, [r.add(OpType.reshape, [offset, r.int64s([1, k])]), wT]) }   // [1, M]
        if let b = conv.bias { bias = bias.map { r.add(OpType.add, [$0, b]) } ?? b }
        if let bias { y = r.add(OpType.add, [y, bias]) }
        let image2 = r.add(OpType.transpose, [y], attributes: transpose.attributes)
        let target = r.replacingChannels(of: reshape.inputs[1], rank: 4, with: m)
        r.replace(conv.index)
        r.add(OpType.reshape, [image2, target], attributes: reshape.attributes, writing: conv.node.outputs[0])
        r.rewireShapeReaders(shapeReaders, to: conv.node.outputs[0], channels: k)
    }
}
