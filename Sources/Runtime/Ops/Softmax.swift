import Foundation
import GraphIR
import CKernels

// Softmax and LogSoftmax.
// Opset ≥ 13: normalise along one axis (default −1); the tensor is seen as [outer, n, inner].
// Opset ≤ 12: the input is coerced to 2-D at `axis` (default 1): [prod(dims < axis), prod(dims ≥ axis)].
// Numerically stable: subtract the maximum of each slice before exp.

extension OpRegistry {
    static let softmaxOps: [OpSchema] = [
        softmaxSchema(OpType.softmax, log: false).withGradient(softmaxGradient(false)),
        softmaxSchema("LogSoftmax", log: true).withGradient(softmaxGradient(true)),
    ]

    private static func softmaxSchema(_ op: String, log: Bool) -> OpSchema {
        OpSchema(op, opsets: 1...23, inputs: 1...1,
                 inferTypes: { ctx in [ctx.type(0)] },
                 makeKernel: { node, opset in
                     let axisAttr = try node.int("axis", default: opset >= 13 ? -1 : 1)
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         let x = try inputs.required(0)
                         return [try SoftmaxKernels.run(x, axis: axisAttr, coerce2D: opset < 13, log: log,
                                                        label: label, context: context)]
                     }
                 })
    }
}

// MARK: - Gradients

// Softmax:    dX = Y ⊙ (dY − Σ dY⊙Y)        (sums along the softmax axis)
// LogSoftmax: dX = dY − exp(Y) ⊙ Σ dY
// Both kernels take the forward output Y, so X need not stay alive. They carry the forward's
// axis and coerce_2d (opset ≤ 12 semantics) as attributes.

extension OpRegistry {
    static let softmaxGradOps: [OpSchema] = [
        softmaxGradSchema("SoftmaxGrad", log: false),
        softmaxGradSchema("LogSoftmaxGrad", log: true),
    ]

    static func softmaxGradient(_ log: Bool) -> GradientRule {
        return { ctx in
            let axis = try ctx.node.int("axis", default: ctx.opset >= 13 ? -1 : 1)
            let g = ctx.builder.add1(log ? "LogSoftmaxGrad" : "SoftmaxGrad", domain: trainingDomain,
                                     [try ctx.gradient(), ctx.output(0)],
                                     attributes: ["axis": .int(axis), "coerce_2d": .int(ctx.opset < 13 ? 1 : 0)])
            return [g]
        }
    }

    private static func softmaxGradSchema(_ op: String, log: Bool) -> OpSchema {
        OpSchema(op, domain: trainingDomain, inputs: 2...2,
                 inferTypes: { ctx in [ctx.type(1) ?? ctx.type(0)] },
                 makeKernel: { node, _ in
                     let axis = try node.int("axis", default: -1)
                     let coerce = try node.int("coerce_2d", default: 0) != 0
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         [try SoftmaxKernels.backward(try inputs.required(0), try inputs.required(1), axis: axis,
                                                      coerce2D: coerce, log: log, label: label, context: context)]
                     }
                 })
    }
}
