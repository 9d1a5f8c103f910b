import GraphIR

/// The project's op domain for gradient kernels and training ops (ConvGrad, LayerNormGrad,
/// SoftmaxGrad, ResizeGrad, SumToShape, …), so a training graph stays a serialisable graph.
public let trainingDomain = "ai.segformer.training"

/// What a gradient rule sees for one forward node. The rule writes backward nodes through
/// `builder` and returns, per forward input, the name of its gradient (nil: none flows there).
public struct GradientContext {
    public let node: Node
    public let opset: Int
    /// Gradient of the loss with respect to each forward output; nil when none flows back.
    public let outputGradients: [String?]
    /// Which forward inputs need a gradient (others may return nil to save work).
    public let needsInputGradient: [Bool]
    public let builder: GraphBuilder

    public init(node: Node, opset: Int, outputGradients: [String?], needsInputGradient: [Bool], builder: GraphBuilder) {
        self.node = node
        self.opset = opset
        self.outputGradients = outputGradients
        self.needsInputGradient = needsInputGradient
        self.builder = builder
    }

    /// The forward input name at `i` (required to exist).
    public func input(_ i: Int) -> String { node.inputs[i] }
    public func output(_ i: Int) -> String { node.outputs[i] }
    public func needs(_ i: Int) -> Bool { i < needsInputGradient.count && needsInputGradient[i] }
    /// Gradient of output `i`; a rule for a single-output op may assume it exists.
    public func gradient(_ i: Int = 0) throws -> String {
        guard i < outputGradients.count, let g = outputGradients[i] else {
            throw SegFormerError.invalid("\(node.label): no gradient for output #\(i)")
        }
        return g
    }

    /// Sums a broadcast gradient back to the shape of `like` (a forward input).
    /// The shape comes from Shape(like), which plan-time folding turns into a constant, so `like`
    /// is not kept alive for the backward pass by this.
    public func sumToShape(_ grad: String, like: String) -> String {
        let shape = builder.add1(OpType.shape, [like])
        return builder.add1(OpType.sumToShape, domain: trainingDomain, [grad, shape])
    }

    /// Shape(value) as a new node (folded to a constant once input shapes are bound).
    public func shape(of value: String) -> String { builder.add1(OpType.shape, [value]) }
}

/// Emits the backward nodes of one forward node; returns one gradient name (or nil) per input.
public typealias GradientRule = (GradientContext) throws -> [String?]

extension OpSchema {
    /// The same schema with a gradient rule attached.
    public func withGradient(_ rule: @escaping GradientRule) -> OpSchema {
        var s = self
        s.gradient = rule
        return s
    }

    /// The same schema for an op whose outputs carry no gradient back to its inputs (shapes,
    /// constants, index generators): autodiff passes it by instead of failing.
    public func notDifferentiable() -> OpSchema {
        var s = withGradient { ctx in Array(repeating: nil, count: ctx.node.inputs.count) }
        s.passesGradient = false
        return s
    }

    /// Whether autodiff can send a gradient through this op to its inputs.
    public var isDifferentiable: Bool { gradient != nil && passesGradient }
}
