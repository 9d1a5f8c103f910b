import GraphIR

/// Gather: picks slices of `data` along `axis` by (possibly negative) indices of any rank.
extension OpRegistry {
    // Gather and GatherGrad below share the schema pattern (attributes parsed once, inputs fetched per run,
    // the kernel in Kernels/GatherKernels.swift); their rules differ.
    static let gatherSchema = OpSchema("Gather", opsets: movementOpsets(since: 1), inputs: 2...2, inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let data = t.shape, let idx = ctx.type(1)?.shape else { return [TensorType(t.dataType, nil)] }
        let axis = try Axes.normalise(try ctx.node.int("axis", default: 0), rank: data.count, ctx.node.label)
        return [TensorType(t.dataType, Array(data[..<axis]) + idx + Array(data[(axis + 1)...]))]
    }, makeKernel: { node, _ in
        let axisAttr = try node.int("axis", default: 0)
        let label = node.label
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            let indices = try inputs.required(1, "indices")
            return [try GatherKernels.gather(x, indices: indices, axis: axisAttr, label: label, context: context)]
        }
    }).withGradient(gatherGradient)
        .withSymbolicValue { ctx in
            // Picking entries of a shape vector, e.g. Shape(x)[2] → height.
            guard let data = ctx.symbols(0), let idx = ctx.symbols(1), try ctx.node.int("axis", default: 0) == 0 else { return nil }
            var out: [Dim] = []
            for i in idx {
                guard let k = i.value, k >= -data.count, k < data.count else { return nil }
                out.append(data[k < 0 ? k + data.count : k])
            }
            return out
        }
}

// MARK: - Gradient

extension OpRegistry {
    /// Gather: dData = GatherGrad(dY, indices, Shape(data)), a scatter-add; indices get none.
    static let gatherGradient: GradientRule = { ctx in
        guard ctx.needs(0) else { return [nil, nil] }
        return [ctx.builder.add1("GatherGrad", domain: trainingDomain,
                                 [try ctx.gradient(), ctx.input(1), ctx.shape(of: ctx.input(0))],
                                 attributes: ["axis": .int(try ctx.node.int("axis", default: 0))]), nil]
    }

    /// GatherGrad(dY, indices, Shape(data); axis): zeros of data's shape with every gathered slab of dY
    /// added back at its (possibly negative, possibly repeated) index, repeats summed.
    // The schema pattern of Gather's above, for the backward kernel.
    static let gatherGradSchema = OpSchema("GatherGrad", domain: trainingDomain, inputs: 3...3, shapeInputs: [2], inferTypes: { ctx in
        guard let g = ctx.type(0), let s = ctx.constant(2) else { return [nil] }
        return [TensorType(g.dataType, known: try s.integers())]
    }, makeKernel: { node, _ in
        let axisAttr = try node.int("axis", default: 0)
        let label = node.label
        return ClosureKernel { inputs, context in
            let dy = try inputs.required(0)
            let indices = try inputs.required(1, "indices")
            let shape = try inputs.required(2, "shape").integers()
            return [try GatherKernels.backward(dy, indices: indices, shape: shape, axis: axisAttr, label: label,
                                               context: context)]
        }
    })
}
