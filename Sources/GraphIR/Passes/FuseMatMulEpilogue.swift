extension GraphPass {
    /// A float32 MatMul, the Transposes that feed it and the elementwise ops that follow it become one
    /// `FusedMatMul` (in `fusedDomain`), whose kernel adds the bias and the residual and applies the
    /// Relu to each block of the product while it is still in cache, reads transposed operands in
    /// place, and writes a transposed result directly (SegFormer transposes each linear's output to
    /// NCHW before the decode head's resize and before each MixFFN's depthwise conv):
    ///
    ///     Relu((MatMul(Transpose(a), Transpose(b)) + bias) + residual)
    ///       = FusedMatMul(a, b, bias, residual; transA, transB, activation = Relu)
    ///     Transpose(Relu(MatMul(Transpose(a), Transpose(b)) + bias))
    ///       = FusedMatMul(a, b, bias; transA, transB, activation = Relu, transposeOutput)
    ///
    /// every part optional but the MatMul, and at least one present. Why it is the same function: a
    /// Transpose swapping the last two axes is what transA/transB mean for the GEMM of each batch;
    /// the epilogue performs the very float operations of the Add, Add and Relu nodes, in their order
    /// (Add is commutative in IEEE arithmetic, so operand order does not matter); a Transpose after
    /// them moves values without changing any, and (A·B)ᵀ = Bᵀ·Aᵀ is the same sums of the same
    /// products (the GEMM may add them in another order: equal up to float rounding). Matched only: both
    /// operands of rank ≥ 2 (no 1-D promotion); a Transpose whose perm swaps exactly the last two axes;
    /// a bias that is a float value of known shape with N elements along the last axis (N = the
    /// product's last dim, rank ≤ the product's, so it broadcasts without changing the shape): a
    /// constant, or a training graph's bias parameter; a residual whose inferred
    /// shape equals the product's; each intermediate read by the next op of the pattern alone.
    /// FusedMatMul has no gradient rule: in training it runs over the gradient graph, after autodiff
    /// (`fuseMatMulBiasAndResidual`).
    public static let fuseMatMulEpilogue = matMulEpilogue("fuse-matmul-epilogue", gradientGraph: false)

    /// The same fusion for the forward part of a gradient graph (it runs after autodiff, so FusedMatMul
    /// needs no gradient rule): the bias, residual and Relu after a MatMul, not the Transposes. The
    /// forward must keep its bits (the b0 training reference's AdamW check sits on a decode-head Relu
    /// kink), and that holds: the GEMM reads its operands as MatMul does and the epilogue performs the
    /// nodes' own float operations (a tall product's row blocks included: TrainingGraphPassesTests
    /// checks b0's step bit for bit at 1, 2 and 3 threads), while reading a Transpose as a GEMM flag or
    /// writing Bᵀ·Aᵀ may change the GEMM's rounding, so Transposes stay nodes. The backward reads the
    /// shape of each intermediate (an Add's gradient is summed to its operands' shapes): those Shape
    /// nodes read the fused output instead, which has the same shape.
    public static let fuseMatMulBiasAndResidual = matMulEpilogue("fuse-matmul-bias-residual", gradientGraph: true)

    private static func matMulEpilogue(_ name: String, gradientGraph: Bool) -> GraphPass {
        overNodes(name, of: OpType.matMul) { index, matmul, r in
            guard let type = r.context.types[matmul.outputs[0]], type.dataType == .float, let shape = type.shape,
                  let n = shape.last?.value,
                  matmul.inputs.allSatisfy({ (r.shape($0)?.count ?? 0) >= 2 }) else { return }
            var operands = matmul.inputs, flags = [false, false]
            for i in 0..<2 where !gradientGraph {   // operand Transposes as GEMM flags: inference graphs only
                if let transpose = r.soleProducer(of: operands[i], OpType.transpose), swapsLastTwoAxes(transpose) {
                    operands[i] = transpose.inputs[0]
                    flags[i] = true
                }
            }
            var replaced = [index], shapeReaders: [Int] = []
            var output = matmul.outputs[0]
            var bias = "", residual = ""
            func reader(_ opType: String) -> (index: Int, node: Node, shapeReaders: [Int])? {
                r.patternReader(of: output, opType, besideShapes: gradientGraph)
            }
            // The Adds after the product: first a bias, then a residual (either may be absent).
            while residual.isEmpty, let reader = reader(OpType.add), reader.node.inputs.count == 2 {
                let add = reader.node
                let other = add.inputs[0] == output ? add.inputs[1] : add.inputs[0]
                if bias.isEmpty, r.context.types[other]?.dataType == .float, let s = r.knownShape(other),
                   s.reduce(1, *) == n, s.last == n, s.count <= shape.count {
                    bias = other
                } else if let s = r.shape(other), s == shape, r.context.types[other]?.dataType == .float {
                    residual = other
                } else {
                    break
                }
                replaced.append(reader.index)
                shapeReaders += reader.shapeReaders
                output = add.outputs[0]
            }
            var attributes: [String: Attribute] = ["transA": .int(flags[0] ? 1 : 0), "transB": .int(flags[1] ? 1 : 0)]
            if let relu = reader(OpType.relu) {
                attributes["activation"] = .string(OpType.relu)
                replaced.append(relu.index)
                shapeReaders += relu.shapeReaders
                output = relu.node.outputs[0]
            }
            // A Transpose of the result's last two axes: the GEMM writes Bᵀ·Aᵀ instead (a residual would
            // have to be read transposed too, so not then).
            if !gradientGraph, residual.isEmpty, let transpose = r.soleReader(of: output, OpType.transpose), swapsLastTwoAxes(transpose.node) {
                attributes["transposeOutput"] = .int(1)
                replaced.append(transpose.index)
                output = transpose.node.outputs[0]
            }
            guard replaced.count > 1 || flags.contains(true) else { return }   // a plain MatMul stays a MatMul
            replaced.forEach(r.replace)
            r.rewireShapeReaders(shapeReaders, to: output)
            var inputs = operands + [bias, residual]   // optional inputs: "" when absent, trailing ones dropped
            while inputs.last == "" { inputs.removeLast() }
            r.add(OpType.fusedMatMul, domain: fusedDomain, inputs, attributes: attributes, writing: output)
        }
    }

    /// Whether `transpose` exchanges the last two axes and keeps the others in place.
    private static func swapsLastTwoAxes(_ transpose: Node) -> Bool {
        guard let perm = try? transpose.ints("perm"), perm.count >= 2 else { return false }
        let r = perm.count
        return perm == Array(0..<(r - 2)) + [r - 1, r - 2]
    }
}
