/// A graph being rewritten by a pass: who produces each value and how often it is read, which values
/// are constants, their types, and a builder for replacement nodes. A rewrite gives a value a new
/// producer (`replace`); the nodes that only fed the old producer become dead and the pipeline's
/// dead-node removal drops them.
final class GraphRewriter {
    let context: PassContext
    private let graph: Graph
    private let producer: [String: Int]
    private let uses: [String: Int]
    /// The reading node of each value read by exactly one node (and not a graph output).
    private let soleReaders: [String: Int]
    private let feedable: Set<String>
    private let builder: GraphBuilder
    private var replaced = Set<Int>()

    init(_ graph: Graph, context: PassContext, pass: String) {
        self.graph = graph
        self.context = context
        producer = graph.producers()
        var uses: [String: Int] = [:]
        for n in graph.nodes { for i in n.inputs where !i.isEmpty { uses[i, default: 0] += 1 } }
        for o in graph.outputs { uses[o.name, default: 0] += 1 }
        self.uses = uses
        var readers: [String: Int] = [:]
        for (i, n) in graph.nodes.enumerated() { for v in Set(n.inputs) where uses[v] == 1 { readers[v] = i } }
        soleReaders = readers
        feedable = Set(graph.inputs.map(\.name))
        builder = GraphBuilder(graph: graph, prefix: pass)
    }

    var nodes: [Node] { graph.nodes }

    /// The node producing `value`, if it is `opType` (ai.onnx) and `value` has no other reader: a
    /// pattern may then consume it whole.
    func soleProducer(of value: String, _ opType: String, domain: String = "") -> Node? {
        producer(of: value, opType, readers: 1, domain: domain)
    }

    /// The node reading `value` (with its index), if it is `opType` (in `domain`, ai.onnx by default)
    /// and the only reader, so a pattern may take `value` into the node it writes.
    func soleReader(of value: String, _ opType: String, domain: String = "") -> (index: Int, node: Node)? {
        guard let i = soleReaders[value], !replaced.contains(i) else { return nil }
        let node = graph.nodes[i]
        return node.domain == domain && node.opType == opType ? (i, node) : nil
    }

    /// The node reading `value` (with its index), if it is `opType` and `value`'s other readers are
    /// only plain Shape nodes (as `producerReadForShape` from the other side). A pattern taking `value`
    /// into the node it writes must give those Shape nodes a new source (`rewireShapeReaders(_:to:)`).
    func readerBesideShapes(of value: String, _ opType: String) -> (index: Int, node: Node, shapeReaders: [Int])? {
        let readers = graph.nodes.indices.filter { graph.nodes[$0].inputs.contains(value) }
        let shapes = readers.filter { isPlainShape(graph.nodes[$0], of: value) }
        // Every use is a distinct reader (no node reads it twice, it is no graph output).
        guard readers.count == shapes.count + 1, uses[value] == readers.count,
              let i = readers.first(where: { !shapes.contains($0) }), !replaced.contains(i) else { return nil }
        let node = graph.nodes[i]
        return node.domain.isEmpty && node.opType == opType ? (i, node, shapes) : nil
    }

    /// The next node of a pattern that takes `value` into the node it writes: `value`'s sole reader if
    /// it is `opType`, or, with `besideShapes` (a gradient graph, whose backward reads the shapes of
    /// forward values), its reader besides plain Shape nodes, which the caller must rewire
    /// (`rewireShapeReaders`) to a value of the same shape.
    func patternReader(of value: String, _ opType: String, besideShapes: Bool) -> (index: Int, node: Node, shapeReaders: [Int])? {
        besideShapes ? readerBesideShapes(of: value, opType) : soleReader(of: value, opType).map { ($0.index, $0.node, []) }
    }

    private func isPlainShape(_ n: Node, of value: String) -> Bool {
        n.domain.isEmpty && n.opType == OpType.shape && n.inputs == [value] && n.attributes.isEmpty
    }

    /// The node producing `value`, if it is `opType` and `value` has exactly `readers` readers: a
    /// pattern that is itself all of those readers may consume it whole (e.g. LayerNorm's centred
    /// input, read by its square and by the quotient).
    func producer(of value: String, _ opType: String, readers: Int, domain: String = "") -> Node? {
        producerIndex(of: value, opType, readers: readers, domain: domain).map { graph.nodes[$0] }
    }

