import GraphIR

// GlobalAveragePool, GlobalMaxPool, AveragePool, MaxPool over any number of spatial dims.
// Every (image, channel) plane is independent: the kernels run parallel over planes. Windows share
// the pads/auto_pad/strides/dilations geometry with Conv (`WindowGeometry`), plus ceil_mode.
// Averages accumulate in Double; float16/bfloat16 are computed in float32.

extension OpRegistry {
    static let poolingOps: [OpSchema] = [
        OpSchema("GlobalAveragePool", opsets: 1...23, inputs: 1...1,
                 inferTypes: { try Pooling.inferGlobal($0) },
                 makeKernel: { node, _ in Pooling.globalKernel(node, average: true) })
            .withGradient { ctx in
                [ctx.builder.add1("PoolGrad", domain: trainingDomain, [try ctx.gradient(), ctx.shape(of: ctx.input(0))],
                                  attributes: ["mode": .string("global_average")], name: "GlobalAveragePoolGrad")]
            },
        OpSchema("GlobalMaxPool", opsets: 1...23, inputs: 1...1,
                 inferTypes: { try Pooling.inferGlobal($0) },
                 makeKernel: { node, _ in Pooling.globalKernel(node, average: false) })
            .withGradient { ctx in
                [ctx.builder.add1("PoolGrad", domain: trainingDomain, [try ctx.gradient(), ctx.input(0)],
                                  attributes: ["mode": .string("global_max")], name: "GlobalMaxPoolGrad")]
            },
        OpSchema("AveragePool", opsets: 1...23, inputs: 1...1,
                 inferTypes: { try Pooling.inferPool($0) },
                 makeKernel: { node, _ in try Pooling.poolKernel(node, average: true) })
            .withGradient { ctx in
                var attrs = ctx.node.attributes
                attrs["mode"] = .string("average")
                return [ctx.builder.add1("PoolGrad", domain: trainingDomain, [try ctx.gradient(), ctx.shape(of: ctx.input(0))],
                                         attributes: attrs, name: "AveragePoolGrad")]
            },
        OpSchema("MaxPool", opsets: 1...23, inputs: 1...1, outputs: 1...2,
                 inferTypes: { try Pooling.inferPool($0) },
                 makeKernel: { node, _ in try Pooling.poolKernel(node, average: false) })
            .withGradient { ctx in
                // Only the values are differentiable (the indices output is integer).
                var attrs = ctx.node.attributes
                attrs["mode"] = .string("max")
                return [ctx.builder.add1("PoolGrad", domain: trainingDomain, [try ctx.gradient(0), ctx.input(0)],
                                         attributes: attrs, name: "MaxPoolGrad")]
            },
        // PoolGrad(dY, X or shape(X)): the pools' backward; `mode` names the forward pool
        // (global_average and average take shape(X), global_max and max take X to find the maxima).
        OpSchema("PoolGrad", domain: trainingDomain, inputs: 2...2,
                 inferTypes: { ctx in
                     guard let t = ctx.type(0) else { return [nil] }
                     if let shape = ctx.constant(1), ctx.type(1)?.dataType == .int64, let dims = try? shape.integers() {
                         return [TensorType(t.dataType, known: dims)]
                     }
                     if ctx.type(1)?.dataType != .int64, let s = ctx.type(1)?.shape { return [TensorType(t.dataType, s)] }
                     return [TensorType(t.dataType, nil)]
                 },
                 makeKernel: { node, _ in try Pooling.poolGradKernel(node) }),
    ]
}

extension Pooling {
    static func inferGlobal(_ ctx: TypeInferenceContext) throws -> [TensorType?] {
        guard let t = ctx.type(0) else { return [nil] }
        guard let s = t.shape else { return [TensorType(t.dataType, nil)] }
        guard s.count >= 3 else { throw SegFormerError.invalid("\(ctx.node.label): input must have rank ≥ 3, got \(t)") }
        return [TensorType(t.dataType, Array(s.prefix(2)) + [Dim](repeating: .known(1), count: s.count - 2))]
    }

    static func inferPool(_ ctx: TypeInferenceContext) throws -> [TensorType?] {
        let label = ctx.node.label
        let indices = ctx.node.outputs.count > 1
        guard let t = ctx.type(0) else { return indices ? [nil, nil] : [nil] }
        guard let s = t.shape else {
            return [TensorType(t.dataType, nil)] + (indices ? [TensorType(.int64, nil)] : [])
        }
        guard s.count >= 3 else { throw SegFormerError.invalid("\(label): input must have rank ≥ 3, got \(t)") }
        let attrs = try WindowAttributes(ctx.node)
        guard let k = attrs.kernelShape else { throw SegFormerError.invalid("\(label): missing attribute kernel_shape") }
        let ceil = try ctx.node.int("ceil_mode", default: 0) != 0
        let out = Array(s.prefix(2)) + (try WindowGeometry.symbolicOutput(input: Array(s.dropFirst(2)), kernel: k,
                                                                          attributes: attrs, ceilMode: ceil, label))
        return [TensorType(t.dataType, out)] + (indices ? [TensorType(.int64, out)] : [])
    }
}
