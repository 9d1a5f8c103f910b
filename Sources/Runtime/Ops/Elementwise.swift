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

// MARK: - Broadcasting before opset 7

/// Binary ops before opset 7 (Add, Sub, Mul, Div, Pow, comparisons, logic) broadcast only when the node
/// says `broadcast` = 1, and then B onto A: B has one element, or its shape is the run of A's dims that
/// starts at `axis` (by default A's trailing dims — numpy's rule), where a dim of B may also be 1 (as
/// Caffe2, PyTorch's opset-6 exports and onnx's version converter have it). The adapter gives such a B
/// trailing 1s so that the numpy-broadcasting kernels read it that way; without `broadcast` the shapes
/// must match.
/// The output has A's shape. From opset 7 on there is no adapter (`init` gives nil).
struct LegacyBroadcast {
    let broadcast: Bool
    let axis: Int?

    init?(_ node: Node, opset: Int) throws {
        guard opset < 7 else { return nil }
        broadcast = try node.int("broadcast", default: 0) != 0
        axis = try node.int("axis")
    }

    /// A and B as the numpy-broadcasting kernels must see them.
    static func operands(_ legacy: LegacyBroadcast?, _ inputs: [Tensor?], _ label: String) throws -> (Tensor, Tensor) {
        let a = try inputs.required(0), b = try inputs.required(1)
        return (a, try legacy?.adapt(a, b, label) ?? b)
    }

    func adapt(_ a: Tensor, _ b: Tensor, _ label: String) throws -> Tensor {
        guard broadcast else {
            guard a.shape == b.shape else {
                throw SegFormerError.invalid("\(label): shapes \(a.shape) and \(b.shape) differ and the node does not set broadcast = 1 (opset < 7)")
            }
            return b
        }
        if b.count == 1 { return b.reshaped([]) }
        let start = axis.map { $0 < 0 ? $0 + a.rank : $0 } ?? (a.rank - b.rank)
        guard start >= 0, start + b.rank <= a.rank,
              zip(a.shape[start..<(start + b.rank)], b.shape).allSatisfy({ $1 == $0 || $1 == 1 }) else {
            throw SegFormerError.invalid("\(label): B of shape \(b.shape) does not match A's shape \(a.shape) from axis \(axis ?? start)")
        }
        return b.reshaped(b.shape + [Int](repeating: 1, count: a.rank - start - b.rank))
    }

    /// The shape rule: A's shape before opset 7, `rule` from then on.
    static func shapeRule(_ rule: @escaping (TypeInferenceContext) throws -> [TensorType?],
                          resultType: DataType? = nil) -> (TypeInferenceContext) throws -> [TensorType?] {
        return { ctx in
            guard ctx.opset < 7 else { return try rule(ctx) }
            guard let a = ctx.type(0) else { return [nil] }
            return [TensorType(resultType ?? a.dataType, a.shape)]
        }
    }

    /// The gradient rule, refused for an `axis` broadcast (the rule's sums to B's shape follow numpy).
    static func gradientRule(_ rule: @escaping GradientRule) -> GradientRule {
        return { c in
            if c.opset < 7, c.node.attributes["axis"] != nil {
                throw SegFormerError.unsupported("\(c.node.label): gradient of a broadcast with 'axis' (opset < 7)")
            }
            return try rule(c)
        }
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
