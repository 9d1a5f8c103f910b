import GraphIR

/// Transpose and the block rearrangements DepthToSpace / SpaceToDepth, which are a reshape, a
/// transpose and a reshape: all three become one strided copy (see StridedCopy.swift).
extension OpRegistry {
    static let transposeSchema = OpSchema(OpType.transpose, opsets: movementOpsets, inputs: 1...1, inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let shape = t.shape else { return [TensorType(t.dataType, nil)] }
        let perm = try transposePerm(ctx.node, rank: shape.count)
        return [TensorType(t.dataType, perm.map { shape[$0] })]
    }, makeKernel: { node, _ in
        ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            let perm = try transposePerm(node, rank: x.rank)
            return [try permuted(x, shape: x.shape, perm: perm, context)]
        }
    }).withGradient(transposeGradient)

    /// `perm` (default: reversed axes), checked to be a permutation of 0..<rank.
    static func transposePerm(_ node: Node, rank: Int) throws -> [Int] {
        guard let perm = try node.ints("perm") else { return Array((0..<rank).reversed()) }
        guard perm.count == rank, Set(perm) == Set(0..<rank) else {
            throw SegFormerError.invalid("\(node.label): perm \(perm) is not a permutation of the \(rank) input axes")
        }
        return perm
    }

    /// Transposes `x` seen with the (same element count) shape `shape` by `perm`.
    static func permuted(_ x: Tensor, shape: [Int], perm: [Int], _ context: ExecutionContext) throws -> Tensor {
        let inStrides = Strides.rowMajor(shape)
        if perm == Array(0..<perm.count) { return x.reshaped(shape) }   // identity: a view
        return try StridedCopy.materialize(x, offset: 0, shape: perm.map { shape[$0] },
                                           strides: perm.map { inStrides[$0] }, context: context)
    }

    // MARK: DepthToSpace / SpaceToDepth

    static let depthToSpaceSchema = OpSchema("DepthToSpace", opsets: movementOpsets, inputs: 1...1, inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let s = t.shape, s.count == 4 else { return [TensorType(t.dataType, nil)] }
        let b = try blockSize(ctx.node)
        func mul(_ d: Dim) -> Dim { d.value.map { .known($0 * b) } ?? Movement.product([.known(b), d]) }
        let c: Dim = s[1].value.map { .known($0 / (b * b)) } ?? .symbol("\(ctx.node.outputs.first ?? "?")#1")
        return [TensorType(t.dataType, [s[0], c, mul(s[2]), mul(s[3])])]
    }, makeKernel: { node, _ in
        let b = try blockSize(node)
        let mode = try depthToSpaceMode(node)
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            guard x.rank == 4, x.shape[1] % (b * b) == 0 else {
                throw SegFormerError.invalid("\(node.label): input shape \(x.shape) must be [N, C, H, W] with C divisible by \(b * b)")
            }
            let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
            let cc = c / (b * b)
            let y: Tensor
            if mode == "DCR" {
                y = try permuted(x, shape: [n, b, b, cc, h, w], perm: [0, 3, 4, 1, 5, 2], context)
            } else {
                y = try permuted(x, shape: [n, cc, b, b, h, w], perm: [0, 1, 4, 2, 5, 3], context)
            }
            return [y.reshaped([n, cc, h * b, w * b])]
        }
    }).withGradient(depthToSpaceGradient)

    static let spaceToDepthSchema = OpSchema("SpaceToDepth", opsets: movementOpsets, inputs: 1...1, inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let s = t.shape, s.count == 4 else { return [TensorType(t.dataType, nil)] }
        let b = try blockSize(ctx.node)
        func div(_ d: Dim, _ i: Int) -> Dim { d.value.map { .known($0 / b) } ?? .symbol("\(ctx.node.outputs.first ?? "?")#\(i)") }
        let c: Dim = s[1].value.map { .known($0 * b * b) } ?? Movement.product([.known(b * b), s[1]])
        return [TensorType(t.dataType, [s[0], c, div(s[2], 2), div(s[3], 3)])]
    }, makeKernel: { node, _ in
        let b = try blockSize(node)
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            guard x.rank == 4, x.shape[2] % b == 0, x.shape[3] % b == 0 else {
                throw SegFormerError.invalid("\(node.label): input shape \(x.shape) must be [N, C, H, W] with H and W divisible by \(b)")
            }
            let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
            let y = try permuted(x, shape: [n, c, h / b, b, w / b, b], perm: [0, 3, 5, 1, 2, 4], context)
            return [y.reshaped([n, c * b * b, h / b, w / b])]
        }
    }).withGradient(spaceToDepthGradient)

    // MARK: Gradients

    /// Transpose: dX = Transpose(dY) by the inverse permutation (the default reversed perm is its own
    /// inverse, so it stays the default).
    static let transposeGradient: GradientRule = { ctx in
        guard ctx.needs(0) else { return [nil] }
        var attributes: [String: Attribute] = [:]
        if let perm = try ctx.node.ints("perm") {
            guard Set(perm) == Set(0..<perm.count) else {
                throw SegFormerError.invalid("\(ctx.node.label): perm \(perm) is not a permutation")
            }
            var inverse = [Int](repeating: 0, count: perm.count)
            for (i, p) in perm.enumerated() { inverse[p] = i }
            attributes["perm"] = .ints(inverse)
        }
        return [ctx.builder.add1(OpType.transpose, [try ctx.gradient()], attributes: attributes)]
    }

    /// DepthToSpace DCR is undone by SpaceToDepth; CRD has no ONNX inverse, so DepthToSpaceGrad.
    static let depthToSpaceGradient: GradientRule = { ctx in
        guard ctx.needs(0) else { return [nil] }
        let b = try blockSize(ctx.node)
        let mode = try ctx.node.string("mode", default: "DCR")
        if mode == "DCR" {
            return [ctx.builder.add1("SpaceToDepth", [try ctx.gradient()], attributes: ["blocksize": .int(b)])]
        }
        return [ctx.builder.add1("DepthToSpaceGrad", domain: trainingDomain, [try ctx.gradient()],
                                 attributes: ["blocksize": .int(b), "mode": .string(mode)])]
    }

    static let spaceToDepthGradient: GradientRule = { ctx in
        guard ctx.needs(0) else { return [nil] }
        return [ctx.builder.add1("DepthToSpace", [try ctx.gradient()],
                                 attributes: ["blocksize": .int(try blockSize(ctx.node)), "mode": .string("DCR")])]
    }

    /// DepthToSpaceGrad(dY) [N, C, H·b, W·b] → [N, C·b², H, W]: the inverse rearrangement of DepthToSpace
    /// in `mode` (the transpose by the inverse permutation).
    static let depthToSpaceGradSchema = OpSchema("DepthToSpaceGrad", domain: trainingDomain, inputs: 1...1, inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let s = t.knownShape, s.count == 4 else { return [TensorType(t.dataType, nil)] }
        let b = try blockSize(ctx.node)
        return [TensorType(t.dataType, known: [s[0], s[1] * b * b, s[2] / b, s[3] / b])]
    }, makeKernel: { node, _ in
        let b = try blockSize(node)
        let mode = try depthToSpaceMode(node)
        return ClosureKernel { inputs, context in
            let dy = try inputs.required(0)
            guard dy.rank == 4, dy.shape[2] % b == 0, dy.shape[3] % b == 0 else {
                throw SegFormerError.invalid("\(node.label): gradient shape \(dy.shape) must be [N, C, H, W] with H and W divisible by \(b)")
            }
            let (n, c, h, w) = (dy.shape[0], dy.shape[1], dy.shape[2] / b, dy.shape[3] / b)
            // Forward: x [n, b, b, c, h, w] (DCR) or [n, c, b, b, h, w] (CRD) → y [n, c, h, b, w, b].
            let perm = mode == "DCR" ? [0, 3, 5, 1, 2, 4] : [0, 1, 3, 5, 2, 4]
            let g = try permuted(dy, shape: [n, c, h, b, w, b], perm: perm, context)
            return [g.reshaped([n, c * b * b, h, w])]
        }
    })

    static func blockSize(_ node: Node) throws -> Int {
        guard let b = try node.int("blocksize"), b > 0 else {
            throw SegFormerError.invalid("\(node.label): blocksize must be a positive int")
        }
        return b
    }

    /// DepthToSpace's (and its gradient's) `mode`: "DCR" (the default) or "CRD".
    static func depthToSpaceMode(_ node: Node) throws -> String {
        let mode = try node.string("mode", default: "DCR")
        guard mode == "DCR" || mode == "CRD" else {
            throw SegFormerError.invalid("\(node.label): mode must be DCR or CRD, got \(mode)")
        }
        return mode
    }
}
