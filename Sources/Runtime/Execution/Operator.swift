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
    /// Symbolic contents of small integer inputs (shape arithmetic), e.g. `[batch, 3, height, width]`
    /// for `Shape(pixel_values)`; nil where unknown.
    public var symbolicInputs: [[Dim]?] = []

    public func type(_ i: Int) -> TensorType? { i < inputTypes.count ? inputTypes[i] : nil }
    public func constant(_ i: Int) -> Tensor? { i < constantInputs.count ? constantInputs[i] : nil }

    /// The contents of input `i` as dims: from a small integer constant, or from its symbolic value.
    public func symbols(_ i: Int) -> [Dim]? {
        if let c = constant(i), c.dataType.isInteger, c.rank <= 1, let v = try? c.integers() { return v.map { .known($0) } }
        return i < symbolicInputs.count ? symbolicInputs[i] : nil
    }
    /// Whether input `i` is a 0-d tensor.
    public func isScalar(_ i: Int) -> Bool { type(i)?.shape?.isEmpty == true }
}

/// Everything the runtime knows about one op type, in one place: its arity, which inputs decide the
/// output *shape* by their values, its type/shape rule and symbolic-value rule, its flags, how to build
/// its kernel and how to differentiate it. Each op family file declares its schemas next to their
/// kernels; nothing else in the runtime special-cases an op by name.
public struct OpSchema: @unchecked Sendable {
    public let opType: String
    public private(set) var domain: String
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
    /// False for ops marked `notDifferentiable()` (their rule sends no gradient anywhere).
    var passesGradient = true
    /// False for ops that draw random numbers: their results are never folded into constants.
    public private(set) var isDeterministic = true
    /// For ops whose output depends only on the input's *shape* (Shape, Size): computes the output
    /// from that shape, so a planner can fold the node without the input's data.
    public private(set) var valueFromShape: ((_ node: Node, _ opset: Int, _ shape: [Int]) throws -> Tensor)?
    /// The symbolic-value rule of shape arithmetic: the contents of the (small, integer) output in
    /// terms of the inputs' symbolic contents, e.g. Shape(x) → x's dims, Concat → the parts joined.
    public private(set) var symbolicValue: ((TypeInferenceContext) throws -> [Dim]?)?
    /// The multiply-adds a node does, from its input and output shapes (nil where unknown): carried
    /// by the ops whose work grows faster than their outputs (contractions: MatMul, Gemm, Conv,
    /// attention), summed by the planner for `WorkBudget` (`--max-work`).
    public private(set) var work: WorkRule?

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

extension OpSchema {
    /// The same schema, marked as drawing random numbers (never folded).
    public func nondeterministic() -> OpSchema {
        var s = self
        s.isDeterministic = false
        return s
    }

    /// The same schema with its output computable from the first input's shape alone.
    public func withValueFromShape(_ rule: @escaping (Node, Int, [Int]) throws -> Tensor) -> OpSchema {
        var s = self
        s.valueFromShape = rule
        return s
    }

    /// The same op registered under another domain (same rules, same kernel).
    public func inDomain(_ domain: String) -> OpSchema {
        var s = self
        s.domain = domain
        return s
    }

    /// The same schema with a work rule (`work`).
    public func withWork(_ rule: @escaping WorkRule) -> OpSchema {
        var s = self
        s.work = rule
        return s
    }

    /// The same schema with a symbolic-value rule.
    public func withSymbolicValue(_ rule: @escaping (TypeInferenceContext) throws -> [Dim]?) -> OpSchema {
        var s = self
        s.symbolicValue = rule
        return s
    }
}

/// Multiply-adds of one node: (node, input shapes, output shapes) → count, nil where not estimable.
/// Shapes are nil for absent inputs and values whose shape the plan does not know.
public typealias WorkRule = (_ node: Node, _ inputs: [[Int]?], _ outputs: [[Int]?]) -> Double?

/// A kernel written as a closure, for ops whose state is a few parsed attributes.
public struct ClosureKernel: Kernel {
    public let body: ([Tensor?], ExecutionContext) throws -> [Tensor]
    public init(_ body: @escaping ([Tensor?], ExecutionContext) throws -> [Tensor]) { self.body = body }
    public func run(_ inputs: [Tensor?], _ context: ExecutionContext) throws -> [Tensor] { try body(inputs, context) }
}

/// A kernel that does work on its constant inputs once, when the model is compiled (a GEMM packs its
/// weight): `CompiledModel` calls `prepare` with the node's initializers (nil for the inputs that are
/// computed or fed) and runs the kernel it returns. Where nothing is compiled (a single op, constant
/// folding) `unprepared` runs, the same computation with nothing done ahead.
public struct ConstantPreparedKernel: Kernel {
    public let unprepared: Kernel
    public let prepare: ([Tensor?]) -> Kernel
    public init(unprepared: Kernel, prepare: @escaping ([Tensor?]) -> Kernel) {
        self.unprepared = unprepared
        self.prepare = prepare
    }
    public func run(_ inputs: [Tensor?], _ context: ExecutionContext) throws -> [Tensor] { try unprepared.run(inputs, context) }
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
