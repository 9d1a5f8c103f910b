import Foundation
import GraphIR

// SoftmaxCrossEntropyLoss (opset 12+) and its gradient kernel (training domain).
// scores [N, C, D1…] (class axis 1), labels [N, D1…] int32/int64, optional weights [C].
//   loss[n, d] = −w[label] · log_softmax(scores)[n, label, d], 0 where label == ignore_index.
//   reduction mean: Σ loss / Σ w[label] over kept positions (no weights: w = 1), so an all-ignored
//   batch gives 0/0 = NaN, as PyTorch and the ONNX reference; sum: Σ loss; none: loss per position.
// The kernels never materialise the log-probabilities unless the optional second output asks for
// them: per (n, block of positions) they take the max and Σ exp over classes, then gather the label.
// Sums accumulate in Double.

extension OpRegistry {
    static let crossEntropyOps: [OpSchema] = [
        OpSchema(OpType.softmaxCrossEntropyLoss, opsets: 12...28, inputs: 2...3, outputs: 1...2,
                 inferTypes: { ctx in
                     guard let s = ctx.type(0) else { return [nil, nil] }
                     let p = try CrossEntropy.Params(ctx.node)
                     let loss: TensorType
                     if p.reduction == .none { loss = TensorType(s.dataType, ctx.type(1)?.shape) }
                     else { loss = TensorType(s.dataType, []) }
                     return [loss, s]
                 },
                 makeKernel: { node, _ in
                     let p = try CrossEntropy.Params(node)
                     let label = node.label
                     let wantLogProb = node.outputs.count > 1 && !node.outputs[1].isEmpty
                     return ClosureKernel { inputs, context in
                         try CrossEntropy.forward(try inputs.required(0), try inputs.required(1, "labels"), inputs.optional(2),
                                                  p, logProb: wantLogProb, label: label, context: context)
                     }
                 })
            .withGradient { ctx in
                guard ctx.needs(0) else { return [nil, nil, nil] }
                var parts: [String] = []
                if let g = ctx.outputGradients.first ?? nil {
                    var ins = [g, ctx.input(0), ctx.input(1)]
                    if ctx.node.inputs.count > 2 && !ctx.input(2).isEmpty { ins.append(ctx.input(2)) }
                    parts.append(ctx.builder.add1("SoftmaxCrossEntropyLossGrad", domain: trainingDomain, ins,
                                                  attributes: ctx.node.attributes))
                }
                if ctx.outputGradients.count > 1, let g = ctx.outputGradients[1] {
                    parts.append(ctx.builder.add1("LogSoftmaxGrad", domain: trainingDomain, [g, ctx.output(1)],
                                                  attributes: ["axis": .int(1), "coerce_2d": .int(0)]))
                }
                if parts.isEmpty { return [nil, nil, nil] }
                return [parts.count == 1 ? parts[0] : ctx.builder.add1(OpType.add, parts), nil, nil]
            },
        // (dLoss, scores, labels, weights?) → dScores; same attributes as the forward node.
        OpSchema("SoftmaxCrossEntropyLossGrad", domain: trainingDomain, inputs: 3...4,
                 inferTypes: { ctx in [ctx.type(1)] },
                 makeKernel: { node, _ in
                     let p = try CrossEntropy.Params(node)
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         [try CrossEntropy.backward(try inputs.required(0), try inputs.required(1), try inputs.required(2, "labels"),
                                                    inputs.optional(3), p, label: label, context: context)]
                     }
                 }),
    ]
}
