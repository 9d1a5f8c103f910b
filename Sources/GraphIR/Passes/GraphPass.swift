/// What a pass may know besides the graph: the value types Runtime's `TypeInference` found (possibly
/// symbolic shapes) and the model's opset, which decides the form of the nodes a pass writes.
public struct PassContext: Sendable {
    public var types: [String: TensorType]
    public var opset: Int
    /// What type inference knows of small integer values (shape arithmetic): their numbers, or their
    /// symbolic contents such as `[batch, -1, height, width]` for a computed Reshape target.
    public var contents: [String: [Dim]]
    public init(types: [String: TensorType], opset: Int, contents: [String: [Dim]] = [:]) {
        self.types = types
        self.opset = opset
        self.contents = contents
    }

    /// Where a pass writes an ONNX op that opset `introduced` brought: in ai.onnx ("") when the model's
    /// opset has it, else in `fusedDomain`, so the node is valid at the model's opset either way.
    public func domain(ofOpIntroducedAt introduced: Int) -> String { opset >= introduced ? "" : fusedDomain }
}

/// One named Graph → Graph rewrite of the optimizing pipeline. A pass that finds nothing to do returns
/// the graph unchanged. Passes may leave constant arithmetic (Slice, MatMul, … of initializers) and
/// dead nodes behind: the pipeline folds constants and drops dead nodes after each pass.
public struct GraphPass: Sendable {
    public let name: String
    public let rewrite: @Sendable (Graph, PassContext) throws -> Graph
    public init(name: String, rewrite: @escaping @Sendable (Graph, PassContext) throws -> Graph) {
        self.name = name
        self.rewrite = rewrite
    }
}

/// What one pass changed: the nodes it removed and added (a node is identified by its op, inputs and
/// outputs), counted per op type, after folding and dead-node removal.
public struct PassReport: Sendable, CustomStringConvertible {
    public let pass: String
    public let removed: [String: Int]
    public let added: [String: Int]

    public init(pass: String, before: Graph, after: Graph) {
        self.pass = pass
        let old = Self.nodeCounts(before), new = Self.nodeCounts(after)
        removed = Self.opsOfExcess(old, over: new)
        added = Self.opsOfExcess(new, over: old)
    }

    private static func nodeCounts(_ g: Graph) -> [String: (op: String, count: Int)] {
        g.nodes.reduce(into: [:]) { counts, n in
            let key = "\(n.opName)(\(n.inputs.joined(separator: ",")))->\(n.outputs.joined(separator: ","))"
            counts[key, default: (n.opName, 0)].count += 1
        }
    }

    /// Per op, how many more nodes `a` has than `b`.
    private static func opsOfExcess(_ a: [String: (op: String, count: Int)], over b: [String: (op: String, count: Int)]) -> [String: Int] {
        a.reduce(into: [:]) { ops, entry in
            let extra = entry.value.count - (b[entry.key]?.count ?? 0)
            if extra > 0 { ops[entry.value.op, default: 0] += extra }
        }
    }

    public var changedGraph: Bool { !removed.isEmpty || !added.isEmpty }

    /// `name: -1 Concat, -1 Conv, +3 Add, +4 Conv` or `name: no change`.
    public var description: String {
        guard changedGraph else { return "\(pass): no change" }
        func list(_ counts: [String: Int], _ sign: String) -> [String] {
            counts.sorted { $0.key < $1.key }.map { "\(sign)\($0.value) \($0.key)" }
        }
        return "\(pass): " + (list(removed, "-") + list(added, "+")).joined(separator: ", ")
    }
}

extension Graph {
    /// Op type (with its domain when not ai.onnx) → number of nodes.
    public var opCounts: [String: Int] { nodes.reduce(into: [:]) { $0[$1.opName, default: 0] += 1 } }

    /// `opCounts`, most frequent first (ties by name).
    public var opHistogram: [(op: String, count: Int)] {
        opCounts.map { ($0.key, $0.value) }.sorted { $0.count != $1.count ? $0.count > $1.count : $0.op < $1.op }
    }
}