    /// The node producing `value`, if it is `opType`, however many nodes read `value`: for a pattern
    /// that reads the node's input in its place and leaves the node to its other readers.
    func producer(of value: String, _ opType: String) -> Node? {
        guard let i = producer[value], !replaced.contains(i) else { return nil }
        let node = graph.nodes[i]
        return node.domain.isEmpty && node.opType == opType ? node : nil
    }

    /// How many times `value` is read (by nodes, and as a graph output).
    func readCount(of value: String) -> Int { uses[value] ?? 0 }

    /// The index of `producer(of:_:readers:domain:)`'s node, for a pattern that replaces it.
    func producerIndex(of value: String, _ opType: String, readers: Int = 1, domain: String = "") -> Int? {
        guard uses[value] == readers, let i = producer[value], !replaced.contains(i) else { return nil }
        let node = graph.nodes[i]
        return node.domain == domain && node.opType == opType ? i : nil
    }

    /// The node producing `value`, if it is `opType` and `value`'s other readers are only plain Shape
    /// nodes (exporters read the shape of a value to compute a later Reshape or Resize target). A
    /// pattern consuming the value must then give those Shape nodes a new source (`rewireShapeReaders`).
    func producerReadForShape(of value: String, _ opType: String) -> (node: Node, shapeReaders: [Int])? {
        let readers = graph.nodes.indices.filter { isPlainShape(graph.nodes[$0], of: value) && !replaced.contains($0) }
        return producer(of: value, opType, readers: 1 + readers.count).map { ($0, readers) }
    }

    /// Replaces Shape nodes of a value that a rewrite removed by Shape nodes of `replacement`, a value
    /// of the same shape.
    func rewireShapeReaders(_ readers: [Int], to replacement: String) {
        for i in readers {
            replace(i)
            add(OpType.shape, [replacement], writing: graph.nodes[i].outputs[0])
        }
    }

    /// Replaces Shape nodes of an NCHW value that a rewrite removed by the shape of `replacement`, a
    /// value of the same shape except for `channels` channels in place of its own.
    func rewireShapeReaders(_ readers: [Int], to replacement: String, channels: Int) {
        let shape = readers.isEmpty ? "" : add(OpType.shape, [replacement])
        for i in readers {
            replace(i)
            replacingChannels(of: shape, rank: 4, with: channels, writing: graph.nodes[i].outputs[0])
        }
    }

    /// Replaces Shape nodes of a value that a rewrite removed by the shape of `replacement`, whose axes
    /// are the removed value's in another order: Shape(removed)[i] = Shape(replacement)[perm[i]].
    func rewireShapeReaders(_ readers: [Int], to replacement: String, permutation perm: [Int]) {
        guard !readers.isEmpty else { return }
        let shape = add(OpType.shape, [replacement]), order = int64s(perm)
        for i in readers {
            replace(i)
            add(OpType.gather, [shape, order], attributes: ["axis": .int(0)], writing: graph.nodes[i].outputs[0])
        }
    }

    /// A constant: an initializer a feed cannot replace. (Training graphs feed their parameters, so
    /// patterns that need a constant's value never rewrite them; patterns that only need a weight's
    /// shape ask `knownShape`.)
    func constant(_ value: String?) -> Tensor? {
        guard let value, !feedable.contains(value) else { return nil }
        return graph.initializers[value]
    }

    /// The number a float constant of one element holds (a 0-d or one-element 1-d tensor, which
    /// broadcasts against a tensor of rank ≥ 1 without changing its shape), with its element type.
    func scalar(_ value: String?) -> (value: Double, type: DataType)? {
        guard let t = constant(value), t.count == 1, t.rank <= 1, t.dataType == .float || t.dataType == .double,
              let v = try? t.doubles().first else { return nil }
        return (v, t.dataType)
    }

    /// Whether `value` is a float constant of one element holding `expected` as its element type writes
    /// it (float32 √2 is 1.4142135).
    func isScalar(_ value: String?, _ expected: Double) -> Bool {
        guard let (v, type) = scalar(value) else { return false }
        return type == .float ? v == Double(Float(expected)) : v == expected
    }

