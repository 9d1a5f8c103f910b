extension GraphPass {
    /// Scaled dot-product attention written out in ONNX ops becomes one `Attention` node (internal
    /// `fusedDomain`), whose tiled kernel never holds the N×M scores in full:
    ///
    ///     O = MatMul(Softmax(c · MatMul(c_q · Q, c_k · Kᵀ), last axis), V)
    ///       = Attention(Q, K, V; scale = c · c_q · c_k)
    ///
    /// Why it is the same function: scalar factors commute with the matrix product, so every constant
    /// scalar Mul (or Div) on the scores, on Q or on Kᵀ is one factor of the scores. Matched:
    /// - the scale as Mul or Div by a one-element float constant (any of the three places, or none);
    /// - Kᵀ as a Transpose of K (any permutation: K is then the same Transpose with its last two axes
    ///   swapped back, or the Transpose's input when that undoes it) or as any tensor (K is then its
    ///   Transpose over the last two axes);
    /// - Softmax over the last axis (at opsets before 13, axis = rank − 1 coerces to the same rows),
    ///   optionally followed by Casts to float (eager exports write two: to the softmax's dtype and back);
    /// - Q, Kᵀ, V float tensors of one rank ≥ 2 whose leading (batch) dims are the same (so MatMul
    ///   does not broadcast), and every intermediate read by the pattern alone.
    /// Anything else (another softmax axis, a scale that is not a constant scalar, a shared score or
    /// probability tensor, broadcasting batch dims) is left as it is.
    ///
    /// Exports split the heads with copies: Q, K and V are each a linear layer's [B, N, h·d] output
    /// reshaped to [B, N, h, d] and transposed to [B, h, N, d], and the output goes back the same way.
    /// When Q, K and V all come from such a Transpose (tokens and heads swapped, read by the pattern
    /// alone; for K, the Transpose that makes Kᵀ may do both swaps at once) and the output's only
    /// reader is the Transpose back (behind a Reshape that keeps the shape, as the opset-17 export
    /// writes), the node takes the untransposed tensors in the tokens-first
    /// layout (`AttentionLayout.tokensFirst`) and writes the Transpose's output: four copies fewer,
    /// the same numbers. Plain Shape nodes may read the transposed tensors too (exports compute Reshape
    /// targets from them): they read the untransposed tensor's shape in swapped order instead.
    /// Otherwise the node is in the heads-first layout and the Transposes stay.
    public static let fuseAttention = overNodes("fuse-attention", of: OpType.matMul) { index, product, r in
        guard product.inputs.count == 2, let attention = AttentionPattern(product, r) else { return }
        r.replace(index)
        var attributes: [String: Attribute] = ["scale": .float(Float(attention.scale))]
        if let tokens = attention.tokensFirst(product, r) {
            tokens.removed.forEach(r.replace)
            // Shapes read of the transposed tensors: the untransposed ones' with tokens and heads swapped.
            for (readers, source) in tokens.shapeReaders {
                r.rewireShapeReaders(readers, to: source, permutation: tokens.headSwap)
            }
            attributes[AttentionLayout.attribute] = .string(AttentionLayout.tokensFirst.rawValue)
            r.add(OpType.attention, domain: fusedDomain, [tokens.queries, tokens.keys, tokens.values],
                  attributes: attributes, writing: tokens.output)
            return
        }
        let k = attention.keys(r)
        r.add(OpType.attention, domain: fusedDomain, [attention.queries, k, product.inputs[1]],
              attributes: attributes, writing: product.outputs[0])
    }
}

/// The parts of Softmax(scale · Q·Kᵀ)·V found behind the final MatMul (whose first input is P).
private struct AttentionPattern {
    var queries: String
    var keysTransposed: String
    /// The Transpose producing `keysTransposed`, when the pattern consumes it.
    var keysTranspose: Node?
    var scale: Double

    init?(_ product: Node, _ r: GraphRewriter) {
        var probabilities = product.inputs[0]
        let values = product.inputs[1]
        while let cast = r.soleProducer(of: probabilities, OpType.cast) {
            guard let to = try? cast.int("to"), to == Int(DataType.float.rawValue) else { return nil }
            probabilities = cast.inputs[0]
        }
        guard let softmax = r.soleProducer(of: probabilities, OpType.softmax),
              let scoreShape = r.shape(softmax.inputs[0]), scoreShape.count >= 2,
              let axis = try? softmax.int("axis", default: r.context.opset >= 13 ? -1 : 1),
              axis == -1 || axis == scoreShape.count - 1 else { return nil }
        var scores = softmax.inputs[0], scale = 1.0
        Self.peelScale(&scores, &scale, r)
        guard let scoresProduct = r.soleProducer(of: scores, OpType.matMul), scoresProduct.inputs.count == 2 else { return nil }
        var queries = scoresProduct.inputs[0], keysTransposed = scoresProduct.inputs[1]
        Self.peelScale(&queries, &scale, r)
        Self.peelScale(&keysTransposed, &scale, r)

        // One rank, float, the same leading dims: the MatMuls are batched products without broadcasting.
        let types = [queries, keysTransposed, values].map { r.context.types[$0] }
        let shapes = types.compactMap { $0?.shape }
        guard types.allSatisfy({ $0?.dataType == .float }), shapes.count == 3,
              let rank = shapes.first?.count, rank >= 2, shapes.allSatisfy({ $0.count == rank }),
              shapes.allSatisfy({ $0.dropLast(2) == shapes[0].dropLast(2) }), scale.isFinite else { return nil }
        var transpose = r.soleProducer(of: keysTransposed, OpType.transpose)
        if let perm = try? transpose?.ints("perm"), perm.count != rank { transpose = nil }
        (self.queries, self.keysTransposed, self.keysTranspose, self.scale) = (queries, keysTransposed, transpose, scale)
    }

