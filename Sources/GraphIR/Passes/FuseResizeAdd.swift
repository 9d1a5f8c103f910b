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
    /// Inference graphs only: ResizeAdd has no gradient rule.
    public static let fuseResizeAdd = overNodes("fuse-resize-add", of: OpType.resize) { index, resize, r in
        guard r.context.opset >= 11, let type = r.context.types[resize.outputs[0]], type.dataType == .float,
              let shape = type.shape, let add = r.soleReader(of: resize.outputs[0], OpType.add),
              add.node.inputs.count == 2 else { return }
        let addend = add.node.inputs[0] == resize.outputs[0] ? add.node.inputs[1] : add.node.inputs[0]
        guard r.shape(addend) == shape, r.context.types[addend]?.dataType == .float else { return }
        var output = add.node.outputs[0]
        var attributes = resize.attributes
        var replaced = [index, add.index]
        // A per-channel constant added next (a folded BatchNorm's shift): [C, 1, 1] or [1, C, 1, 1] over NCHW.
        var bias = ""
        if let next = r.soleReader(of: output, OpType.add), next.node.inputs.count == 2 {
            let other = next.node.inputs[0] == output ? next.node.inputs[1] : next.node.inputs[0]
            if r.isChannelBias(other, of: shape) {
                bias = other
                replaced.append(next.index)
                output = next.node.outputs[0]
            }
        }
        if let relu = r.soleReader(of: output, OpType.relu) {
            attributes["activation"] = .string(OpType.relu)
            replaced.append(relu.index)
            output = relu.node.outputs[0]
        }
        replaced.forEach(r.replace)
        var inputs = resize.inputs
        while inputs.count < 4 { inputs.append("") }
        r.add(OpType.resizeAdd, domain: fusedDomain, inputs + [addend] + (bias.isEmpty ? [] : [bias]),
              attributes: attributes, writing: output)
    }
}
