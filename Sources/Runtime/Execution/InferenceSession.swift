import Foundation
import GraphIR

/// Options for a session.
public struct SessionOptions: Sendable {
    /// Intra-op threads (default: all cores).
    public var threads: Int?
    /// Remove identities and fold constants before planning.
    public var optimize: Bool = true
    public init(threads: Int? = nil, optimize: Bool = true) {
        self.threads = threads
        self.optimize = optimize
    }
}

/// Compiles a model once and runs it many times. The graph is cleaned (identities removed,
/// constants folded, dead nodes dropped) and every node's kernel is built up front, so an
/// unsupported op or a bad attribute is reported before any run. Plans are cached per bound
/// input shape.
public final class InferenceSession {
    public let model: Model
    /// The graph as executed (after the clean-up passes), topologically sorted.
    public let graph: Graph
    public let context: ExecutionContext

    private var slotOf: [String: Int] = [:]
    private var slotNames: [String] = []
    private var kernels: [Kernel] = []
    private var schemas: [OpSchema] = []
    private var plans: [PlanKey: ExecutionPlan] = [:]
    private let runtimeInputs: [ValueInfo]
    private let initializerSlots: [(Int, Tensor)]
    private let lock = NSLock()

    /// When true, `run` accumulates wall time per op type into `profile` (for `bench --profile`).
    public var profiling = false
    /// Op type → (calls, total milliseconds), accumulated while `profiling` is on.
    public private(set) var profile: [String: (calls: Int, milliseconds: Double)] = [:]
    public func resetProfile() { profile = [:] }

    /// Ops whose results must never be cached as constants.
    static let nondeterministicOps: Set<String> = ["RandomNormal", "RandomUniform", "RandomNormalLike",
                                                   "RandomUniformLike", "Multinomial", "Bernoulli", "Dropout"]

    public init(model: Model, options: SessionOptions = SessionOptions()) throws {
        self.model = model
        let opset = model.opset
        context = ExecutionContext(threads: options.threads)
        var g = try Passes.sorted(model.graph)
        try InferenceSession.checkSupported(g, opset: opset)
        if options.optimize {
            g = Passes.removeIdentities(g)
            g = try Passes.foldConstants(g, isFoldable: { !InferenceSession.nondeterministicOps.contains($0.opType) }) { node, inputs in
                let schema = try OpRegistry.schema(for: node, opset: opset)
                let kernel = try schema.makeKernel(node, opset)
                do { return try kernel.run(inputs, ExecutionContext.singleThreaded) } catch let e as SegFormerError {
                    throw e.prefixed(node.label)
                }
            }
        }
        graph = g
        runtimeInputs = g.runtimeInputs

        var slotOf: [String: Int] = [:]
        var slotNames: [String] = []
        func slot(_ name: String) -> Int {
            if let s = slotOf[name] { return s }
            slotOf[name] = slotNames.count
            slotNames.append(name)
            return slotNames.count - 1
        }
        var inits: [(Int, Tensor)] = []
        let inputNames = Set(runtimeInputs.map(\.name))
        for name in g.initializerOrder where !inputNames.contains(name) {
            inits.append((slot(name), g.initializers[name]!))
        }
        // Initializers also listed as graph inputs are defaults a feed may override.
        for input in g.inputs { _ = slot(input.name) }
        var kernels: [Kernel] = []
        var schemas: [OpSchema] = []
        for node in g.nodes {
            let schema = try OpRegistry.schema(for: node, opset: opset)
            do { kernels.append(try schema.makeKernel(node, opset)) } catch let e as SegFormerError {
                throw e.prefixed(node.label)
            }
            schemas.append(schema)
            for o in node.outputs where !o.isEmpty { _ = slot(o) }
        }
        self.slotOf = slotOf
        self.slotNames = slotNames
        self.kernels = kernels
        self.schemas = schemas
        initializerSlots = inits
        for o in g.outputs where slotOf[o.name] == nil {
            throw SegFormerError.invalid("graph output '\(o.name)' is not produced by any node, input or initializer")
        }
    }

