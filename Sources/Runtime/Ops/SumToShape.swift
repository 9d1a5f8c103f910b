import GraphIR

// SumToShape (training domain): the gradient of broadcasting. Sums a gradient over the axes that
// broadcasting expanded so it takes the shape of the forward input again:
//   SumToShape(grad: [B, N, C], shape: [C]) = ReduceSum over axes 0, 1.
// The target comes as a shape tensor (from Shape(x)), which the planner folds once shapes are
// bound, so the forward value x need not stay alive for it.

extension OpRegistry {
    static let sumToShapeOps: [OpSchema] = [
        OpSchema(OpType.sumToShape, domain: trainingDomain, inputs: 2...2, shapeInputs: [1],
                 inferTypes: { ctx in
                     guard let g = ctx.type(0), let shape = ctx.constant(1) else { return [nil] }
                     return [TensorType(g.dataType, known: try shape.integers())]
                 },
                 makeKernel: { node, _ in
                     ClosureKernel { inputs, context in
                         let grad = try inputs.required(0)
                         let target = try inputs.required(1).integers()
                         return [try sumToShape(grad, target, context, label: node.label)]
                     }
                 }),
    ]
}

/// Sums `grad` down to `target`, which must be broadcastable to grad's shape.
public func sumToShape(_ grad: Tensor, _ target: [Int], _ context: ExecutionContext, label: String = OpType.sumToShape) throws -> Tensor {
    let g = grad.shape
    guard target.count <= g.count else {
        throw SegFormerError.invalid("\(label): cannot sum shape \(g) down to \(target) (higher rank)")
    }
    let lead = g.count - target.count
    var axes = Array(0..<lead)
    for (i, t) in target.enumerated() {
        let d = g[lead + i]
        if t == d { continue }
        guard t == 1 else {
            throw SegFormerError.invalid("\(label): shape \(target) does not broadcast to \(g)")
        }
        axes.append(lead + i)
    }
    if axes.isEmpty { return grad.reshaped(target) }
    let axesTensor = Tensor(axes.map { Int64($0) }, shape: [axes.count])
    let summed = try SingleOp.run(OpType.reduceSum, inputs: [grad, axesTensor], attributes: ["keepdims": .int(1)],
                                  opset: 13, context: context)[0]
    return summed.reshaped(target)
}
