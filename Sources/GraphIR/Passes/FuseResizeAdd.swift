extension GraphPass {
    /// A float32 Resize whose output feeds only an Add with a value of the same shape (then, optionally,
    /// an Add of a constant per-channel bias and a Relu, each the sole reader of what precedes it)
    /// becomes one `ResizeAdd` (in `fusedDomain`), whose kernel finishes each interpolated row while the
    /// row is in cache:
    ///
    ///     Relu((Resize(x, roi, scales, sizes) + y) + b) = ResizeAdd(x, roi, scales, sizes, y, b; activation = Relu)
    ///
    /// Why it is the same function: the kernel rounds each interpolated value to float as Resize does,
    /// then performs the Adds' float additions in their order (each commutative in IEEE arithmetic, so operand order does not
    /// matter) and the Relu. SegFormer's decode head, after the decode-head passes, sums four resized
    /// 256-channel maps at 1/4 resolution this way; each Add was a full pass over three such maps.
    /// Matched only: Resize at opset ≥ 11 (inputs roi, scales, sizes), a float32 output whose inferred
    /// shape equals the addend's, each intermediate read by the next op of the pattern alone.
    /// ResizeAdd has no gradient rule: in training it runs over the gradient graph, after autodiff
    /// (`fuseResizeAddInGradientGraph`).
    public static let fuseResizeAdd = resizeAdd("fuse-resize-add", gradientGraph: false)

    /// The same fusion for the forward part of a gradient graph (the decode head's sum of resized maps,
    /// with the same bits): the backward reads the shapes of the Resize's and the Adds' outputs (an
    /// Add's gradient is summed to its operands' shapes); those Shape nodes read the fused output
    /// instead, which has the same shape.
    public static let fuseResizeAddInGradientGraph = resizeAdd("fuse-resize-add-in-gradient-graph", gradientGraph: true)

    private static func resizeAdd(_ name: String, gradientGraph: Bool) -> GraphPass {
        overNodes(name, of: OpType.resize) { index, resize, r in
            guard r.context.opset >= 11, let type = r.context.types[resize.outputs[0]], type.dataType == .float,
                  let shape = type.shape,
                  let add = r.patternReader(of: resize.outputs[0], OpType.add, besideShapes: gradientGraph),
                  add.node.inputs.count == 2 else { return }
            let addend = add.node.inputs[0] == resize.outputs[0] ? add.node.inputs[1] : add.node.inputs[0]
            guard r.shape(addend) == shape, r.context.types[addend]?.dataType == .float else { return }
            var output = add.node.outputs[0]
            var attributes = resize.attributes
            var replaced = [index, add.index], shapeReaders = add.shapeReaders
            // A per-channel constant added next (a folded BatchNorm's shift): [C, 1, 1] or [1, C, 1, 1] over NCHW.
            var bias = ""
            if let next = r.patternReader(of: output, OpType.add, besideShapes: gradientGraph), next.node.inputs.count == 2 {
                let other = next.node.inputs[0] == output ? next.node.inputs[1] : next.node.inputs[0]
                if r.isChannelBias(other, of: shape) {
                    bias = other
                    replaced.append(next.index)
                    shapeReaders += next.shapeReaders
                    output = next.node.outputs[0]
                }
            }
            if let relu = r.patternReader(of: output, OpType.relu, besideShapes: gradientGraph) {
                attributes["activation"] = .string(OpType.relu)
                replaced.append(relu.index)
                shapeReaders += relu.shapeReaders
                output = relu.node.outputs[0]
            }
            replaced.forEach(r.replace)
            r.rewireShapeReaders(shapeReaders, to: output)
            var inputs = resize.inputs
            while inputs.count < 4 { inputs.append("") }
            r.add(OpType.resizeAdd, domain: fusedDomain, inputs + [addend] + (bias.isEmpty ? [] : [bias]),
                  attributes: attributes, writing: output)
        }
    }
}
