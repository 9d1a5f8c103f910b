import GraphIR

/// Static type inference over a graph: propagates element types and symbolic shapes from the graph
/// inputs through every op's shape rule. Values computed only from constants are evaluated (when
/// small), and the contents of shape tensors are tracked symbolically (Shape(x) → x's dims, then
/// Gather/Slice/Concat/Unsqueeze/Squeeze/Cast/arithmetic), so a Reshape to a computed shape keeps
/// `batch`, `height`, `width` — the data propagation onnxruntime's inference does.
public enum TypeInference {
    public struct Result {
        /// Inferred type per value name (graph inputs, initializers, node outputs).
        public var types: [String: TensorType]
        /// Nodes whose rule failed or is missing, with the reason (inference continues past them).
        public var unknown: [(node: String, reason: String)]
    }

    public static func infer(_ graph: Graph, opset: Int, evaluateConstantsUpTo limit: Int = 1 << 16) throws -> Result {
        let g = try Passes.sorted(graph)
        var types: [String: TensorType] = g.valueInfo
        var constants: [String: Tensor] = [:]
        for (name, t) in g.initializers {
            types[name] = TensorType(t.dataType, known: t.shape)
            constants[name] = t
        }
        for i in g.inputs { types[i.name] = i.type; if g.initializers[i.name] != nil { constants[i.name] = nil } }
        var symbolic: [String: [Dim]] = [:]
        func symbols(_ name: String) -> [Dim]? {
            if name.isEmpty { return nil }
            if let s = symbolic[name] { return s }
            if let c = constants[name], c.dataType.isInteger, c.rank <= 1, let v = try? c.integers() { return v.map { .known($0) } }
            return nil
        }
        var unknown: [(String, String)] = []
        for node in g.nodes {
            let schema: OpSchema
            do { schema = try OpRegistry.schema(for: node, opset: opset) } catch {
                unknown.append((node.label, "\(error)"))
                continue
            }
            let ins: [Tensor?] = node.inputs.map { $0.isEmpty ? nil : constants[$0] }
            // Evaluate nodes whose inputs are all small constants.
            let present = node.inputs.filter { !$0.isEmpty }
            if present.allSatisfy({ constants[$0] != nil }),
               present.reduce(0, { $0 + constants[$1]!.count }) <= limit,
               !InferenceSession.nondeterministicOps.contains(node.opType),
               let outs = try? schema.makeKernel(node, opset).run(ins, .singleThreaded) {
                for (name, t) in zip(node.outputs, outs) where !name.isEmpty {
                    types[name] = TensorType(t.dataType, known: t.shape)
                    if t.count <= limit { constants[name] = t }
                }
                continue
            }
            if node.domain.isEmpty, let (value, scalar) = try? propagate(node, types: types, symbols: symbols),
               let out = node.outputs.first {
                symbolic[out] = value
                types[out] = TensorType(.int64, scalar ? [] : [.known(value.count)])
                continue
            }
            if node.domain.isEmpty, let t = try? shapedBySymbols(node, types: types, symbols: symbols) {
                types[node.outputs[0]] = t
                continue
            }
            guard let rule = schema.inferTypes else {
                unknown.append((node.label, "op \(node.opType) has no shape rule"))
                continue
            }
            let ctx = TypeInferenceContext(node: node, opset: opset,
                                           inputTypes: node.inputs.map { $0.isEmpty ? nil : types[$0] },
                                           constantInputs: ins)
            do {
                let outs = try rule(ctx)
                for (name, t) in zip(node.outputs, outs) where !name.isEmpty {
                    if let t { types[name] = t }
                }
            } catch {
                unknown.append((node.label, "\(error)"))
            }
        }
        return Result(types: types, unknown: unknown)
    }

    // MARK: symbolic shape tensors