    /// Every node whose op (at this opset) the runtime lacks, as "node … : reason" lines.
    public static func unsupportedNodes(_ graph: Graph, opset: Int) -> [String] {
        var problems: [String] = []
        for node in graph.nodes {
            do { _ = try OpRegistry.schema(for: node, opset: opset) } catch { problems.append("\(error)") }
        }
        return problems
    }

    static func checkSupported(_ graph: Graph, opset: Int) throws {
        let problems = unsupportedNodes(graph, opset: opset)
        guard let first = problems.first else { return }
        let more = problems.count > 1 ? " (and \(problems.count - 1) more unsupported nodes)" : ""
        if first.hasPrefix("unsupported: ") {
            throw SegFormerError.unsupported(String(first.dropFirst("unsupported: ".count)) + more)
        }
        throw SegFormerError.invalid(first + more)
    }

    /// Graph inputs the caller must feed, with their declared types.
    public var inputs: [ValueInfo] { runtimeInputs }
    public var outputs: [ValueInfo] { graph.outputs }

    // MARK: running

    /// Runs the graph. `feeds` maps input names to tensors; every non-initializer input is required.
    /// Returns every graph output by name.
    public func run(_ feeds: [String: Tensor]) throws -> [String: Tensor] {
        try validate(feeds)
        let key = PlanKey(
            shapes: runtimeInputs.map { feeds[$0.name]?.shape ?? [] },
            integerValues: runtimeInputs.map { info in
                guard let t = feeds[info.name], t.dataType.isInteger || t.dataType == .bool, t.count <= 64 else { return [] }
                return (try? t.integers()) ?? []
            })
        lock.lock()
        defer { lock.unlock() }
        var slots = [Tensor?](repeating: nil, count: slotNames.count)
        for (s, t) in initializerSlots { slots[s] = t }
        for info in graph.inputs { if let t = feeds[info.name] { slots[slotOf[info.name]!] = t } }

        if let plan = plans[key] {
            for (s, t) in plan.foldedValues { slots[s] = t }
            for step in plan.steps { try execute(step, &slots) }
        } else {
            plans[key] = try buildPlan(feeds: feeds, slots: &slots)
        }
        var result: [String: Tensor] = [:]
        for o in graph.outputs {
            guard let t = slots[slotOf[o.name]!] else {
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
        let started = profiling ? Benchmark.now() : 0
        do {
            outputs = try step.kernel.run(inputs, context)
            if profiling {
                let op = graph.nodes[step.nodeIndex].opType
                let previous = profile[op] ?? (0, 0)
                profile[op] = (previous.calls + 1, previous.milliseconds + Benchmark.now() - started)
            }
        } catch let e as SegFormerError {
            let shapes = inputs.map { $0.map { "\($0.dataType)\($0.shape)" } ?? "∅" }.joined(separator: ", ")
            throw e.prefixed("\(graph.nodes[step.nodeIndex].label) with inputs (\(shapes))")
        }
        if outputs.count < step.outputs.count, step.outputs[outputs.count...].contains(where: { $0 >= 0 }) {
            throw SegFormerError.invalid("\(graph.nodes[step.nodeIndex].label): kernel produced \(outputs.count) outputs, node expects \(step.outputs.count)")
        }
        for (i, s) in step.outputs.enumerated() where s >= 0 { slots[s] = outputs[i] }
        for s in step.release { slots[s] = nil }
    }

    /// First run for a new input binding: executes every node, marks which values depend only on
    /// constants and input shapes, keeps those as folded constants and plans the rest.
    private func buildPlan(feeds: [String: Tensor], slots: inout [Tensor?]) throws -> ExecutionPlan {
        let count = slotNames.count
        var staticValue = [Bool](repeating: false, count: count)
        var staticShape = [Bool](repeating: false, count: count)
        for (s, _) in initializerSlots { staticValue[s] = true; staticShape[s] = true }
        for info in graph.inputs {
            let s = slotOf[info.name]!
            staticShape[s] = true
            if let t = feeds[info.name] {
                // Small integer inputs are part of the plan key, so their values are fixed too.
                staticValue[s] = (t.dataType.isInteger || t.dataType == .bool) && t.count <= 64
            } else {
                staticValue[s] = true   // initializer default
            }
        }
        var all: [Step] = []
        for (i, node) in graph.nodes.enumerated() {
            let ins = node.inputs.map { $0.isEmpty ? -1 : slotOf[$0]! }
            let outs = node.outputs.map { $0.isEmpty ? -1 : slotOf[$0]! }
            all.append(Step(nodeIndex: i, kernel: kernels[i], inputs: ins, outputs: outs))
            let present = ins.filter { $0 >= 0 }
            let deterministic = !InferenceSession.nondeterministicOps.contains(node.opType)
            let isValue = deterministic && present.allSatisfy { staticValue[$0] }
            let shapeOnly = (node.opType == "Shape" || node.opType == "Size") && node.domain.isEmpty
                && present.first.map { staticShape[$0] } == true
            let shapesFixed = present.allSatisfy { staticShape[$0] }
                && schemas[i].shapeInputs.allSatisfy { k in k >= ins.count || ins[k] < 0 || staticValue[ins[k]] }
            for o in outs where o >= 0 {
                staticValue[o] = isValue || shapeOnly
                staticShape[o] = staticValue[o] || shapesFixed
            }
        }
        let plan = ExecutionPlan()
        let outputSlots = Set(graph.outputs.map { slotOf[$0.name]! })
        // Liveness over the steps that will run on every call.
        let runSteps = withReleases(all.filter { step in !step.outputs.allSatisfy { $0 < 0 || staticValue[$0] } },
                                    slotCount: count, keep: { outputSlots.contains($0) || staticValue[$0] })
        plan.steps = runSteps
        // Folded values the plan must hold: those the remaining steps read, and folded outputs.
        var neededLater = outputSlots
        for step in runSteps { for s in step.inputs where s >= 0 { neededLater.insert(s) } }
        plan.foldedNodeCount = all.count - runSteps.count

        // Execute this first run in full order, with its own liveness (the folded steps read
        // activations too, e.g. Shape). Folded values are kept in the plan.
        let firstRun = withReleases(all, slotCount: count, keep: { outputSlots.contains($0) || staticValue[$0] })
        for step in firstRun {
            try execute(step, &slots)
            for s in step.outputs where s >= 0 && staticValue[s] && neededLater.contains(s) { plan.foldedValues[s] = slots[s] }
        }
        return plan
    }

    /// `steps` with each slot released right after its last reader (or, if nothing reads it, right
    /// after its producer), except the slots `keep` holds on to.
    private func withReleases(_ steps: [Step], slotCount: Int, keep: (Int) -> Bool) -> [Step] {
        var steps = steps
        var lastUse = [Int](repeating: -1, count: slotCount)
        for (k, step) in steps.enumerated() {
            for s in step.inputs where s >= 0 { lastUse[s] = k }
            for s in step.outputs where s >= 0 && lastUse[s] < k { lastUse[s] = k }   // unread outputs die at once
        }
        for s in 0..<slotCount where lastUse[s] >= 0 && !keep(s) { steps[lastUse[s]].release.append(s) }
        return steps
    }

    private func validate(_ feeds: [String: Tensor]) throws {
        let known = Set(graph.inputs.map(\.name))
        for name in feeds.keys where !known.contains(name) {
            let expected = runtimeInputs.map(\.name).joined(separator: ", ")
            throw SegFormerError.invalid("unknown input '\(name)'; the model's inputs are: \(expected)")
        }
        var symbols: [String: (Int, String)] = [:]
        for info in runtimeInputs {
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

    /// Statistics of the plan for one binding (after it has run once).
    public var planSummary: String {
        lock.lock(); defer { lock.unlock() }
        return plans.values.map { "\($0.steps.count) nodes to run, \($0.foldedNodeCount) folded" }.joined(separator: "; ")
    }
}
