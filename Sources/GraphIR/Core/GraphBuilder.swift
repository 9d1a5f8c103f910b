/// Appends nodes to a graph with fresh, unique value names: how autodiff, the loss and the native
/// model builder write IR.
public final class GraphBuilder {
    public private(set) var graph: Graph
    private var used: Set<String>
    private var counter = 0
    /// Prefix of generated node and value names, e.g. "grad".
    public let prefix: String

    public init(graph: Graph, prefix: String = "g") {
        self.graph = graph
        self.prefix = prefix
        var names = Set(graph.inputs.map(\.name)).union(graph.initializers.keys)
        for n in graph.nodes { names.formUnion(n.outputs); names.insert(n.name) }
        used = names
    }

    /// A name not used anywhere in the graph yet, derived from `hint`.
    public func freshName(_ hint: String) -> String {
        var candidate = "\(prefix)/\(hint)"
        while used.contains(candidate) {
            counter += 1
            candidate = "\(prefix)/\(hint)_\(counter)"
        }
        used.insert(candidate)
        return candidate
    }

    /// Adds a node and returns its output value names.
    @discardableResult
    public func add(_ opType: String, domain: String = "", _ inputs: [String], attributes: [String: Attribute] = [:],
                    outputs: Int = 1, name: String? = nil) -> [String] {
        let nodeName = freshName(name ?? opType)
        let outs = (0..<outputs).map { _ in freshName("\(name ?? opType)_out") }
        graph.nodes.append(Node(name: nodeName, opType: opType, domain: domain, inputs: inputs, outputs: outs,
                                attributes: attributes))
        return outs
    }

    /// Adds a single-output node and returns its output name.
    public func add1(_ opType: String, domain: String = "", _ inputs: [String], attributes: [String: Attribute] = [:],
                     name: String? = nil) -> String {
        add(opType, domain: domain, inputs, attributes: attributes, outputs: 1, name: name)[0]
    }

    /// Adds a node writing an existing value name: how a pass gives that value a new producer (the
    /// pass removes the old one).
    public func add(_ opType: String, domain: String = "", _ inputs: [String], attributes: [String: Attribute] = [:],
                    writing output: String) {
        add(opType, domain: domain, inputs, attributes: attributes, writing: [output])
    }

    /// Adds a node writing existing value names ("" for an optional output nothing reads).
    public func add(_ opType: String, domain: String = "", _ inputs: [String], attributes: [String: Attribute] = [:],
                    writing outputs: [String]) {
        graph.nodes.append(Node(name: freshName(opType), opType: opType, domain: domain, inputs: inputs, outputs: outputs,
                                attributes: attributes))
    }

    /// Adds a constant tensor as an initializer and returns its name.
    public func constant(_ tensor: Tensor, name hint: String = "const") -> String {
        let name = freshName(hint)
        graph.setInitializer(name, tensor)
        return name
    }

    public func scalar(_ value: Float, name hint: String = "scalar") -> String {
        constant(Tensor(scalar: value), name: hint)
    }

    public func int64s(_ values: [Int], name hint: String = "ints") -> String {
        constant(Tensor(values.map { Int64($0) }, shape: [values.count]), name: hint)
    }

    /// Marks a value as a graph output.
    public func addOutput(_ name: String, type: TensorType) {
        graph.outputs.append(ValueInfo(name: name, type: type))
    }

    /// Replaces the whole graph (for passes that rewrite in place).
    public func replaceGraph(_ g: Graph) {
        graph = g
        for n in g.nodes { used.formUnion(n.outputs); used.insert(n.name) }
        used.formUnion(g.initializers.keys)
    }
}
