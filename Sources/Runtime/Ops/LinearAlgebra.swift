import GraphIR

// MatMul (numpy semantics) and Gemm. float32/float64 go through OpenBLAS; float16/bfloat16 are
// computed in float32; integer types use a plain loop with wrapping arithmetic (ONNX integer
// MatMul overflows silently, like numpy).

extension OpRegistry {
    static let linearAlgebraOps: [OpSchema] = [
        OpSchema(OpType.matMul, opsets: 1...23, inputs: 2...2,
                 inferTypes: { try LinearAlgebra.inferMatMul($0) },
                 makeKernel: { node, _ in LinearAlgebra.matMulKernel(node) })
            .withGradient { try LinearAlgebra.matMulGradient($0) }.withWork(WorkRules.product),
        OpSchema("Gemm", opsets: 1...23, inputs: 2...3,
                 inferTypes: { try LinearAlgebra.inferGemm($0) },
                 makeKernel: { node, opset in try LinearAlgebra.gemmKernel(node, opset: opset) })
            .withGradient { try LinearAlgebra.gemmGradient($0) }.withWork(WorkRules.product),
        // The fuse-matmul-epilogue pass's op (inference graphs, and training's gradient graph after
        // autodiff: fuse-matmul-bias-residual; so no gradient rule). Inputs 4–5
        // (fuse-layer-norm-into-producer, inference only): a LayerNorm's Scale and B, whose output is
        // the second output.
        OpSchema(OpType.fusedMatMul, domain: fusedDomain, inputs: 2...6, outputs: 1...2,
                 inferTypes: { ctx in ctx.withLayerNormOutput(try LinearAlgebra.inferFusedMatMul(ctx)) },
                 makeKernel: { node, _ in try LinearAlgebra.fusedMatMulKernel(node) }).withWork(WorkRules.product),
        // Training kernels (see "MARK: gradients").
        OpSchema("MatMulTransposed", domain: trainingDomain, inputs: 2...3, shapeInputs: [2],
                 inferTypes: { ctx in [LinearAlgebra.inferFromTarget(ctx, 2)] },
                 makeKernel: { node, _ in try LinearAlgebra.matMulTransposedKernel(node) }),
        OpSchema("MatMulGrad", domain: trainingDomain, inputs: 3...3, shapeInputs: [2],
                 inferTypes: { ctx in [LinearAlgebra.inferFromTarget(ctx, 2)] },
                 makeKernel: { node, _ in try LinearAlgebra.matMulGradKernel(node) }),
    ]
}

extension LinearAlgebra {
    static func inferMatMul(_ ctx: TypeInferenceContext) throws -> [TensorType?] {
        guard let ta = ctx.type(0) else { return [nil] }
        guard let sa0 = ta.shape, let sb0 = ctx.type(1)?.shape else { return [TensorType(ta.dataType, nil)] }
        return [TensorType(ta.dataType, try matMulShape(sa0, sb0, ctx.node.label))]
    }

    /// MatMul's with op(A), op(B) the operands with their last two axes swapped where transA/transB say.
    static func inferFusedMatMul(_ ctx: TypeInferenceContext) throws -> [TensorType?] {
        guard let ta = ctx.type(0) else { return [nil] }
        guard let sa = ta.shape, let sb = ctx.type(1)?.shape else { return [TensorType(ta.dataType, nil)] }
        let label = ctx.node.label
        guard sa.count >= 2, sb.count >= 2 else {
            throw SegFormerError.invalid("\(label): FusedMatMul operands must have rank ≥ 2, got ranks \(sa.count) and \(sb.count)")
        }
        let transA = try ctx.node.int("transA", default: 0) != 0, transB = try ctx.node.int("transB", default: 0) != 0
        let product = try matMulShape(transA ? swappingLastTwo(sa) : sa, transB ? swappingLastTwo(sb) : sb, label)
        let transposed = try ctx.node.int("transposeOutput", default: 0) != 0 && product.count >= 2
        return [TensorType(ta.dataType, transposed ? swappingLastTwo(product) : product)]
    }

    static func swappingLastTwo<D>(_ shape: [D]) -> [D] {
        var s = shape
        s.swapAt(s.count - 1, s.count - 2)
        return s
    }

