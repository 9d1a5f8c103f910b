import Foundation
import GraphIR

// RandomUniformLike and RandomUniform: uniform numbers in [low, high) from the session's counter-based
// random stream (Execution/RandomStream.swift), keyed by the node's output name, so training-mode
// graphs (drop-path exports as RandomUniformLike → Add → Floor → Div → Mul) are reproducible from the
// seed on any thread count. A node's own `seed` attribute replaces the session's seed for that node.

extension OpRegistry {
    static let randomOps: [OpSchema] = [
        OpSchema("RandomUniformLike", opsets: 1...28, inputs: 1...1,
                 inferTypes: { ctx in
                     guard let t = ctx.type(0) else { return [nil] }
                     return [TensorType(try RandomUniform.elementType(ctx.node, default: t.dataType), t.shape)]
                 },
                 makeKernel: { node, _ in
                     let draw = try RandomUniform(node)
                     return ClosureKernel { inputs, context in
                         let like = try inputs.required(0)
                         return [try draw.tensor(shape: like.shape, type: try RandomUniform.elementType(node, default: like.dataType),
                                                 context: context)]
                     }
                 }).notDifferentiable().nondeterministic(),
        OpSchema("RandomUniform", opsets: 1...28, inputs: 0...0,
                 inferTypes: { ctx in
                     guard let shape = try ctx.node.ints("shape") else { return [nil] }
                     return [TensorType(try RandomUniform.elementType(ctx.node, default: .float), known: shape)]
                 },
                 makeKernel: { node, _ in
                     let draw = try RandomUniform(node)
                     guard let shape = try node.ints("shape"), shape.allSatisfy({ $0 >= 0 }) else {
                         throw SegFormerError.invalid("\(node.label): needs a 'shape' attribute of sizes ≥ 0")
                     }
                     let type = try RandomUniform.elementType(node, default: .float)
                     return ClosureKernel { _, context in [try draw.tensor(shape: shape, type: type, context: context)] }
                 }).notDifferentiable().nondeterministic(),
    ]
}

/// One random node's parsed attributes and how it fills a tensor.
struct RandomUniform {
    let low: Double, high: Double
    /// The node's `seed` attribute as stream seed (nil: the session's seed).
    let seed: UInt64?
    /// The name that keys this node's numbers in the stream.
    let key: String
    let label: String

    init(_ node: Node) throws {
        low = Double(try node.float("low", default: 0))
        high = Double(try node.float("high", default: 1))
        seed = try node.float("seed").map { UInt64($0.bitPattern) }
        key = node.outputs.first ?? node.name
        label = node.label
        guard low.isFinite, high.isFinite, low <= high else {
            throw SegFormerError.invalid("\(node.label): low \(low) and high \(high) must be finite with low ≤ high")
        }
    }

    /// The `dtype` attribute (an ONNX element type code) or `fallback`.
    static func elementType(_ node: Node, default fallback: DataType) throws -> DataType {
        guard let code = try node.int("dtype") else { return fallback }
        guard let t = DataType(rawValue: Int32(truncatingIfNeeded: code)), [DataType.float, .double, .float16].contains(t) else {
            throw SegFormerError.unsupported("\(node.label): dtype \(code) (float, double or float16 only)")
        }
        return t
    }

    func tensor(shape: [Int], type: DataType, context: ExecutionContext) throws -> Tensor {
        var stream = context.random
        if let seed { stream.seed = seed }
        let n = Tensor.elementCount(shape)
        let u = Tensor(uninitialized: .float, shape: shape)
        stream.uniforms(node: key, count: n, context: context, u.pointer(Float.self))
        let p = u.pointer(Float.self)
        let span = high - low
        switch type {
        case .float:
            if low == 0 && high == 1 { return u }
            for i in 0..<n { p[i] = Float(low + span * Double(p[i])) }
            return u
        case .double:
            let out = Tensor(uninitialized: .double, shape: shape)
            let d = out.pointer(Double.self)
            for i in 0..<n { d[i] = low + span * Double(p[i]) }
            return out
        case .float16:
            let out = Tensor(uninitialized: .float16, shape: shape)
            let d = out.pointer(Float16.self)
            for i in 0..<n { d[i] = Float16(Float(low + span * Double(p[i]))) }
            return out
        default:
            throw SegFormerError.unsupported("\(label): random \(type) tensors")
        }
    }
}
