import GraphIR

/// Options for compiling a model.
public struct SessionOptions: Sendable {
    /// Intra-op threads (default: all cores).
    public var threads: Int?
    /// Remove identities and fold constants before planning.
    public var optimize: Bool = true
    /// Run the optimizing passes (`passes`) after the clean-up; needs `optimize`.
    /// Off for A/B comparisons (`segformer bench --no-optimize`).
    public var optimizingPasses: Bool = true
    /// Which passes: an inference graph's (`OptimizingPipeline.passes`) by default; a training session
    /// gives its gradient graph `OptimizingPipeline.gradientGraphPasses`.
    public var passes: [GraphPass] = OptimizingPipeline.passes
    /// Let kernels prepare their constant inputs once (`ConstantPreparedKernel`: GEMM weights packed
    /// for oneDNN). Off for A/B comparisons (`segformer bench --no-pack-weights`).
    public var packWeights: Bool = true
    public init(threads: Int? = nil, optimize: Bool = true, optimizingPasses: Bool = true,
                passes: [GraphPass] = OptimizingPipeline.passes, packWeights: Bool = true) {
        self.threads = threads
        self.optimize = optimize
        self.optimizingPasses = optimizingPasses
        self.passes = passes
        self.packWeights = packWeights
    }
}

/// A model made ready to plan: the graph after the clean-up passes (identities removed, constants
/// folded, dead nodes dropped) and the optimizing passes (`OptimizingPipeline`, or the list given), topologically sorted, every node's kernel built (so an unsupported op
/// or a bad attribute is reported before any run), and every value given a slot number.
public struct CompiledModel {
    public let model: Model
    /// The graph as executed (after the clean-up and optimizing passes), topologically sorted.
    public let graph: Graph
    /// What the optimizing passes changed (nil when they did not run).
    public let optimization: OptimizingPipeline.Report?
    public var opset: Int { model.opset }
    let kernels: [Kernel]
    let schemas: [OpSchema]
    /// Value name → slot, and back.
    let slotOf: [String: Int]
    let slotNames: [String]
    /// Graph inputs a caller must feed (graph inputs that are not initializers).
    let runtimeInputs: [ValueInfo]
    /// Initializers with their slots (an initializer also listed as a graph input is a default a feed
    /// may override; it is not here).
    let initializerSlots: [(slot: Int, value: Tensor)]

    public init(model: Model, optimize: Bool = true, optimizingPasses: Bool = true,
                passes: [GraphPass] = OptimizingPipeline.passes, packWeights: Bool = true) throws {
        self.model = model
        let opset = model.opset
        var g = try Passes.sorted(model.graph)
        try OpRegistry.checkSupported(g, opset: opset)
        var report: OptimizingPipeline.Report?
        if optimize {
            g = try OptimizingPipeline.foldConstants(Passes.removeIdentities(g), opset: opset)
            if optimizingPasses { (g, report) = try OptimizingPipeline.run(g, opset: opset, passes: passes) }
        }
        optimization = report
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
        for input in g.inputs { _ = slot(input.name) }
        var kernels: [Kernel] = []
        var schemas: [OpSchema] = []
        for node in g.nodes {
            let schema = try OpRegistry.schema(for: node, opset: opset)
            do {
                let kernel = try schema.makeKernel(node, opset)
                if packWeights, let preparing = kernel as? ConstantPreparedKernel {
                    // Initializers a feed cannot override are constants for every run.
                    kernels.append(preparing.prepare(node.inputs.map { inputNames.contains($0) ? nil : g.initializers[$0] }))
                } else {
                    kernels.append(kernel)
                }
            } catch let e as SegFormerError {
                throw e.prefixed(node.label)
            }
            schemas.append(schema)
            for o in node.outputs where !o.isEmpty { _ = slot(o) }
        }
        for o in g.outputs where slotOf[o.name] == nil {
            throw SegFormerError.invalid("graph output '\(o.name)' is not produced by any node, input or initializer")
        }
        self.slotOf = slotOf
        self.slotNames = slotNames
        self.kernels = kernels
        self.schemas = schemas
        initializerSlots = inits
    }

    /// Slots of the graph outputs, in order.
    var outputSlots: [Int] { graph.outputs.map { slotOf[$0.name]! } }
}

extension OpRegistry {
    /// A node whose op (at the model's opset) the runtime lacks, with the reason.
    public struct UnsupportedNode {
        public let node: Node
        public let error: SegFormerError
    }

    /// Every node whose op (at this opset) the runtime lacks or whose arity is wrong.
    public static func unsupportedNodes(_ graph: Graph, opset: Int) -> [UnsupportedNode] {
        graph.nodes.compactMap { node in
            do { _ = try schema(for: node, opset: opset); return nil } catch let e as SegFormerError {
                return UnsupportedNode(node: node, error: e)
            } catch {
                return UnsupportedNode(node: node, error: .invalid("\(node.label): \(error)"))
            }
        }
    }

    /// Throws the first unsupported node's error, counting the others.
    static func checkSupported(_ graph: Graph, opset: Int) throws {
        let problems = unsupportedNodes(graph, opset: opset)
        guard let first = problems.first else { return }
        if problems.count == 1 { throw first.error }
        let more = "(and \(problems.count - 1) more unsupported nodes)"
        switch first.error {
        case .unsupported(let m): throw SegFormerError.unsupported("\(m) \(more)")
        case .invalid(let m), .io(let m): throw SegFormerError.invalid("\(m) \(more)")
        }
    }
}

extension CompiledModel {
    /// A concrete shape for every runtime input: `given` where present, else the declared shape,
    /// which must then be fully known.
    public func inputShapes(_ given: [String: [Int]]) throws -> [String: [Int]] {
        let names = Set(runtimeInputs.map(\.name))
        for name in given.keys where !names.contains(name) {
            throw SegFormerError.invalid("unknown input '\(name)'; the model's inputs are: \(runtimeInputs.map(\.name).joined(separator: ", "))")
        }
        var shapes: [String: [Int]] = [:]
        for info in runtimeInputs {
            if let s = given[info.name] {
                if let declared = info.type.shape {
                    guard declared.count == s.count, zip(declared, s).allSatisfy({ $0.value == nil || $0.value == $1 }) else {
                        throw SegFormerError.invalid("input '\(info.name)': shape \(s) does not fit the declared \(info.type)")
                    }
                }
                shapes[info.name] = s
            } else if let known = info.type.knownShape {
                shapes[info.name] = known
            } else {
                throw SegFormerError.invalid("input '\(info.name)' has the symbolic shape \(info.type): give its shape (e.g. --input-shape \(info.name)=1x3x512x512)")
            }
        }
        return shapes
    }
}
