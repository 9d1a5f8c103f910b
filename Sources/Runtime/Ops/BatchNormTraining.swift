import Foundation
import GraphIR

// BatchNormalization on batch statistics, as PyTorch trains BatchNorm2d (which nodes are in training
// mode: `BatchNormMode` in GraphIR):
// - BatchNormTraining (training domain): the op a training session runs in their place. Same inputs,
//   attributes and outputs, but running_var moves towards the batch variance with Bessel's correction
//   (PyTorch's rule: ×M/(M−1) for M values per channel) where ONNX's text uses the biased one.
//   PyTorch made the export, so its rule is the truth when training; plain ONNX runs keep ONNX's rule.
// - BatchNormTrainingGrad (training domain): (dY, X, scale) → (dX, dScale, dB), the batch statistics
//   recomputed from X exactly as the forward computes them. With x̂ = (x − μ)·σ⁻¹ over M values:
//     dB = Σ dY,  dScale = Σ dY·x̂,  dX = scale·σ⁻¹ · (dY − dB/M − x̂ · dScale/M).
// Both follow `ExecutionContext.crossProcessSum` when a data-parallel job sets it (--sync-batchnorm): the
// statistics, M and the two sums in dX are then the global batch's, as PyTorch's SyncBatchNorm computes them.

extension OpRegistry {
    static let batchNormTrainingOps: [OpSchema] = [
        OpSchema("BatchNormTraining", domain: trainingDomain, inputs: 5...5, outputs: 1...5,
                 inferTypes: { ctx in
                     guard let t = ctx.type(0) else { return [TensorType?](repeating: nil, count: ctx.node.outputs.count) }
                     let c: Dim? = (t.shape?.count ?? 0) >= 2 ? t.shape![1] : nil
                     return [t] + [TensorType?](repeating: TensorType(t.dataType, c.map { [$0] }), count: ctx.node.outputs.count - 1)
                 },
                 makeKernel: { node, _ in
                     let eps = Double(try node.float("epsilon", default: 1e-5))
                     let momentum = Double(try node.float("momentum", default: 0.9))
                     let label = node.label, outCount = node.outputs.count
                     return ClosureKernel { inputs, context in
                         try Normalization.batchNorm(inputs, epsilon: eps, momentum: momentum, training: true, outputs: outCount,
                                                     unbiasedRunningVariance: true, statisticsAcross: context.crossProcessSum,
                                                     label: label, context: context)
                     }
                 }).withGradient(batchNormTrainingGradient),
        // Declared like BatchNormInferenceGrad (Normalization.swift): the same outputs, another kernel.
        OpSchema("BatchNormTrainingGrad", domain: trainingDomain, inputs: 3...3, outputs: 1...3,
                 inferTypes: { ctx in [ctx.type(1), ctx.type(2), ctx.type(2)] },
                 makeKernel: { node, _ in
                     let eps = Double(try node.float("epsilon", default: 1e-5))
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         try Normalization.batchNormTrainingGrad(try inputs.required(0), try inputs.required(1),
                                                                 try inputs.required(2), epsilon: eps, label: label,
                                                                 across: context.crossProcessSum, context: context)
                     }
                 }),
    ]

    /// The rule of BatchNormalization in training mode and of BatchNormTraining. The running
    /// statistics are state, not functions the loss differentiates: no gradient flows through them.
    static let batchNormTrainingGradient: GradientRule = { ctx in
        if ctx.outputGradients.dropFirst().contains(where: { $0 != nil }) {
            throw SegFormerError.unsupported("\(ctx.node.label): gradient through BatchNormalization's running-statistics outputs")
        }
        let attrs: [String: Attribute] = ["epsilon": .float(try ctx.node.float("epsilon", default: 1e-5))]
        let outs = ctx.builder.add("BatchNormTrainingGrad", domain: trainingDomain,
                                   [try ctx.gradient(), ctx.input(0), ctx.input(1)], attributes: attrs, outputs: 3)
        return [ctx.needs(0) ? outs[0] : nil, ctx.needs(1) ? outs[1] : nil, ctx.needs(2) ? outs[2] : nil, nil, nil]
    }
}
