import Foundation
import GraphIR

// Reduce* and ArgMax / ArgMin.
// Axes are an attribute before opset 13 (ReduceSum) / 18 (the others) and an optional input after;
// with the input form, `noop_with_empty_axes` = 1 turns an empty axes list into identity.
// Reductions are computed on a [outer, r, inner] view of the input (reduced axes contiguous after
// dropping size-1 dims); any other axes set is first transposed into [kept…, reduced…].
// Floating sums accumulate in Double.

extension OpRegistry {
    static let reductionOps: [OpSchema] = [
        reduceSchema(OpType.reduceSum, .sum, axesInputSince: 13).withGradient(reduceGradient(.sum, axesInputSince: 13)),
        reduceSchema("ReduceMean", .mean, axesInputSince: 18).withGradient(reduceGradient(.mean, axesInputSince: 18)),
        reduceSchema("ReduceMax", .max, axesInputSince: 18).withGradient(reduceGradient(.max, axesInputSince: 18)),
        reduceSchema("ReduceMin", .min, axesInputSince: 18).withGradient(reduceGradient(.min, axesInputSince: 18)),
        reduceSchema("ReduceProd", .prod, axesInputSince: 18),
        reduceSchema("ReduceL1", .l1, axesInputSince: 18).withGradient(reduceGradient(.l1, axesInputSince: 18)),
        reduceSchema("ReduceL2", .l2, axesInputSince: 18).withGradient(reduceGradient(.l2, axesInputSince: 18)),
        reduceSchema("ReduceLogSum", .logSum, axesInputSince: 18).withGradient(reduceGradient(.logSum, axesInputSince: 18)),
        reduceSchema("ReduceLogSumExp", .logSumExp, axesInputSince: 18).withGradient(reduceGradient(.logSumExp, axesInputSince: 18)),
        reduceSchema("ReduceSumSquare", .sumSquare, axesInputSince: 18).withGradient(reduceGradient(.sumSquare, axesInputSince: 18)),
        argSchema("ArgMax", isMax: true),
        argSchema("ArgMin", isMax: false),
    ]

    private static func reduceSchema(_ op: String, _ kind: ReduceKind, axesInputSince: Int) -> OpSchema {
        OpSchema(op, opsets: 1...28, inputs: 1...2, shapeInputs: [1],
                 inferTypes: { ctx in
                     guard let t = ctx.type(0) else { return [nil] }
                     let p = try ReduceParams(ctx.node, ctx.opset, axesInputSince: axesInputSince)
                     guard let shape = t.shape else { return [TensorType(t.dataType, nil)] }
                     // The axes as the kernel reads them: absent means none given.
                     var axes: [Int]? = p.attributeAxes ?? []
                     if p.axesFromInput {
                         if ctx.node.input(1) == nil { axes = [] }
                         else if let c = ctx.constant(1) { axes = try c.integers() } else { axes = nil }
                     }
                     guard let axes else {
                         return [TensorType(t.dataType, nil)]   // axes computed at run time
                     }
                     if axes.isEmpty && p.noopWithEmptyAxes { return [t] }
                     // No axes (and no noop_with_empty_axes): every axis is reduced, as in the kernel.
                     let set = try Axes.set(axes.isEmpty ? Array(0..<shape.count) : axes, rank: shape.count, ctx.node.label)
                     var out: [Dim] = []
                     for (i, d) in shape.enumerated() {
                         if set.contains(i) { if p.keepdims { out.append(.known(1)) } } else { out.append(d) }
                     }
                     return [TensorType(t.dataType, out)]
                 },
                 makeKernel: { node, opset in
                     let p = try ReduceParams(node, opset, axesInputSince: axesInputSince)
                     if !p.axesFromInput && node.input(1) != nil {
                         throw SegFormerError.invalid("\(node.label): axes is an attribute at opset \(opset), not an input")
                     }
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         let x = try inputs.required(0)
                         var axes: [Int]
                         if p.axesFromInput {
                             axes = try inputs.optional(1)?.integers() ?? []
                         } else {
                             axes = p.attributeAxes ?? []
                         }
                         if axes.isEmpty && p.noopWithEmptyAxes { return [x] }
                         if axes.isEmpty { axes = Array(0..<x.rank) }
                         let set = try Axes.set(axes, rank: x.rank, label)
                         return [try Reducer.reduce(x, kind, axes: set, keepdims: p.keepdims, label: label, context: context)]
                     }
                 })
    }

    private static func argSchema(_ op: String, isMax: Bool) -> OpSchema {
        OpSchema(op, opsets: 1...28, inputs: 1...1,
                 inferTypes: { ctx in
                     guard let t = ctx.type(0), let shape = t.shape else { return [TensorType(.int64, nil)] }
                     let axis = try Axes.normalise(try ctx.node.int("axis", default: 0), rank: shape.count, scalarAsVector: true, ctx.node.label)
                     let keep = try ctx.node.int("keepdims", default: 1) != 0
                     var out = shape
                     if keep { out[axis] = .known(1) } else { out.remove(at: axis) }
                     return [TensorType(.int64, out)]
                 },
                 makeKernel: { node, opset in
                     let axisAttr = try node.int("axis", default: 0)
                     let keep = try node.int("keepdims", default: 1) != 0
                     let last = try node.int("select_last_index", default: 0) != 0
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         let x = try inputs.required(0)
                         return [try Reducer.arg(x, isMax: isMax, axis: axisAttr, keepdims: keep, selectLast: last,
                                                 label: label, context: context)]
                     }
                 })
    }
}