    /// Symbolic contents of a shape-arithmetic node's output, and whether it is a 0-d scalar.
    static func propagate(_ node: Node, types: [String: TensorType], symbols: (String) -> [Dim]?) throws -> ([Dim], Bool)? {
        func isScalar(_ name: String) -> Bool { types[name]?.shape?.isEmpty == true }
        switch node.opType {
        case "Shape":
            guard let dims = types[node.inputs[0]]?.shape else { return nil }
            let r = dims.count
            func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + r : v, 0), r) }
            let start = clamp(try node.int("start", default: 0))
            let end = clamp(try node.int("end") ?? r)
            return (start < end ? Array(dims[start..<end]) : [], false)
        case "Gather":
            guard let data = symbols(node.inputs[0]), let idx = symbols(node.inputs[1]),
                  try node.int("axis", default: 0) == 0 else { return nil }
            var out: [Dim] = []
            for i in idx {
                guard let k = i.value else { return nil }
                let j = k < 0 ? k + data.count : k
                guard j >= 0 && j < data.count else { return nil }
                out.append(data[j])
            }
            return (out, isScalar(node.inputs[1]))
        case "Unsqueeze":
            guard let v = symbols(node.inputs[0]), isScalar(node.inputs[0]) else { return nil }
            return (v, false)
        case "Squeeze":
            guard let v = symbols(node.inputs[0]), v.count == 1 else { return nil }
            return (v, true)
        case "Concat":
            var out: [Dim] = []
            for i in node.inputs { guard let v = symbols(i) else { return nil }; out += v }
            return (out, false)
        case "Cast", "Identity":
            guard let v = symbols(node.inputs[0]) else { return nil }
            if node.opType == "Cast", let to = try node.int("to"), DataType(rawValue: Int32(to))?.isInteger != true { return nil }
            return (v, isScalar(node.inputs[0]))
        case "Slice":
            guard let v = symbols(node.inputs[0]), node.inputs.count >= 3,
                  let s = symbols(node.inputs[1])?.first?.value, let e = symbols(node.inputs[2])?.first?.value else { return nil }
            if node.inputs.count > 4, let step = symbols(node.inputs[4])?.first?.value, step != 1 { return nil }
            let n = v.count
            let a = min(max(s < 0 ? s + n : s, 0), n), b = min(max(e < 0 ? e + n : e, 0), n)
            return (a < b ? Array(v[a..<b]) : [], false)
        case "Add", "Sub", "Mul", "Div":
            guard let x = symbols(node.inputs[0]), let y = symbols(node.inputs[1]) else { return nil }
            let n = max(x.count, y.count)
            guard x.count == n || x.count == 1, y.count == n || y.count == 1 else { return nil }
            let out = (0..<n).map { i in combine(node.opType, x[x.count == 1 ? 0 : i], y[y.count == 1 ? 0 : i]) }
            return (out, isScalar(node.inputs[0]) && isScalar(node.inputs[1]))
        default:
            return nil
        }
    }

    static func combine(_ op: String, _ a: Dim, _ b: Dim) -> Dim {
        if let x = a.value, let y = b.value {
            switch op {
            case "Add": return .known(x + y)
            case "Sub": return .known(x - y)
            case "Mul": return .known(x * y)
            default: return y == 0 ? .symbol("\(x)/0") : .known(Int((Double(x) / Double(y)).rounded(.down)))
            }
        }
        if op == "Mul", b.value == 1 { return a }
        if op == "Mul", a.value == 1 { return b }
        if op == "Div", b.value == 1 { return a }
        let sym: [String: String] = ["Add": "+", "Sub": "-", "Mul": "*", "Div": "/"]
        return .symbol("(\(a)\(sym[op]!)\(b))")
    }

    /// Output types of ops whose shape input has symbolic contents (Reshape, Expand, ConstantOfShape).
    static func shapedBySymbols(_ node: Node, types: [String: TensorType], symbols: (String) -> [Dim]?) throws -> TensorType? {
        switch node.opType {
        case "Reshape":
            guard let input = types[node.inputs[0]], let target = symbols(node.inputs[1]) else { return nil }
            let allowZero = try node.int("allowzero", default: 0) == 1
            var out: [Dim] = []
            var inferred: Int?
            for (i, d) in target.enumerated() {
                if d.value == 0 && !allowZero {
                    guard let src = input.shape, i < src.count else { return nil }
                    out.append(src[i])
                } else if d.value == -1 {
                    inferred = i
                    out.append(.known(-1))
                } else {
                    out.append(d)
                }
            }
            if let k = inferred {
                // The remaining dimension: input element count over the others, when it simplifies.
                guard let src = input.shape else { return nil }
                let inKnown = src.compactMap(\.value).reduce(1, *)
                let inSyms = src.filter { $0.value == nil }.map(\.description)
                let others = out.enumerated().filter { $0.offset != k }.map(\.element)
                let outKnown = others.compactMap(\.value).reduce(1, *)
                var syms = inSyms
                for o in others where o.value == nil {
                    guard let j = syms.firstIndex(of: o.description) else { out[k] = .symbol("\(node.name)#\(k)"); return TensorType(input.dataType, out) }
                    syms.remove(at: j)
                }
                guard outKnown > 0, inKnown % outKnown == 0 else { return nil }
                let q = inKnown / outKnown
                out[k] = syms.isEmpty ? .known(q) : .symbol(((q == 1 ? [] : [String(q)]) + syms).joined(separator: "*"))
            }
            return TensorType(input.dataType, out)
        case "Expand":
            guard let input = types[node.inputs[0]], let shape = input.shape, let target = symbols(node.inputs[1]) else { return nil }
            let r = max(shape.count, target.count)
            let a = Array(repeating: Dim.known(1), count: r - shape.count) + shape
            let b = Array(repeating: Dim.known(1), count: r - target.count) + target
            return TensorType(input.dataType, zip(a, b).map { x, y in x.value == 1 ? y : x })
        case "Resize":
            guard let input = types[node.inputs[0]], node.inputs.count >= 4, let sizes = symbols(node.inputs[3]),
                  node.attributes["axes"] == nil, input.shape.map({ $0.count == sizes.count }) ?? true else { return nil }
            return TensorType(input.dataType, sizes)
        case "ConstantOfShape":
            guard let target = symbols(node.inputs[0]) else { return nil }
            let type = try node.tensor("value")?.dataType ?? .float
            return TensorType(type, target)
        default:
            return nil
        }
    }
}
