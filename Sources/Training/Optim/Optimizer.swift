import Foundation
import GraphIR
import Runtime

/// A set of parameters sharing hyper-parameters (the SegFormer recipe trains the decode head at
/// 10× the learning rate and applies no weight decay to norm and position-block parameters).
public struct ParameterGroup: Sendable {
    public var names: [String]
    public var learningRateMultiplier: Double = 1
    public var weightDecay: Double? = nil   // nil: the optimizer's default
    public init(names: [String], learningRateMultiplier: Double = 1, weightDecay: Double? = nil) {
        self.names = names
        self.learningRateMultiplier = learningRateMultiplier
        self.weightDecay = weightDecay
    }
}

/// Parameter groups looked up by parameter name.
public struct ParameterGroups: Sendable {
    public let groups: [ParameterGroup]
    private let byName: [String: ParameterGroup]

    public init(_ groups: [ParameterGroup]) {
        self.groups = groups
        var map: [String: ParameterGroup] = [:]
        for g in groups { for n in g.names { map[n] = g } }
        byName = map
    }

    /// The learning rate and weight decay for `name`, given the optimizer's defaults.
    func settings(_ name: String, learningRate: Double, weightDecay: Double) -> (Double, Double) {
        let g = byName[name]
        return (learningRate * (g?.learningRateMultiplier ?? 1), g?.weightDecay ?? weightDecay)
    }
}

/// Optimizer state that checkpoints save and restore (deep copies, independent of the optimizer).
public struct OptimizerState: Sendable {
    public var step: Int
    /// Per parameter: named slots (e.g. "exp_avg", "exp_avg_sq", "momentum_buffer").
    public var slots: [String: [String: Tensor]]
}

/// Updates parameters in place from their gradients. A training session's parameters are updated
/// through `TrainingSession.update(with:gradients:learningRate:)` (or its `step`), which hands the
/// optimizer the session's own tensors.
public protocol Optimizer: AnyObject {
    /// Steps taken so far.
    var step: Int { get }
    /// Applies one update with learning rate `lr` (already scheduled) to every parameter that has a
    /// gradient. `parameters` are updated in place.
    func update(parameters: [String: Tensor], gradients: [String: Tensor], learningRate lr: Double) throws
    /// The same update, free to split its work across `context`'s threads (the training session passes
    /// its own); the result must not depend on the thread count.
    func update(parameters: [String: Tensor], gradients: [String: Tensor], learningRate lr: Double,
                context: ExecutionContext) throws
    var state: OptimizerState { get set }
}

extension Optimizer {
    /// An optimizer that does not split its work updates on the calling thread.
    public func update(parameters: [String: Tensor], gradients: [String: Tensor], learningRate lr: Double,
                       context: ExecutionContext) throws {
        try update(parameters: parameters, gradients: gradients, learningRate: lr)
    }
}

/// SGD with momentum, dampening, Nesterov and (coupled) weight decay, as torch.optim.SGD.
public final class SGD: Optimizer {
    public var momentum: Double, dampening: Double, weightDecay: Double, nesterov: Bool
    public let groups: ParameterGroups
    public private(set) var step = 0
    private var buffers: [String: Tensor] = [:]

    // Stored hyper-parameters, like AdamW's init: the shape is shared, the parameters are not.
    public init(momentum: Double = 0.9, dampening: Double = 0, weightDecay: Double = 0, nesterov: Bool = false,
                groups: [ParameterGroup] = []) {
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        self.groups = ParameterGroups(groups)
    }

    public func update(parameters: [String: Tensor], gradients: [String: Tensor], learningRate lr: Double) throws {
        step = try nextStep(after: step)
        for (name, p) in parameters {
            guard let g = gradients[name] else { continue }
            try checkSameShape(p, g, name)
            let (rate, decay) = groups.settings(name, learningRate: lr, weightDecay: weightDecay)
            let groupLR = Float(rate), wd = Float(decay)
            let pp = p.pointer(Float.self), gp = g.pointer(Float.self)
            let mom = Float(momentum), damp = Float(dampening)
            let first = buffers[name] == nil
            let buf = buffers[name] ?? Tensor(zeros: .float, shape: p.shape)
            guard buf.shape == p.shape, buf.dataType == .float else {
                throw SegFormerError.invalid("SGD momentum buffer for '\(name)' is \(buf.dataType)\(buf.shape); the parameter is \(p.shape)")
            }
            buffers[name] = buf
            let bp = buf.pointer(Float.self)
            for i in 0..<p.count {
                var d = gp[i] + wd * pp[i]
                if mom != 0 {
                    bp[i] = first ? d : mom * bp[i] + (1 - damp) * d
                    d = nesterov ? d + mom * bp[i] : bp[i]
                }
                pp[i] -= groupLR * d
            }
        }
    }

    public var state: OptimizerState {
        get { OptimizerState(step: step, slots: buffers.mapValues { ["momentum_buffer": $0.copy()] }) }
        set {
            step = newValue.step
            buffers = newValue.slots.compactMapValues { $0["momentum_buffer"]?.copy() }
        }
    }
}

/// The step count after `step`: a restored state with a negative or exhausted count (a damaged
/// checkpoint) is an error, not a trap or a bias correction of 1 − β^−5.
func nextStep(after step: Int) throws -> Int {
    guard step >= 0, step < Int.max else { throw SegFormerError.invalid("optimizer: step count \(step) is not a valid state") }
    return step + 1
}

func checkSameShape(_ p: Tensor, _ g: Tensor, _ name: String) throws {
    guard p.dataType == .float, g.dataType == .float else {
        throw SegFormerError.unsupported("optimizer: parameter '\(name)' is \(p.dataType) with gradient \(g.dataType); only float32 is trained")
    }
    guard p.shape == g.shape else {
        throw SegFormerError.invalid("optimizer: parameter '\(name)' has shape \(p.shape) but its gradient \(g.shape)")
    }
}