// MARK: - Gradients

// ReduceGrad (training domain): (dY, shape of X, axes?, X?, Y?) → dX. dY is broadcast back over the
// reduced axes (keepdims or not: the memory layout is the same) and multiplied by the local
// derivative of the reduction. Attributes: kind, keepdims, noop_with_empty_axes, axes (attribute
// form), axes_from_input. Max/Min split the gradient evenly among ties (as PyTorch's amax/amin);
// L2 gives 0 where the norm is 0 (as PyTorch).

extension OpRegistry {
    static let reductionGradOps: [OpSchema] = [
        OpSchema("ReduceGrad", domain: trainingDomain, inputs: 2...5, shapeInputs: [1],
                 inferTypes: gradientTypeAtShapeInput,
                 makeKernel: { node, _ in
                     let kindName = try node.string("kind", default: "sum")
                     guard let kind = ReduceGradient.kinds[kindName] else {
                         throw SegFormerError.unsupported("\(node.label): reduction kind '\(kindName)'")
                     }
                     let fromInput = try node.int("axes_from_input", default: 0) != 0
                     let noop = try node.int("noop_with_empty_axes", default: 0) != 0
                     let attrAxes = try node.ints("axes") ?? []
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         let dy = try inputs.required(0)
                         let shape = try inputs.required(1).integers()
                         var axes = fromInput ? (try inputs.optional(2)?.integers() ?? []) : attrAxes
                         // noop_with_empty_axes: the forward was the identity, whatever the kind
                         let identity = axes.isEmpty && noop
                         if axes.isEmpty && !noop { axes = Array(0..<shape.count) }
                         let set = try Axes.set(axes, rank: shape.count, label)
                         return [try ReduceGradient.run(dy, shape: shape, axes: set, kind: identity ? .sum : kind, x: inputs.optional(3),
                                                        y: inputs.optional(4), label: label, context: context)]
                     }
                 }),
    ]

    static func reduceGradient(_ kind: ReduceKind, axesInputSince: Int) -> GradientRule {
        return { ctx in
            guard let name = ReduceGradient.kinds.first(where: { $0.value == kind })?.key else {
                throw SegFormerError.unsupported("autodiff: \(ctx.node.label): no gradient for \(ctx.node.opType)")
            }
            let fromInput = ctx.opset >= axesInputSince
            var attrs: [String: Attribute] = [
                "kind": .string(name), "axes_from_input": .int(fromInput ? 1 : 0),
                "noop_with_empty_axes": .int(fromInput ? try ctx.node.int("noop_with_empty_axes", default: 0) : 0),
            ]
            if !fromInput, let a = try ctx.node.ints("axes") { attrs["axes"] = .ints(a) }
            let axesInput = fromInput && ctx.node.inputs.count > 1 ? ctx.input(1) : ""
            let needsX: Set<ReduceKind> = [.sumSquare, .l2, .l1, .max, .min, .logSumExp]
            let needsY: Set<ReduceKind> = [.l2, .max, .min, .logSumExp, .logSum]
            let ins = [try ctx.gradient(), ctx.shape(of: ctx.input(0)), axesInput,
                       needsX.contains(kind) ? ctx.input(0) : "", needsY.contains(kind) ? ctx.output(0) : ""]
            var trimmed = ins
            while let last = trimmed.last, last.isEmpty { trimmed.removeLast() }
            return [ctx.builder.add1("ReduceGrad", domain: trainingDomain, trimmed, attributes: attrs), nil]
        }
    }
}
