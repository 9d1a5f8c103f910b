import Foundation
import GraphIR

/// Runs a compiled model: checks the feeds, takes the plan for their binding (made by the `Planner`
/// on first sight and cached) and executes its steps. Inference graphs and training graphs (forward +
/// backward, see Training's Autodiff) run alike.
///
/// An app embedding the runtime needs three calls: `Model.load(contentsOf:)`, `Session(model:)` and
/// `run(_:)`. A session is safe to share between threads (runs are serialised).
public final class Session {
    /// The model after the clean-up passes, with its kernels built and its values numbered.
    public let compiled: CompiledModel
    /// The threads the kernels use (set from `SessionOptions.threads`).
    public let context: ExecutionContext
    /// The model as given to `init`.
    public var model: Model { compiled.model }
    /// The graph as executed (after the clean-up and optimizing passes), topologically sorted.
    public var graph: Graph { compiled.graph }

    private var plans: [InputBinding: ExecutionPlan] = [:]
    private let lock = NSLock()

    /// When true, `run` accumulates wall time per op type into `profile` (for `bench --profile`).
    public var profiling = false
    /// Op type → (calls, total milliseconds), accumulated while `profiling` is on.
    public private(set) var profile: [String: (calls: Int, milliseconds: Double)] = [:]
    /// Node label → (calls, total milliseconds), accumulated with `profile`: which nodes of a type cost.
    public private(set) var nodeProfile: [String: (calls: Int, milliseconds: Double)] = [:]
    /// Clears `profile` and `nodeProfile`.
    public func resetProfile() { profile = [:]; nodeProfile = [:] }

    /// Compiles `model` for running: clean-up passes, one kernel per node, value slots. Plans are made
    /// later, one per binding of input shapes (on the first `run` with that binding).
    ///
    /// - Throws: `SegFormerError.unsupported` naming the node when an op (or an attribute value) is not
    ///   implemented at the model's opset; `.invalid` when the graph is malformed (cycles, dangling values).
    public init(model: Model, options: SessionOptions = SessionOptions()) throws {
        context = ExecutionContext(threads: options.threads)
        compiled = try CompiledModel(model: model, optimize: options.optimize, optimizingPasses: options.optimizingPasses,
                                     passes: options.passes, packWeights: options.packWeights)
    }

    /// Graph inputs the caller must feed, with their declared types (element type and shape, whose
    /// dims may be symbols such as `batch`; for SegFormer, `pixel_values` float32 N×3×H×W).
    public var inputs: [ValueInfo] { compiled.runtimeInputs }
    /// Graph outputs `run` returns, with their declared types (for SegFormer, `logits` float32
    /// N×classes×H/4×W/4).
    public var outputs: [ValueInfo] { graph.outputs }

    /// The plan for inputs like `feeds` (made now if this binding is new), for inspection.
    public func plan(for feeds: [String: Tensor]) throws -> ExecutionPlan {
        try validate(feeds)
        lock.lock()
        defer { lock.unlock() }
        return try cachedPlan(feeds)
    }

    private func cachedPlan(_ feeds: [String: Tensor]) throws -> ExecutionPlan {
        let key = InputBinding(compiled.runtimeInputs, feeds)
        if let plan = plans[key] { return plan }
        // The planner keeps the values of the small integer feeds only (`InputBinding.isBoundByValue`).
        let plan = try Planner.plan(compiled, shapes: feeds.mapValues(\.shape), values: feeds, context: context)
        plans[key] = plan
        return plan
    }

    // MARK: running

    /// Runs the graph. `feeds` maps input names to tensors; every non-initializer input is required.
    /// Returns every graph output by name.
    ///
    /// `observer`, when given, hears after every step which outputs it finished (see `RunObserver`);
    /// without one the steps run back to back.
    ///
    /// - Throws: `SegFormerError.invalid` for an unknown or missing input, a wrong element type, rank or
    ///   dimension (naming the input and the expected type), and for a kernel's failure (naming the node
    ///   and its input shapes); `.unsupported` for an attribute value found unsupported only at run time.
    public func run(_ feeds: [String: Tensor], observer: RunObserver? = nil) throws -> [String: Tensor] {
        try validate(feeds)
        lock.lock()
        defer { lock.unlock() }
        let plan = try cachedPlan(feeds)
        var slots = [Tensor?](repeating: nil, count: compiled.slotNames.count)
        for (s, t) in compiled.initializerSlots { slots[s] = t }
        for info in graph.inputs { if let t = feeds[info.name] { slots[compiled.slotOf[info.name]!] = t } }
        for (s, t) in plan.foldedValues { slots[s] = t }
        // Each run draws fresh random numbers (a failed run too, so retrying does not repeat masks).
        defer { context.random.run &+= 1 }
        if let observer {
            let finished = plan.outputsFinished
            func report(_ k: Int) throws {
                try observer.afterStep(finished: finished[k].compactMap { i in
                    let name = graph.outputs[i].name
                    return slots[compiled.slotOf[name]!].map { (name: name, value: $0) }
                })
            }
            try report(0)
            for (k, step) in plan.steps.enumerated() {
                try execute(step, &slots)
                try report(k + 1)
            }
        } else {
            for step in plan.steps { try execute(step, &slots) }
        }
        var result: [String: Tensor] = [:]
        for o in graph.outputs {
            guard let t = slots[compiled.slotOf[o.name]!] else {
                throw SegFormerError.invalid("graph output '\(o.name)' was not computed")
            }
            result[o.name] = t
        }
        return result
    }

