import GraphIR

/// A node made ready to run: attributes parsed and checked once, at plan time.
public protocol Kernel {
    /// Computes the node's outputs. `inputs[i]` is nil for an absent optional input.
    /// Outputs are freshly allocated tensors (or views sharing an input's storage).
    func run(_ inputs: [Tensor?], _ context: ExecutionContext) throws -> [Tensor]
}

/// What the static type/shape rule of an op sees: the node, its input types (nil when unknown) and
/// the values of inputs that are constants at this point (initializers, folded shape arithmetic).
public struct TypeInferenceContext {
    public let node: Node
    public let opset: Int
    public let inputTypes: [TensorType?]
    public let constantInputs: [Tensor?]

    public func type(_ i: Int) -> TensorType? { i < inputTypes.count ? inputTypes[i] : nil }
    public func constant(_ i: Int) -> Tensor? { i < constantInputs.count ? constantInputs[i] : nil }
}

/// Everything the runtime knows about one op type: its arity, which inputs decide the output
/// *shape* by their values, how to infer output types symbolically and how to build its kernel.
/// Each op family file declares its schemas next to their kernels.
public struct OpSchema: @unchecked Sendable {
    public let opType: String
    public let domain: String
    /// ai.onnx opset versions whose semantics the kernel implements.
    public let opsets: ClosedRange<Int>
    public let inputCount: ClosedRange<Int>
    public let outputCount: ClosedRange<Int>
    /// Inputs whose *values* (not just shapes) determine the output shape, e.g. Reshape's `shape`.
    public let shapeInputs: Set<Int>
    /// The symbolic shape rule; nil means output types are unknown until run time.
    public let inferTypes: ((TypeInferenceContext) throws -> [TensorType?])?
    /// Parses attributes (at the given opset) and returns the kernel.
    public let makeKernel: (Node, Int) throws -> Kernel
    /// How to differentiate the op (reverse mode); nil for non-differentiable ops.
    public var gradient: GradientRule?

    public init(_ opType: String, domain: String = "", opsets: ClosedRange<Int> = 1...23,
                inputs: ClosedRange<Int>, outputs: ClosedRange<Int> = 1...1, shapeInputs: Set<Int> = [],
                inferTypes: ((TypeInferenceContext) throws -> [TensorType?])? = nil,
                makeKernel: @escaping (Node, Int) throws -> Kernel) {
        self.opType = opType
        self.domain = domain
        self.opsets = opsets
        self.inputCount = inputs
        self.outputCount = outputs
        self.shapeInputs = shapeInputs
        self.inferTypes = inferTypes
        self.makeKernel = makeKernel
    }
}

/// A kernel written as a closure, for ops whose state is a few parsed attributes.
public struct ClosureKernel: Kernel {
    public let body: ([Tensor?], ExecutionContext) throws -> [Tensor]
    public init(_ body: @escaping ([Tensor?], ExecutionContext) throws -> [Tensor]) { self.body = body }
    public func run(_ inputs: [Tensor?], _ context: ExecutionContext) throws -> [Tensor] { try body(inputs, context) }
}

extension Array where Element == Tensor? {
    /// The i-th input, which the schema says is required.
    @inline(__always)
    public func required(_ i: Int, _ what: String = "input") throws -> Tensor {
        guard i < count, let t = self[i] else { throw SegFormerError.invalid("missing required \(what) #\(i)") }
        return t
    }
    /// The i-th input if present.
    @inline(__always)
    public func optional(_ i: Int) -> Tensor? { i < count ? self[i] : nil }
}
