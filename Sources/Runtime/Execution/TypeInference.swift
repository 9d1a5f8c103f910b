import GraphIR

/// Static type inference over a graph: propagates element types and symbolic shapes from the graph
/// inputs through every op's own shape rule (`OpSchema.inferTypes`). Values computed only from
/// constants are evaluated (when small), and the contents of shape tensors are tracked symbolically
/// through each op's symbolic-value rule (`OpSchema.symbolicValue`: Shape(x) → x's dims, then
/// Gather/Slice/Concat/Unsqueeze/Cast/arithmetic), so a Reshape to a computed shape keeps `batch`,
/// `height`, `width` — the data propagation onnxruntime's inference does.
///
/// With concrete input shapes (a planner binding a run's inputs) the same walk yields concrete shapes
/// for every value, and shape arithmetic collapses to constants.
public enum TypeInference {
    public struct Result {
        /// Inferred type per value name (graph inputs, initializers, node outputs).
        public var types: [String: TensorType]
        /// Values known before any run: initializers, given constants, and what was evaluated from them.
        public var constants: [String: Tensor]
        /// Nodes whose rule failed or is missing, with the reason (inference continues past them).
        public var unknown: [(node: String, reason: String)]
        /// The symbolic contents of shape tensors not known as numbers, e.g. `[batch, -1, height, width]`.
        public var symbolic: [String: [Dim]] = [:]

        /// The contents of a small 1-D integer value as dims: its numbers when known, else its symbolic
        /// contents; nil when neither is known.
        public func contents(of value: String) -> [Dim]? {
            if let c = constants[value], c.dataType.isInteger, c.rank <= 1, let v = try? c.integers() { return v.map { .known($0) } }
            return symbolic[value]
        }
    }

    /// Infers the types of `graph`'s values. `inputTypes` overrides the declared type of graph inputs
    /// (e.g. the concrete shapes of a run); `constants` adds known values (e.g. small integer feeds).
    /// Constant results up to `limit` elements are evaluated with the op's kernel.
    public static func infer(_ graph: Graph, opset: Int, inputTypes: [String: TensorType] = [:],
                             constants given: [String: Tensor] = [:],
                             evaluateConstantsUpTo limit: Int = 1 << 16) throws -> Result {
        let g = try Passes.sorted(graph)
        var types: [String: TensorType] = g.valueInfo
        var constants: [String: Tensor] = [:]
        for (name, t) in g.initializers {
            types[name] = TensorType(t.dataType, known: t.shape)
            constants[name] = t
        }
        // An initializer also listed as a graph input is only a default: a feed may replace it.
        for i in g.inputs {
            types[i.name] = inputTypes[i.name] ?? i.type
            if g.initializers[i.name] != nil { constants[i.name] = nil }
        }
        for (name, t) in given { constants[name] = t; types[name] = TensorType(t.dataType, known: t.shape) }

        var symbolic: [String: [Dim]] = [:]
        var unknown: [(String, String)] = []
        for node in g.nodes {
            let schema: OpSchema
            do { schema = try OpRegistry.schema(for: node, opset: opset) } catch {
                unknown.append((node.label, "\(error)"))
                continue
            }
            let ins: [Tensor?] = node.inputs.map { $0.isEmpty ? nil : constants[$0] }
            let ctx = TypeInferenceContext(node: node, opset: opset,
                                           inputTypes: node.inputs.map { $0.isEmpty ? nil : types[$0] },
                                           constantInputs: ins,
                                           symbolicInputs: node.inputs.map { $0.isEmpty ? nil : symbolic[$0] })
            // Evaluate nodes whose inputs are all small constants — unless the shape rule says a result
            // is large (a tiny ConstantOfShape input can ask for gigabytes).
            let present = node.inputs.filter { !$0.isEmpty }
            if schema.isDeterministic, present.allSatisfy({ constants[$0] != nil }),
               present.reduce(0, { $0 + constants[$1]!.count }) <= limit,
               !TypeInference.mayExceed(limit, schema, ctx),
               let outs = try? schema.makeKernel(node, opset).run(ins, .singleThreaded) {
                for (name, t) in zip(node.outputs, outs) where !name.isEmpty {
                    types[name] = TensorType(t.dataType, known: t.shape)
                    if t.count <= limit { constants[name] = t }
                }
                continue
            }
            guard let rule = schema.inferTypes else {
                unknown.append((node.label, "op \(node.opType) has no shape rule"))
                continue
            }
            do {
                let outs = try rule(ctx)
                for (name, t) in zip(node.outputs, outs) where !name.isEmpty {
                    if let t { types[name] = t }
                }
            } catch {
                unknown.append((node.label, "\(error)"))
                continue
            }
            guard let out = node.outputs.first, !out.isEmpty,
                  let value = (try? schema.symbolicValue?(ctx)) ?? nil else { continue }
            let type = types[out] ?? TensorType(.int64, [.known(value.count)])
            if type.dataType == .int64, let numbers = TensorType(.int64, value).knownShape,
               let shape = type.knownShape, Tensor.elementCount(shape) == numbers.count {
                // Shape arithmetic whose contents are all known (a run's shapes are bound): a constant.
                constants[out] = Tensor(numbers.map { Int64($0) }, shape: shape)
            } else {
                symbolic[out] = value
            }
            if types[out] == nil { types[out] = type }
        }
        return Result(types: types, constants: constants, unknown: unknown, symbolic: symbolic)
    }

    /// Whether the shape rule gives some output more than `elements` elements (or a count that
    /// overflows). Unknown results do not count: the caller decides for those.
    static func mayExceed(_ elements: Int, _ schema: OpSchema, _ ctx: TypeInferenceContext) -> Bool {
        guard let rule = schema.inferTypes, let outs = try? rule(ctx) else { return false }
        return outs.contains { type in
            guard let shape = type?.knownShape else { return false }
            return (Tensor.checkedElementCount(shape) ?? .max) > elements
        }
    }
}
