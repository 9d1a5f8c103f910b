import GraphIR

/// Transpose and the block rearrangements DepthToSpace / SpaceToDepth, which are a reshape, a
/// transpose and a reshape: all three become one strided copy (Kernels/TransposeKernels.swift).
extension OpRegistry {
    static let transposeSchema = OpSchema(OpType.transpose, opsets: movementOpsets(since: 1), inputs: 1...1, inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let shape = t.shape else { return [TensorType(t.dataType, nil)] }
        let perm = try transposePerm(try ctx.node.ints("perm"), rank: shape.count, ctx.node.label)
        return [TensorType(t.dataType, perm.map { shape[$0] })]
    }, makeKernel: { node, _ in
        let permAttr = try node.ints("perm")
        let label = node.label
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            let perm = try transposePerm(permAttr, rank: x.rank, label)
            return [try TransposeKernels.transpose(x, perm: perm, context: context)]
        }
    }).withGradient(transposeGradient)

    /// The `perm` attribute (default: reversed axes), checked to be a permutation of 0..<rank.
    static func transposePerm(_ perm: [Int]?, rank: Int, _ label: String) throws -> [Int] {
        guard let perm else { return Array((0..<rank).reversed()) }
        guard perm.count == rank, Set(perm) == Set(0..<rank) else {
            throw SegFormerError.invalid("\(label): perm \(perm) is not a permutation of the \(rank) input axes")
        }
        return perm
    }

    // MARK: DepthToSpace / SpaceToDepth

    // Its kernel factory is shaped like DepthToSpaceGrad's below (the same attributes, the inverse kernel).
    static let depthToSpaceSchema = OpSchema("DepthToSpace", opsets: movementOpsets(since: 1), inputs: 1...1, inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let s = t.shape, s.count == 4 else { return [TensorType(t.dataType, nil)] }
        let b = try blockSize(ctx.node)
        func mul(_ d: Dim) -> Dim { d.value.map { .known($0 * b) } ?? Movement.product([.known(b), d]) }
        let c: Dim = s[1].value.map { .known($0 / (b * b)) } ?? .symbol("\(ctx.node.outputs.first ?? "?")#1")
        return [TensorType(t.dataType, [s[0], c, mul(s[2]), mul(s[3])])]
    }, makeKernel: { node, _ in
        let b = try blockSize(node)
        let mode = try depthToSpaceMode(node)
        let label = node.label
        return ClosureKernel { inputs, context in
            [try TransposeKernels.depthToSpace(try inputs.required(0), blockSize: b, mode: mode, label: label,
                                               context: context)]
        }
    }).withGradient(depthToSpaceGradient)

    static let spaceToDepthSchema = OpSchema("SpaceToDepth", opsets: movementOpsets(since: 1), inputs: 1...1, inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let s = t.shape, s.count == 4 else { return [TensorType(t.dataType, nil)] }
        let b = try blockSize(ctx.node)
        func div(_ d: Dim, _ i: Int) -> Dim { d.value.map { .known($0 / b) } ?? .symbol("\(ctx.node.outputs.first ?? "?")#\(i)") }
        let c: Dim = s[1].value.map { .known($0 * b * b) } ?? Movement.product([.known(b * b), s[1]])
        return [TensorType(t.dataType, [s[0], c, div(s[2], 2), div(s[3], 3)])]
    }, makeKernel: { node, _ in
        let b = try blockSize(node)
        let label = node.label
        return ClosureKernel { inputs, context in
            [try TransposeKernels.spaceToDepth(try inputs.required(0), blockSize: b, label: label, context: context)]
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
    // Its kernel factory is shaped like DepthToSpace's above (the same attributes, the inverse kernel).
    static let depthToSpaceGradSchema = OpSchema("DepthToSpaceGrad", domain: trainingDomain, inputs: 1...1, inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let s = t.knownShape, s.count == 4 else { return [TensorType(t.dataType, nil)] }
        let b = try blockSize(ctx.node)
        return [TensorType(t.dataType, known: [s[0], s[1] * b * b, s[2] / b, s[3] / b])]
    }, makeKernel: { node, _ in
        let b = try blockSize(node)
        let mode = try depthToSpaceMode(node)
        let label = node.label
        return ClosureKernel { inputs, context in
            [try TransposeKernels.depthToSpaceBackward(try inputs.required(0), blockSize: b, mode: mode, label: label,
                                                       context: context)]
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
