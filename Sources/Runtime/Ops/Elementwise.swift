import Foundation
import GraphIR


// MARK: - Shared symbolic type rules

/// Output type = input 0's element type, shape = broadcast of all inputs' shapes.
func inferBroadcast(resultType: DataType? = nil, typeFrom: Int = 0) -> (TypeInferenceContext) throws -> [TensorType?] {
    return { ctx in
        let types = (0..<ctx.node.inputs.count).compactMap { ctx.node.input($0) == nil ? nil : ctx.type($0) }
        guard types.count == ctx.node.inputs.filter({ !$0.isEmpty }).count, let first = ctx.type(typeFrom) else { return [nil] }
        let shape = try broadcastShapes(types.map { $0.shape })
        return [TensorType(resultType ?? first.dataType, shape)]
    }
}

/// Output type and shape equal to input 0's (optionally with another element type).
func inferSameShape(resultType: DataType? = nil) -> (TypeInferenceContext) throws -> [TensorType?] {
    return { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        return [TensorType(resultType ?? t.dataType, t.shape)]
    }
}

/// Schema of a training-domain gradient kernel over (dY, value[, value]) whose output has the
/// broadcast shape of its inputs; `make` parses the node's attributes once.
func gradientKernelSchema(_ name: String, inputs: ClosedRange<Int>,
                          _ make: @escaping (Node) throws -> ([Tensor], String, ExecutionContext) throws -> Tensor) -> OpSchema {
    OpSchema(name, domain: trainingDomain, inputs: inputs, inferTypes: inferBroadcast()) { node, _ in
        let label = node.label
        let body = try make(node)
        return ClosureKernel { inputs, ctx in
            let xs = try (0..<inputs.count).map { try inputs.required($0) }
            do { return [try body(xs, label, ctx)] } catch let e as SegFormerError where !e.description.contains(label) {
                throw e.prefixed(label)
            }
        }
    }
}

// MARK: - Gradient rule helpers

extension GradientContext {
    /// The element type of a forward value when the graph records it (graph input, initializer,
    /// value_info).
    func knownType(of value: String) -> DataType? {
        let g = builder.graph
        if let t = g.initializers[value] { return t.dataType }
        if let i = g.inputs.first(where: { $0.name == value }) { return i.type.dataType }
        if let t = g.valueInfo[value], t.dataType != .undefined { return t.dataType }
        return nil
    }

    /// `grad` summed to the shape of `like` when input `i` needs a gradient, else nil.
    func reduced(_ grad: @autoclosure () -> String, like i: Int) -> String? {
        needs(i) ? sumToShape(grad(), like: input(i)) : nil
    }
}