    /// Whether `value` is a float constant of one value per channel of an NCHW `shape` — [C, 1, 1] or
    /// [1, C, 1, 1] — as a folded BatchNorm's shift or a split conv's bias is added.
    func isChannelBias(_ value: String, of shape: [Dim]) -> Bool {
        guard shape.count == 4, let c = shape[1].value, let t = constant(value), t.dataType == .float else { return false }
        return t.shape == [c, 1, 1] || t.shape == [1, c, 1, 1]
    }

    /// The value's (possibly symbolic) shape, when its rank is known.
    func shape(_ value: String) -> [Dim]? { context.types[value]?.shape }

    /// The value's shape when every dimension is known: a constant's, or a computed or fed tensor's (a
    /// training graph's parameters) as type inference found it. nil for an initializer that a feed may
    /// replace: the planner folds the nodes reading it with its default value, so a rewrite that moves
    /// it into foldable nodes would ignore the feed; such a value stays where the graph has it.
    func knownShape(_ value: String?) -> [Int]? {
        guard let value else { return nil }
        if let t = constant(value) { return t.shape }
        if graph.initializers[value] != nil { return nil }
        guard let dims = shape(value) else { return nil }
        let known = dims.compactMap(\.value)
        return known.count == dims.count ? known : nil
    }

    /// The channel count (dim 1) of an NCHW value: from its inferred type or, where inference left it
    /// symbolic (a Reshape to a computed shape with a -1), from its source — through a Resize that
    /// keeps N and C, to a Reshape of a [B, K, n] tensor into [B, ·, h, w], which has K channels
    /// whenever h·w = n. A rewrite relying on that writes a convolution or Reshape with exactly K
    /// channels, which checks it at run time (a mismatch is an error, never a wrong result).
    func channels(of value: String) -> Int? {
        guard let dims = shape(value), dims.count == 4 else { return nil }
        if let c = dims[1].value { return c }
        guard let i = producer[value], graph.nodes[i].domain.isEmpty else { return nil }
        let node = graph.nodes[i]
        guard let source = shape(node.inputs[0]) else { return nil }
        switch node.opType {
        case OpType.resize where source.count == 4 && source[1] == dims[1]: return channels(of: node.inputs[0])
        case OpType.reshape where source.count == 3 && source[0] == dims[0]: return source[1].value
        default: return nil
        }
    }

    /// Replaces the node at `index`: the caller adds nodes writing its outputs.
    func replace(_ index: Int) { replaced.insert(index) }

    // MARK: writing nodes

    func add(_ opType: String, domain: String = "", _ inputs: [String], attributes: [String: Attribute] = [:]) -> String {
        builder.add1(opType, domain: domain, inputs, attributes: attributes)
    }

    func add(_ opType: String, domain: String = "", _ inputs: [String], attributes: [String: Attribute] = [:],
             writing output: String) {
        builder.add(opType, domain: domain, inputs, attributes: attributes, writing: output)
    }

    func add(_ opType: String, domain: String = "", _ inputs: [String], attributes: [String: Attribute] = [:],
             writing outputs: [String]) {
        builder.add(opType, domain: domain, inputs, attributes: attributes, writing: outputs)
    }

    func int64s(_ values: [Int]) -> String { builder.int64s(values, name: "shape") }

    /// `value[from..<to]` along `axis` (Slice with inputs, opset ≥ 10).
    func slice(_ value: String, axis: Int, _ from: Int, _ to: Int) -> String {
        add(OpType.slice, [value, int64s([from]), int64s([to]), int64s([axis])])
    }

    /// The 1-D int64 `shape` (of `rank` entries) with entry 1 — the channel count of an NCHW shape —
    /// replaced by `channels`: shape arithmetic that folds once `shape` is known.
    func replacingChannels(of shape: String, rank: Int, with channels: Int) -> String {
        add(OpType.concat, channelsReplaced(shape, rank: rank, channels), attributes: ["axis": .int(0)])
    }

    func replacingChannels(of shape: String, rank: Int, with channels: Int, writing output: String) {
        add(OpType.concat, channelsReplaced(shape, rank: rank, channels), attributes: ["axis": .int(0)], writing: output)
    }