    @inline(__always)
    private func execute(_ step: Step, _ slots: inout [Tensor?]) throws {
        let inputs: [Tensor?] = step.inputs.map { $0 < 0 ? nil : slots[$0] }
        let outputs: [Tensor]
        let node = graph.nodes[step.nodeIndex]
        let started = profiling ? Benchmark.now() : 0
        do {
            if step.checksOutputSizes { try checkOutputSizes(step, node, inputs) }
            outputs = try step.kernel.run(inputs, context)
            if profiling {
                let elapsed = Benchmark.now() - started
                let previous = profile[node.opType] ?? (0, 0)
                profile[node.opType] = (previous.calls + 1, previous.milliseconds + elapsed)
                let byNode = nodeProfile[node.label] ?? (0, 0)
                nodeProfile[node.label] = (byNode.calls + 1, byNode.milliseconds + elapsed)
            }
        } catch let e as SegFormerError {
            let shapes = inputs.map { $0.map { "\($0.dataType)\($0.shape)" } ?? "∅" }.joined(separator: ", ")
            throw e.prefixed("\(node.label) with inputs (\(shapes))")
        }
        if outputs.count < step.outputs.count, step.outputs[outputs.count...].contains(where: { $0 >= 0 }) {
            throw SegFormerError.invalid("\(node.label): kernel produced \(outputs.count) outputs, node expects \(step.outputs.count)")
        }
        for (i, s) in step.outputs.enumerated() where s >= 0 { slots[s] = outputs[i] }
        for (s, shape) in step.shapeChecks where slots[s]?.shape != shape {
            throw SegFormerError.invalid("\(node.label): produced '\(compiled.slotNames[s])' of shape \(slots[s]?.shape ?? []) where the op's shape rule predicted \(shape) (an internal error: please report it)")
        }
        for s in step.release { slots[s] = nil }
    }

    /// The budget check for outputs whose size only the real inputs reveal: the op's shape rule on
    /// the concrete input types, before the kernel allocates.
    private func checkOutputSizes(_ step: Step, _ node: Node, _ inputs: [Tensor?]) throws {
        guard let rule = compiled.schemas[step.nodeIndex].inferTypes else { return }
        let context = TypeInferenceContext(node: node, opset: compiled.opset,
                                           inputTypes: inputs.map { $0.map { TensorType($0.dataType, known: $0.shape) } },
                                           constantInputs: inputs.map { $0.flatMap { InputBinding.isBoundByValue($0) ? $0 : nil } })
        guard let types = try? rule(context) else { return }
        for (type, name) in zip(types, node.outputs) {
            guard let type, let shape = type.knownShape else { continue }
            try MemoryBudget.require(Tensor.checkedByteCount(shape, type.dataType), for: "output '\(name)' \(type)")
        }
    }

    private func validate(_ feeds: [String: Tensor]) throws {
        let known = Set(graph.inputs.map(\.name))
        for name in feeds.keys where !known.contains(name) {
            let expected = inputs.map(\.name).joined(separator: ", ")
            throw SegFormerError.invalid("unknown input '\(name)'; the model's inputs are: \(expected)")
        }
        var symbols: [String: (Int, String)] = [:]
        for info in inputs {
            guard let t = feeds[info.name] else {
                throw SegFormerError.invalid("missing input '\(info.name)' (\(info.type))")
            }
            if t.dataType != info.type.dataType && info.type.dataType != .undefined {
                throw SegFormerError.invalid("input '\(info.name)': expected element type \(info.type.dataType), got \(t.dataType)")
            }
            guard let dims = info.type.shape else { continue }
            if dims.count != t.rank {
                throw SegFormerError.invalid("input '\(info.name)': expected shape \(info.type) (rank \(dims.count)), got \(t.shape)")
            }
            for (axis, (d, v)) in zip(dims, t.shape).enumerated() {
                switch d {
                case .known(let k) where k != v:
                    throw SegFormerError.invalid("input '\(info.name)': dimension \(axis) must be \(k), got \(v) (shape \(t.shape), expected \(info.type))")
                case .symbol(let s) where !s.hasPrefix("?"):
                    if let (prev, owner) = symbols[s], prev != v {
                        throw SegFormerError.invalid("input '\(info.name)': dimension '\(s)' is \(v) but was \(prev) in input '\(owner)'")
                    }
                    symbols[s] = (v, info.name)
                default: break
                }
            }
        }
    }

    /// Statistics of the plans made so far.
    public var planSummary: String {
        lock.lock(); defer { lock.unlock() }
        return plans.values.map { "\($0.steps.count) nodes to run, \($0.foldedNodeCount) folded" }.joined(separator: "; ")
    }
}
