import Foundation
import GraphIR

// LayerNormalization (opset 17), BatchNormalization (inference; training forms in BatchNormTraining.swift),
// GroupNormalization (18: per-group scale/bias, 21: per-channel), InstanceNormalization, LRN.
// Statistics accumulate in Double; the normalised values are computed in the input's precision
// (float16 / bfloat16 via float32).

extension OpRegistry {
    static let normalizationOps: [OpSchema] = [
        OpSchema(OpType.layerNormalization, opsets: 17...28, inputs: 2...3, outputs: 1...3,
                 inferTypes: { ctx in
                     guard let t = ctx.type(0) else { return [nil, nil, nil] }
                     let stat = Normalization.statType(t.dataType)
                     guard let shape = t.shape else { return [t, TensorType(stat, nil), TensorType(stat, nil)] }
                     let axis = try Axes.normalise(try ctx.node.int("axis", default: -1), rank: shape.count, scalarAsVector: true, ctx.node.label)
                     let statShape = Array(shape[..<axis]) + [Dim](repeating: .known(1), count: shape.count - axis)
                     return [t, TensorType(stat, statShape), TensorType(stat, statShape)]
                 },
                 makeKernel: { node, _ in
                     let axisAttr = try node.int("axis", default: -1)
                     let eps = Double(try node.float("epsilon", default: 1e-5))
                     let stash = try node.int("stash_type", default: 1)
                     guard stash == 1 || stash == 11 else {
                         throw SegFormerError.unsupported("\(node.label): stash_type \(stash)")
                     }
                     let label = node.label, outCount = node.outputs.count
                     return ClosureKernel { inputs, context in
                         try Normalization.layerNorm(inputs, axis: axisAttr, epsilon: eps, outputs: outCount,
                                                     label: label, context: context)
                     }
                 }).withGradient(layerNormGradient),
        OpSchema("BatchNormalization", opsets: 1...28, inputs: 5...5, outputs: 1...5,
                 inferTypes: { ctx in
                     guard let t = ctx.type(0) else { return [nil] }
                     let c: Dim? = (t.shape?.count ?? 0) >= 2 ? t.shape![1] : nil
                     let stat = TensorType(t.dataType, c.map { [$0] })
                     return [t] + [TensorType?](repeating: stat, count: ctx.node.outputs.count - 1)
                 },
                 makeKernel: { node, opset in
                     let eps = Double(try node.float("epsilon", default: 1e-5))
                     let momentum = Double(try node.float("momentum", default: 0.9))
                     let training = try BatchNormMode.isTraining(node, opset: opset)
                     if opset < 9, try node.int("spatial", default: 1) == 0 {
                         throw SegFormerError.unsupported("\(node.label): spatial = 0")
                     }
                     if opset < 9 && node.outputs.count > 1 {
                         throw SegFormerError.unsupported("\(node.label): training-mode outputs at opset \(opset) (implemented from opset 9)")
                     }
                     if opset >= 14 && training && node.outputs.count > 3 {
                         throw SegFormerError.invalid("\(node.label): at most 3 outputs in training mode")
                     }
                     if !training && node.outputs.dropFirst().contains(where: { !$0.isEmpty }) {
                         throw SegFormerError.invalid("\(node.label): running-statistics outputs need training_mode=1")
                     }
                     let label = node.label, outCount = node.outputs.count
                     return ClosureKernel { inputs, context in
                         try Normalization.batchNorm(inputs, epsilon: eps, momentum: momentum, training: training,
                                                     outputs: outCount, label: label, context: context)
                     }
                 }).withGradient(batchNormGradient),
        OpSchema("GroupNormalization", opsets: 18...28, inputs: 3...3,
                 inferTypes: { ctx in [ctx.type(0)] },
                 makeKernel: { node, opset in
                     let eps = Double(try node.float("epsilon", default: 1e-5))
                     guard let groups = try node.int("num_groups"), groups > 0 else {
                         throw SegFormerError.invalid("\(node.label): num_groups must be a positive int")
                     }
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         [try Normalization.groupNorm(inputs, groups: groups, epsilon: eps, perChannel: opset >= 21,
                                                      label: label, context: context)]
                     }
                 }),
        // InstanceNormalization is GroupNormalization (opset 21 form) with one group per channel.
        OpSchema("InstanceNormalization", opsets: 1...28, inputs: 3...3,
                 inferTypes: { ctx in [ctx.type(0)] },
                 makeKernel: { node, _ in
                     let eps = Double(try node.float("epsilon", default: 1e-5))
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         let x = try inputs.required(0)
                         guard x.rank >= 2, x.shape[1] > 0 else {
                             throw SegFormerError.invalid("\(label): input of shape \(x.shape) needs rank ≥ 2 and at least one channel")
                         }
                         return [try Normalization.groupNorm(inputs, groups: x.shape[1], epsilon: eps, perChannel: true,
                                                             label: label, context: context)]
                     }
                 }),
        OpSchema("LRN", opsets: 1...28, inputs: 1...1,
                 inferTypes: { ctx in [ctx.type(0)] },
                 makeKernel: { node, _ in
                     guard let size = try node.int("size"), size > 0 else {
                         throw SegFormerError.invalid("\(node.label): LRN needs a positive attribute 'size'")
                     }
                     let alpha = Double(try node.float("alpha", default: 1e-4))
                     let beta = Double(try node.float("beta", default: 0.75))
                     let bias = Double(try node.float("bias", default: 1))
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         [try Normalization.lrn(try inputs.required(0), size: size, alpha: alpha, beta: beta, bias: bias,
                                                label: label, context: context)]
                     }
                 }),
        OpSchema("MeanVarianceNormalization", opsets: 9...28, inputs: 1...1,
                 inferTypes: { ctx in [ctx.type(0)] },
                 makeKernel: { node, _ in
                     let axes = try node.ints("axes") ?? [0, 2, 3]
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         [try Normalization.meanVarianceNorm(try inputs.required(0), axes: axes, label: label, context: context)]
                     }
                 }),
    ]
}