    private func channelsReplaced(_ shape: String, rank: Int, _ channels: Int) -> [String] {
        [slice(shape, axis: 0, 0, 1), int64s([channels]), slice(shape, axis: 0, 2, rank)]
    }

    /// terms[0] + terms[1] + … (at least two terms), left to right, the last Add writing `output`.
    func sum(_ terms: [String], writing output: String) {
        let partial = terms.dropLast().dropFirst().reduce(terms[0]) { add(OpType.add, [$0, $1]) }
        add(OpType.add, [partial, terms.last!], writing: output)
    }

    /// The rewritten graph: replaced nodes gone, new nodes appended (the pipeline sorts and cleans up).
    func result() -> Graph {
        var g = builder.graph
        g.nodes = g.nodes.indices.filter { !replaced.contains($0) }.map { g.nodes[$0] }
        return g
    }
}

extension GraphPass {
    /// A pass that offers every ai.onnx node of `opType` (with its index) to `rewrite`, which replaces
    /// it or leaves it.
    static func overNodes(_ name: String, of opType: String,
                          _ rewrite: @escaping @Sendable (Int, Node, GraphRewriter) -> Void) -> GraphPass {
        GraphPass(name: name) { graph, context in
            let r = GraphRewriter(graph, context: context, pass: name)
            for (index, node) in r.nodes.enumerated() where node.domain.isEmpty && node.opType == opType {
                rewrite(index, node, r)
            }
            return r.result()
        }
    }

    /// A pass that offers every 1×1 convolution (`PointwiseConv`) of a graph at `minimumOpset` or later
    /// (the opset of the nodes the passes write) to `rewrite`, which replaces it or leaves it.
    static func overPointwiseConvs(_ name: String, minimumOpset: Int,
                                   _ rewrite: @escaping @Sendable (PointwiseConv, GraphRewriter) -> Void) -> GraphPass {
        let pass = overNodes(name, of: OpType.conv) { index, _, r in
            if let conv = PointwiseConv(index, in: r) { rewrite(conv, r) }
        }
        return GraphPass(name: name) { graph, context in
            context.opset >= minimumOpset ? try pass.rewrite(graph, context) : graph
        }
    }
}

/// A 1×1 convolution that is a pure channel map: 2-D, group 1, stride 1, no padding, a weight of known
/// shape [M, C, 1, 1], so `Conv(x, W)[n, m, h, w] = Σ_c W[m, c] · x[n, c, h, w]` (dilation is irrelevant
/// for a 1×1 kernel). That is linear in x whatever W holds, so the rewrites over it hold for a constant
/// weight (its merged forms fold once) and for a fed one alike: a training graph's parameters, whose
/// merged forms the rewritten graph computes each run and through which autodiff reaches W itself.
struct PointwiseConv {
    let node: Node
    let index: Int
    var input: String { node.inputs[0] }
    var weight: String { node.inputs[1] }
    var bias: String? { node.input(2) }
    let outChannels: Int
    let inChannels: Int

    init?(_ index: Int, in rewriter: GraphRewriter) {
        let node = rewriter.nodes[index]
        guard node.domain.isEmpty, node.opType == OpType.conv, node.inputs.count >= 2,
              let w = rewriter.knownShape(node.input(1)), w.count == 4, w[2] == 1, w[3] == 1,
              (try? node.int("group", default: 1)) == 1,
              ["NOTSET", "VALID"].contains((try? node.string("auto_pad", default: "NOTSET")) ?? ""),
              ((try? node.ints("strides")) ?? []).allSatisfy({ $0 == 1 }),
              ((try? node.ints("pads")) ?? []).allSatisfy({ $0 == 0 }) else { return nil }
        if let b = node.input(2), rewriter.knownShape(b) != [w[0]] { return nil }
        self.node = node
        self.index = index
        outChannels = w[0]
        inChannels = w[1]
    }
}

extension Node {
    /// A commutative binary node's operands in both orders.
    var operandOrders: [(String, String)] { inputs.count == 2 ? [(inputs[0], inputs[1]), (inputs[1], inputs[0])] : [] }
}