    /// Multiplies `scale` by the constant scalar that `value` is multiplied (or divided) by, and steps
    /// back to the scaled tensor, when `value` is such a product read by the pattern alone.
    private static func peelScale(_ value: inout String, _ scale: inout Double, _ r: GraphRewriter) {
        if let mul = r.soleProducer(of: value, OpType.mul) {
            for (x, c) in mul.operandOrders {
                if let (factor, type) = r.scalar(c), type == .float { value = x; scale *= factor; return }
            }
        } else if let div = r.soleProducer(of: value, OpType.div), let (divisor, type) = r.scalar(div.input(1)),
                  type == .float, divisor != 0 {
            value = div.inputs[0]
            scale /= divisor
        }
    }

    /// K [B…, M, d]: Kᵀ's Transpose with its last two axes swapped back (none when that is the
    /// identity), or a Transpose of Kᵀ over its last two axes.
    func keys(_ r: GraphRewriter) -> String {
        guard let transpose = keysTranspose else {
            return r.add(OpType.transpose, [keysTransposed], attributes: ["perm": .ints(swapLast(Array(0..<rank(r))))])
        }
        let back = keysTransposeSwappedBack(r)
        if back == Array(0..<rank(r)) { return transpose.inputs[0] }
        return r.add(OpType.transpose, [transpose.inputs[0]], attributes: ["perm": .ints(back)])
    }

    private func rank(_ r: GraphRewriter) -> Int { r.shape(keysTransposed)!.count }

    private func swapLast(_ perm: [Int]) -> [Int] { perm.dropLast(2) + [perm[perm.count - 1], perm[perm.count - 2]] }

    /// The permutation taking Kᵀ's Transpose's input to K: its own with the last two axes swapped back.
    private func keysTransposeSwappedBack(_ r: GraphRewriter) -> [Int] {
        swapLast((try? keysTranspose?.ints("perm")) ?? Array((0..<rank(r)).reversed()))
    }

    /// The tensors of the tokens-first layout, when all four head transposes can be dropped.
    struct TokensFirst {
        var queries: String, keys: String, values: String
        /// The value the Transpose back to tokens-first writes.
        var output: String
        /// The nodes after the product that the node replaces (the Transpose back, a Reshape before it).
        var removed: [Int]
        /// Shape nodes reading a head-swapped tensor, with the tensor of the other layout.
        var shapeReaders: [(readers: [Int], source: String)]
        /// The permutation swapping tokens and heads (its own inverse).
        var headSwap: [Int]
    }

    /// Q, K, V as [B…, N, h, d] before the exports' Transposes that swap tokens and heads, and the
    /// Transpose undoing that swap on the output: all present and read by the pattern alone, or nil.
    func tokensFirst(_ product: Node, _ r: GraphRewriter) -> TokensFirst? {
        let rank = self.rank(r)
        guard rank >= 3 else { return nil }
        let headSwap = Array(0..<(rank - 3)) + [rank - 2, rank - 3, rank - 1]
        var shapeReaders: [(readers: [Int], source: String)] = []
        /// The input of the Transpose swapping tokens and heads that writes `value` for the pattern
        /// (and Shape nodes) alone.
        func beforeHeadSwap(_ value: String) -> String? {
            guard let (t, shapes) = r.producerReadForShape(of: value, OpType.transpose), (try? t.ints("perm")) == headSwap else { return nil }
            shapeReaders.append((shapes, t.inputs[0]))
            return t.inputs[0]
        }
        // K: Kᵀ's Transpose may swap tokens and heads itself (K₄ → Kᵀ in one, as the opset-17 export
        // writes it), or only the last two axes of a head-swapped K.
        var keys: String?
        if let transpose = keysTranspose {
            let back = keysTransposeSwappedBack(r)
            if back == headSwap { keys = transpose.inputs[0] }
            if back == Array(0..<rank) { keys = beforeHeadSwap(transpose.inputs[0]) }
        }
        guard let queries = beforeHeadSwap(self.queries), let keys, let values = beforeHeadSwap(product.inputs[1]) else { return nil }
        // The output: a Reshape keeping the shape (same inferred dims) may stand before the Transpose back.
        var output = product.outputs[0], removed: [Int] = [], afterProduct: [Int] = []
        if let (index, reshape, shapes) = r.readerBesideShapes(of: output, OpType.reshape),
           let before = r.shape(output), before == r.shape(reshape.outputs[0]) {
            (output, removed, afterProduct) = (reshape.outputs[0], [index], shapes)
        }
        guard let (index, back, shapes) = r.readerBesideShapes(of: output, OpType.transpose),
              (try? back.ints("perm")) == headSwap else { return nil }
        shapeReaders.append((afterProduct + shapes, back.outputs[0]))
        return TokensFirst(queries: queries, keys: keys, values: values, output: back.outputs[0], removed: removed + [index],
                           shapeReaders: shapeReaders, headSwap: headSwap)
    }
}