// MARK: - Gradients

// LayerNormGrad (training domain): (dY, X, Scale) → (dX, dScale, dB), statistics recomputed per row
// exactly as the forward computes them. With x̂ = (x − μ)·σ⁻¹ and g = dY·scale over one row of n:
//   dX = σ⁻¹ · (g − mean(g) − x̂ · mean(g·x̂)),  dScale = Σ_rows dY·x̂,  dB = Σ_rows dY.
// dScale / dB come out with the normalised shape; the rule sums them to Scale's / B's shape.
// BatchNormInferenceGrad: (dY, X, scale, mean, var) → (dX, dScale, dB) with mean/var constants.

extension OpRegistry {
    static let normalizationGradOps: [OpSchema] = [
        OpSchema("LayerNormGrad", domain: trainingDomain, inputs: 3...3, outputs: 1...3,
                 inferTypes: { ctx in [ctx.type(1), nil, nil] },
                 makeKernel: { node, _ in
                     let axis = try node.int("axis", default: -1)
                     let eps = Double(try node.float("epsilon", default: 1e-5))
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         try Normalization.layerNormGrad(try inputs.required(0), try inputs.required(1), try inputs.required(2),
                                                         axis: axis, epsilon: eps, label: label, context: context)
                     }
                 }),
        // Declared like BatchNormTrainingGrad (BatchNormTraining.swift): the same outputs, another kernel.
        OpSchema("BatchNormInferenceGrad", domain: trainingDomain, inputs: 5...5, outputs: 1...3,
                 inferTypes: { ctx in [ctx.type(1), ctx.type(2), ctx.type(2)] },
                 makeKernel: { node, _ in
                     let eps = Double(try node.float("epsilon", default: 1e-5))
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         try Normalization.batchNormGrad(inputs, epsilon: eps, label: label, context: context)
                     }
                 }),
    ]

    static let layerNormGradient: GradientRule = { ctx in
        if ctx.outputGradients.dropFirst().contains(where: { $0 != nil }) {
            throw SegFormerError.unsupported("\(ctx.node.label): gradient through LayerNormalization's Mean/InvStdDev outputs")
        }
        let attrs: [String: Attribute] = ["axis": .int(try ctx.node.int("axis", default: -1)),
                                          "epsilon": .float(try ctx.node.float("epsilon", default: 1e-5))]
        let outs = ctx.builder.add("LayerNormGrad", domain: trainingDomain, [try ctx.gradient(), ctx.input(0), ctx.input(1)],
                                   attributes: attrs, outputs: 3)
        let hasBias = ctx.node.inputs.count > 2 && !ctx.input(2).isEmpty
        return [ctx.needs(0) ? outs[0] : nil,
                ctx.needs(1) ? ctx.sumToShape(outs[1], like: ctx.input(1)) : nil,
                hasBias && ctx.needs(2) ? ctx.sumToShape(outs[2], like: ctx.input(2)) : nil]
    }

    static let batchNormGradient: GradientRule = { ctx in
        if try BatchNormMode.isTraining(ctx.node, opset: ctx.opset) { return try batchNormTrainingGradient(ctx) }
        let attrs: [String: Attribute] = ["epsilon": .float(try ctx.node.float("epsilon", default: 1e-5))]
        let outs = ctx.builder.add("BatchNormInferenceGrad", domain: trainingDomain,
                                   [try ctx.gradient(), ctx.input(0), ctx.input(1), ctx.input(3), ctx.input(4)],
                                   attributes: attrs, outputs: 3)
        return [ctx.needs(0) ? outs[0] : nil, ctx.needs(1) ? outs[1] : nil, ctx.needs(2) ? outs[2] : nil, nil, nil]
    }
}
