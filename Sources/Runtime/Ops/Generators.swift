import Foundation
import GraphIR

/// Ops that make tensors from attributes or scalars: Constant, ConstantOfShape, Range.
extension OpRegistry {
    // MARK: Constant

    static let constantSchema = OpSchema("Constant", opsets: movementOpsets(since: 1), inputs: 0...0, inferTypes: { ctx in
        let t = try constantValue(ctx.node)
        return [TensorType(t.dataType, known: t.shape)]
    }, makeKernel: { node, _ in
        let t = try constantValue(node)
        return ClosureKernel { _, _ in [t] }
    }).notDifferentiable()

    /// The one value attribute of a Constant node as a tensor.
    static func constantValue(_ node: Node) throws -> Tensor {
        let keys = ["value", "sparse_value", "value_float", "value_floats", "value_int", "value_ints",
                    "value_string", "value_strings"].filter { node.attributes[$0] != nil }
        guard keys.count == 1, let key = keys.first else {
            throw SegFormerError.invalid("\(node.label): Constant needs exactly one value attribute, has \(keys)")
        }
        switch key {
        case "value": return try node.tensor("value")!
        case "sparse_value": throw SegFormerError.unsupported("\(node.label): Constant with sparse_value")
        case "value_float": return Tensor(scalar: try node.float("value_float")!)
        case "value_floats":
            let v = try node.floats("value_floats")!
            return Tensor(v, shape: [v.count])
        case "value_int": return Tensor(scalar: Int64(try node.int("value_int")!))
        case "value_ints":
            let v = try node.ints("value_ints")!.map { Int64($0) }
            return Tensor(v, shape: [v.count])
        case "value_string": return Tensor(strings: [try node.string("value_string")!], shape: [])
        default:
            switch node.attributes["value_strings"]! {
            case .strings(let v): return Tensor(strings: v, shape: [v.count])
            case .string(let v): return Tensor(strings: [v], shape: [1])
            case let a: throw SegFormerError.invalid("\(node.label): attribute 'value_strings' must be strings, got \(a.kindName)")
            }
        }
    }

    // MARK: ConstantOfShape

    static let constantOfShapeSchema = OpSchema(OpType.constantOfShape, opsets: 9...28, inputs: 1...1,
                                                shapeInputs: [0], inferTypes: { ctx in
        let value = try fillValue(ctx.node)
        guard let target = ctx.symbols(0) else {
            let rank = ctx.type(0)?.knownShape?.first
            return [TensorType(value.dataType, rank.map { r in (0..<r).map { .symbol("\(ctx.node.outputs.first ?? "?")#\($0)") } })]
        }
        return [TensorType(value.dataType, target)]
    }, makeKernel: { node, _ in
        let value = try fillValue(node)
        return ClosureKernel { inputs, context in
            let shapeTensor = try inputs.required(0, "shape")
            guard shapeTensor.rank <= 1 else {
                throw SegFormerError.invalid("\(node.label): shape input must be 1-D, has shape \(shapeTensor.shape)")
            }
            let shape = try shapeTensor.integers()
            try Movement.checkShape(shape, node.label)
            return [try GeneratorKernels.filled(value, shape: shape, context)]
        }
    }).notDifferentiable()

    /// ConstantOfShape's `value`: a one-element tensor, float 0 by default.
    static func fillValue(_ node: Node) throws -> Tensor {
        guard let v = try node.tensor("value") else { return Tensor([Float(0)], shape: [1]) }
        guard v.count == 1 else { throw SegFormerError.invalid("\(node.label): value must hold one element, has shape \(v.shape)") }
        return v
    }

    // MARK: Range

    static let rangeSchema = OpSchema("Range", opsets: movementOpsets, inputs: 3...3, shapeInputs: [0, 1, 2],
                                      inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        if let s = ctx.constant(0), let l = ctx.constant(1), let d = ctx.constant(2) {
            return [TensorType(t.dataType, known: [try rangeCount(s, l, d, ctx.node.label)])]   // counted, not filled
        }
        return [TensorType(t.dataType, [.symbol("\(ctx.node.outputs.first ?? "?")#0")])]
    }, makeKernel: { node, _ in
        ClosureKernel { inputs, _ in
            [try GeneratorKernels.range(try inputs.required(0, "start"), try inputs.required(1, "limit"),
                       try inputs.required(2, "delta"), node.label)]
        }
    }).notDifferentiable()

    /// max(ceil((limit − start)/delta), 0): the element count of Range, found without allocating.
    static func rangeCount(_ start: Tensor, _ limit: Tensor, _ delta: Tensor, _ label: String) throws -> Int {
        let type = start.dataType
        guard limit.dataType == type, delta.dataType == type else {
            throw SegFormerError.invalid("\(label): start, limit and delta differ in type (\(type), \(limit.dataType), \(delta.dataType))")
        }
        guard start.count == 1, limit.count == 1, delta.count == 1 else {
            throw SegFormerError.invalid("\(label): start, limit and delta must be scalars (shapes \(start.shape), \(limit.shape), \(delta.shape))")
        }
        let count: Double
        if type.isInteger {
            let s = try start.integers()[0], l = try limit.integers()[0], d = try delta.integers()[0]
            guard d != 0 else { throw SegFormerError.invalid("\(label): delta is 0") }
            // Exact while the span fits an Int; a span that does not is far above the limit anyway.
            let (span, overflow) = l.subtractingReportingOverflow(s)
            if overflow {
                count = (Double(l) - Double(s)) / Double(d)
            } else {
                var n = span / d
                if span % d != 0 && (span > 0) == (d > 0) { n += 1 }
                count = Double(max(n, 0))
            }
        } else {
            guard type.isFloatingPoint else { throw SegFormerError.unsupported("\(label): Range of \(type)") }
            let s = try start.doubles()[0], l = try limit.doubles()[0], d = try delta.doubles()[0]
            guard d != 0, s.isFinite, l.isFinite, d.isFinite else {
                throw SegFormerError.invalid("\(label): Range start \(s), limit \(l), delta \(d) are not finite / delta is 0")
            }
            count = max(((l - s) / d).rounded(.up), 0)
        }
        guard count <= Double(Movement.maxElements) else { throw SegFormerError.invalid("\(label): range of \(count) elements is too large") }
        return Int(count)
    }
}
