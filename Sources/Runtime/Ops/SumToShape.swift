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