    /// numpy matmul's output shape (1-D operands promoted and their unit dim dropped again).
    static func matMulShape(_ sa0: [Dim], _ sb0: [Dim], _ label: String) throws -> [Dim] {
        guard !sa0.isEmpty, !sb0.isEmpty else {
            throw SegFormerError.invalid("\(label): MatMul inputs must have rank ≥ 1, got ranks \(sa0.count) and \(sb0.count)")
        }
        let sa = sa0.count == 1 ? [.known(1)] + sa0 : sa0
        let sb = sb0.count == 1 ? sb0 + [.known(1)] : sb0
        let ka = sa[sa.count - 1], kb = sb[sb.count - 2]
        if let x = ka.value, let y = kb.value, x != y {
            throw SegFormerError.invalid("\(label): MatMul inner dimensions differ: \(sa0) × \(sb0)")
        }
        var out: [Dim]
        do { out = try broadcastShapes(Array(sa.dropLast(2)), Array(sb.dropLast(2))) } catch {
            throw SegFormerError.invalid("\(label): MatMul batch dimensions of \(sa0) × \(sb0) do not broadcast")
        }
        if sa0.count > 1 { out.append(sa[sa.count - 2]) }
        if sb0.count > 1 { out.append(sb[sb.count - 1]) }
        return out
    }

    static func inferGemm(_ ctx: TypeInferenceContext) throws -> [TensorType?] {
        guard let ta = ctx.type(0) else { return [nil] }
        guard let sa = ta.shape, let sb = ctx.type(1)?.shape else { return [TensorType(ta.dataType, nil)] }
        let label = ctx.node.label
        guard sa.count == 2, sb.count == 2 else {
            throw SegFormerError.invalid("\(label): Gemm inputs A and B must be 2-D, got \(sa) and \(sb)")
        }
        let transA = try ctx.node.int("transA", default: 0) != 0
        let transB = try ctx.node.int("transB", default: 0) != 0
        let m = transA ? sa[1] : sa[0], ka = transA ? sa[0] : sa[1]
        let kb = transB ? sb[1] : sb[0], n = transB ? sb[0] : sb[1]
        if let x = ka.value, let y = kb.value, x != y {
            throw SegFormerError.invalid("\(label): Gemm inner dimensions differ: A \(sa) (transA \(transA)), B \(sb) (transB \(transB))")
        }
        return [TensorType(ta.dataType, [m, n])]
    }

    /// The output type of a training kernel whose shape is the value of input `i` (a shape tensor).
    static func inferFromTarget(_ ctx: TypeInferenceContext, _ i: Int) -> TensorType? {
        guard let t = ctx.type(0) else { return nil }
        guard let shape = ctx.constant(i), let dims = try? shape.integers() else { return TensorType(t.dataType, nil) }
        return TensorType(t.dataType, known: dims)
    }

    static func matMulGradient(_ ctx: GradientContext) throws -> [String?] {
        let dy = try ctx.gradient()
        let a = ctx.input(0), b = ctx.input(1)
        var result: [String?] = [nil, nil]
        if ctx.needs(0) {
            result[0] = ctx.builder.add1("MatMulGrad", domain: trainingDomain, [dy, b, ctx.shape(of: a)],
                                         attributes: ["input": .int(0)], name: "MatMulGradA")
        }
        if ctx.needs(1) {
            result[1] = ctx.builder.add1("MatMulGrad", domain: trainingDomain, [dy, a, ctx.shape(of: b)],
                                         attributes: ["input": .int(1)], name: "MatMulGradB")
        }
        return result
    }

    static func gemmGradient(_ ctx: GradientContext) throws -> [String?] {
        let node = ctx.node
        let dy = try ctx.gradient()
        let alpha = try node.float("alpha", default: 1), beta = try node.float("beta", default: 1)
        let transA = try node.int("transA", default: 0) != 0
        let transB = try node.int("transB", default: 0) != 0
        let a = ctx.input(0), b = ctx.input(1)
        var result: [String?] = [nil, nil, nil]
        func mmt(_ x: String, _ y: String, _ tx: Bool, _ ty: Bool, _ name: String) -> String {
            ctx.builder.add1("MatMulTransposed", domain: trainingDomain, [x, y],
                             attributes: ["transA": .int(tx ? 1 : 0), "transB": .int(ty ? 1 : 0), "alpha": .float(alpha)],
                             name: name)
        }
        if ctx.needs(0) {
            // op(A) = A: dA = α·dY·op(B)ᵀ;  op(A) = Aᵀ: dA = α·op(B)·dYᵀ.
            result[0] = transA ? mmt(b, dy, transB, true, "GemmGradA") : mmt(dy, b, false, !transB, "GemmGradA")
        }
        if ctx.needs(1) {
            // op(B) = B: dB = α·op(A)ᵀ·dY;  op(B) = Bᵀ: dB = α·dYᵀ·op(A).
            result[1] = transB ? mmt(dy, a, true, transA, "GemmGradB") : mmt(a, dy, !transA, false, "GemmGradB")
        }
        if node.inputs.count > 2, !node.inputs[2].isEmpty, ctx.needs(2) {
            var g = dy
            if beta != 1 {
                g = ctx.builder.add1(OpType.mul, [dy, ctx.builder.scalar(beta, name: "gemm_beta")])
            }
            result[2] = ctx.sumToShape(g, like: ctx.input(2))
        }
        return result
    }
}
