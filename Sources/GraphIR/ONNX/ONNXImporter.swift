import CONNX
import Foundation

/// Reads ONNX models and tensor files (protobuf, parsed by protobuf-c) into the GraphIR types.
///
/// Bad files never crash the importer: malformed protobuf, lying sizes, dangling value names and
/// unsafe external-data paths are reported as `SegFormerError.invalid` naming the file and the
/// tensor/node/value at fault; valid features this runtime lacks are `SegFormerError.unsupported`.
public enum ONNXImporter {
    /// Deepest protobuf message nesting accepted (a graph inside an If inside a Loop … costs 3 levels
    /// per subgraph). Checked before parsing so that the recursive parser cannot exhaust the stack.
    static let maxNesting = 96

    // MARK: public API

    /// Loads a model file; external data is resolved relative to the model's folder.
    public static func load(contentsOf path: String) throws -> Model {
        let bytes = try readFile(path)
        let dir = (path as NSString).deletingLastPathComponent
        return try load(bytes: bytes, baseDirectory: dir.isEmpty ? "." : dir, source: path)
    }

    /// Loads a model from serialized bytes. `baseDirectory` is where external data files live (nil:
    /// the model must not use external data).
    public static func load(bytes: [UInt8], baseDirectory: String?) throws -> Model {
        try load(bytes: bytes, baseDirectory: baseDirectory, source: "<memory>")
    }

    /// Reads a serialized TensorProto (`input_0.pb` / `output_0.pb` as in the ONNX backend tests).
    public static func readTensorFile(_ path: String) throws -> (name: String, tensor: Tensor) {
        let bytes = try readFile(path)
        let dir = (path as NSString).deletingLastPathComponent
        return try readTensor(bytes: bytes, baseDirectory: dir.isEmpty ? "." : dir, source: path)
    }

    /// Parses a serialized TensorProto.
    public static func readTensor(bytes: [UInt8], baseDirectory: String? = nil,
                                  source: String = "<memory>") throws -> (name: String, tensor: Tensor) {
        let parsed = try unpack(bytes, "tensor", source: source,
                                checkNesting: connx_check_tensor_nesting, unpack: onnx__tensor_proto__unpack)
        defer { onnx__tensor_proto__free_unpacked(parsed, nil) }
        do {
            let resolver = ExternalDataResolver(baseDirectory: baseDirectory)
            return try tensor(from: UnsafePointer(parsed), externalData: resolver)
        } catch let e as SegFormerError {
            throw e.prefixed(source)
        }
    }

    // MARK: reading

    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw SegFormerError.io("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SegFormerError.io("cannot stat \(path): \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw SegFormerError.io("\(path) is not a regular file") }
        let size = Int(st.st_size)
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        try bytes.withUnsafeMutableBytes { buf in
            while done < size {
                let n = read(fd, buf.baseAddress! + done, size - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SegFormerError.io("cannot read \(path): \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                done += n
            }
        }
        if done < size { bytes.removeLast(size - done) }   // the file shrank while being read
        return bytes
    }

    /// Unpacks a serialized ONNX `what` ("model" or "tensor") with protobuf-c after checking its nesting
    /// depth (a deep message would overflow protobuf-c's recursive parser); the caller frees the result.
    static func unpack<Message>(_ bytes: [UInt8], _ what: String, source: String,
                                checkNesting: (UnsafePointer<UInt8>?, Int, Int32) -> Int32,
                                unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?)
                                    -> UnsafeMutablePointer<Message>?) throws -> UnsafeMutablePointer<Message> {
        let parsed: UnsafeMutablePointer<Message>? = try bytes.withUnsafeBufferPointer { buf in
            let base = buf.baseAddress
            switch checkNesting(base, buf.count, Int32(maxNesting)) {
            case 0: break
            case 1: throw SegFormerError.invalid("\(source): not a valid ONNX \(what) (messages nested deeper than \(maxNesting) levels)")
            default: throw SegFormerError.invalid("\(source): not a valid ONNX \(what) (malformed protobuf)")
            }
            return unpack(nil, buf.count, base)
        }
        guard let parsed else { throw SegFormerError.invalid("\(source): not a valid ONNX \(what) (protobuf parse failed)") }
        return parsed
    }

    static func load(bytes: [UInt8], baseDirectory: String?, source: String) throws -> Model {
        let parsed = try unpack(bytes, "model", source: source,
                                checkNesting: connx_check_model_nesting, unpack: onnx__model_proto__unpack)
        defer { onnx__model_proto__free_unpacked(parsed, nil) }
        var importer = Converter(resolver: ExternalDataResolver(baseDirectory: baseDirectory))
        do {
            return try importer.model(parsed.pointee)
        } catch let e as SegFormerError {
            throw e.prefixed(source)
        }
    }

    // MARK: conversion

    /// AttributeProto.AttributeType codes.
    enum AttributeCode: Int32 {
        case undefined = 0, float = 1, int = 2, string = 3, tensor = 4, graph = 5
        case floats = 6, ints = 7, strings = 8, tensors = 9, graphs = 10
        case sparseTensor = 11, sparseTensors = 12, typeProto = 13, typeProtos = 14
    }

    struct Converter {
        let resolver: ExternalDataResolver
        /// Counter for names of unnamed unknown dimensions (`?0`, `?1`, … in file order).
        var unknownDims = 0

        init(resolver: ExternalDataResolver) { self.resolver = resolver }

        mutating func model(_ m: Onnx__ModelProto) throws -> Model {
            guard let g = m.graph else { throw SegFormerError.invalid("not a valid ONNX model (no graph)") }
            var opsets: [String: Int] = [:]
            for o in cArray(m.opset_import, m.n_opset_import) {
                guard let o else { continue }
                let domain = cString(o.pointee.domain)
                guard o.pointee.has_version != 0, o.pointee.version >= 1, o.pointee.version <= Int64(Int32.max) else {
                    throw SegFormerError.invalid("opset_import for domain '\(domain)' has no valid version")
                }
                opsets[domain] = Int(o.pointee.version)
            }
            if opsets.isEmpty {
                throw SegFormerError.invalid("not a valid ONNX model (no opset_import)")
            }
            // Without it every standard op's semantics would be guessed (Softmax before and after 13
            // differ); onnxruntime refuses such a model too.
            if opsets[""] == nil && opsets["ai.onnx"] == nil {
                let listed = opsets.keys.sorted().map { "'\($0)'" }.joined(separator: ", ")
                throw SegFormerError.invalid("opset_import has no version for the default ONNX domain (only \(listed))")
            }
            var metadata: [String: String] = [:]
            for e in cArray(m.metadata_props, m.n_metadata_props) {
                guard let e else { continue }
                metadata[cString(e.pointee.key)] = cString(e.pointee.value)
            }
            let graph = try self.graph(g.pointee)
            try ONNXImporter.validate(graph, outerScope: [])
            return Model(graph: graph, opsetImports: opsets,
                         irVersion: m.has_ir_version != 0 ? Int(m.ir_version) : 0,
                         producerName: cString(m.producer_name), producerVersion: cString(m.producer_version),
                         metadata: metadata)
        }

        mutating func graph(_ g: Onnx__GraphProto) throws -> Graph {
            let graphName = cString(g.name)
            if ONNXImporter.hasUnknownField(g.base, number: 15) {
                throw SegFormerError.unsupported("graph '\(graphName)': sparse initializers")
            }
            var initializers: [String: Tensor] = [:]
            var order: [String] = []
            for (i, t) in cArray(g.initializer, g.n_initializer).enumerated() {
                guard let t else { continue }
                let (name, tensor) = try ONNXImporter.tensor(from: UnsafePointer(t), externalData: resolver)
                guard !name.isEmpty else { throw SegFormerError.invalid("graph '\(graphName)': initializer #\(i) has no name") }
                guard initializers[name] == nil else {
                    throw SegFormerError.invalid("graph '\(graphName)': initializer '\(name)' is defined twice")
                }
                initializers[name] = tensor
                order.append(name)
            }
            let inputs = try cArray(g.input, g.n_input).map { try valueInfo($0, role: "graph input") }
            let outputs = try cArray(g.output, g.n_output).map { try valueInfo($0, role: "graph output") }
            var annotations: [String: TensorType] = [:]
            for v in cArray(g.value_info, g.n_value_info) {
                guard let v, let type = v.pointee.type, type.pointee.tensor_type != nil else {
                    continue   // non-tensor annotations are only hints; skip them
                }
                let info = try self.valueInfo(v, role: "value_info")
                annotations[info.name] = info.type
            }
            var nodes: [Node] = []
            nodes.reserveCapacity(g.n_node)
            for (i, n) in cArray(g.node, g.n_node).enumerated() {
                guard let n else { continue }
                nodes.append(try node(n.pointee, index: i))
            }
            return Graph(name: graphName, nodes: nodes, inputs: inputs, outputs: outputs,
                         initializers: initializers, initializerOrder: order, valueInfo: annotations)
        }

        mutating func valueInfo(_ v: UnsafeMutablePointer<Onnx__ValueInfoProto>?, role: String) throws -> ValueInfo {
            guard let v else { throw SegFormerError.invalid("missing \(role)") }
            let name = cString(v.pointee.name)
            guard !name.isEmpty else { throw SegFormerError.invalid("a \(role) has no name") }
            guard let type = v.pointee.type else {
                return ValueInfo(name: name, type: TensorType(.undefined, nil))
            }
            guard let tt = type.pointee.tensor_type else {
                throw SegFormerError.unsupported("\(role) '\(name)' is not a tensor (sequence, map, optional and sparse values are not supported)")
            }
            let code = tt.pointee.has_elem_type != 0 ? tt.pointee.elem_type : 0
            guard let dataType = DataType(rawValue: code) else {
                throw SegFormerError.unsupported("\(role) '\(name)': element type \(code)")
            }
            guard let shapeProto = tt.pointee.shape else { return ValueInfo(name: name, type: TensorType(dataType, nil)) }
            var dims: [Dim] = []
            for d in cArray(shapeProto.pointee.dim, shapeProto.pointee.n_dim) {
                guard let d else { dims.append(fresh()); continue }
                switch d.pointee.value_case {
                case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE where d.pointee.dim_value >= 0:
                    guard d.pointee.dim_value <= Int64(Int32.max) * 64 else {
                        throw SegFormerError.invalid("\(role) '\(name)': dimension \(d.pointee.dim_value) is absurdly large")
                    }
                    dims.append(.known(Int(d.pointee.dim_value)))
                case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM:
                    let p = cString(d.pointee.dim_param)
                    dims.append(p.isEmpty ? fresh() : .symbol(p))
                default:
                    dims.append(fresh())   // unset (or a negative "unknown" some writers use)
                }
            }
            return ValueInfo(name: name, type: TensorType(dataType, dims))
        }

        mutating func fresh() -> Dim {
            defer { unknownDims += 1 }
            return .symbol("?\(unknownDims)")
        }

        mutating func node(_ n: Onnx__NodeProto, index: Int) throws -> Node {
            let inputs = cArray(n.input, n.n_input).map { cString($0) }
            let outputs = cArray(n.output, n.n_output).map { cString($0) }
            var node = Node(name: cString(n.name), opType: cString(n.op_type), domain: cString(n.domain),
                            inputs: inputs, outputs: outputs)
            let label = node.name.isEmpty ? "node #\(index) (\(node.opType.isEmpty ? "?" : node.opType))" : node.label
            guard !node.opType.isEmpty else { throw SegFormerError.invalid("\(label) has no op_type") }
            for a in cArray(n.attribute, n.n_attribute) {
                guard let a else { continue }
                let key = cString(a.pointee.name)
                guard !key.isEmpty else { throw SegFormerError.invalid("\(label): an attribute has no name") }
                guard node.attributes[key] == nil else {
                    throw SegFormerError.invalid("\(label): attribute '\(key)' is given twice")
                }
                do {
                    node.attributes[key] = try attribute(a.pointee)
                } catch let e as SegFormerError {
                    throw e.prefixed("\(label): attribute '\(key)'")
                }
            }
            return node
        }

        mutating func attribute(_ a: Onnx__AttributeProto) throws -> Attribute {
            if a.ref_attr_name != nil, !cString(a.ref_attr_name).isEmpty {
                throw SegFormerError.unsupported("refers to function attribute '\(cString(a.ref_attr_name))' (only valid inside functions)")
            }
            var code = a.has_type != 0 ? a.type : 0
            if code == 0 {
                // IR version 1 files carry no type: infer it from the field that is present.
                if a.has_f != 0 { code = 1 } else if a.has_i != 0 { code = 2 } else if a.has_s != 0 { code = 3 }
                else if a.t != nil { code = 4 } else if a.g != nil { code = 5 } else if a.n_floats > 0 { code = 6 }
                else if a.n_ints > 0 { code = 7 } else if a.n_strings > 0 { code = 8 }
                else { throw SegFormerError.invalid("has no type and no value") }
            }
            guard let kind = AttributeCode(rawValue: code) else { throw SegFormerError.invalid("unknown attribute type \(code)") }
            switch kind {
            case .float: return .float(a.has_f != 0 ? a.f : 0)
            case .int:
                guard a.i >= Int64(Int.min), a.i <= Int64(Int.max) else { throw SegFormerError.invalid("int out of range") }
                return .int(a.has_i != 0 ? Int(a.i) : 0)
            case .string: return .string(a.has_s != 0 ? utf8String(a.s) : "")
            case .tensor:
                guard let t = a.t else { throw SegFormerError.invalid("of type TENSOR has no tensor") }
                return .tensor(try ONNXImporter.tensor(from: UnsafePointer(t), externalData: resolver).tensor)
            case .graph:
                guard let g = a.g else { throw SegFormerError.invalid("of type GRAPH has no graph") }
                return .graph(try graph(g.pointee))
            case .floats: return .floats(Array(cArray(a.floats, a.n_floats)))
            case .ints: return .ints(cArray(a.ints, a.n_ints).map { Int($0) })
            case .strings: return .strings(cArray(a.strings, a.n_strings).map(utf8String))
            case .undefined: throw SegFormerError.invalid("has no type")
            case .tensors, .graphs, .sparseTensor, .sparseTensors, .typeProto, .typeProtos:
                throw SegFormerError.unsupported("attribute type \(kind) is not supported")
            }
        }
    }

    /// Whether a parsed message carried a field this subset schema does not declare.
    static func hasUnknownField(_ base: ProtobufCMessage, number: UInt32) -> Bool {
        cArray(base.unknown_fields, Int(base.n_unknown_fields)).contains { $0.tag == number }
    }

    // MARK: validation

    /// Checks the graph's wiring: every node input is a graph input, an initializer, an outer-scope
    /// value (for subgraphs) or some node's output; no value is produced twice; every graph output is
    /// produced. Reports the first offending node or value by name.
    public static func validate(_ graph: Graph, outerScope: Set<String>) throws {
        let where_ = graph.name.isEmpty ? "graph" : "graph '\(graph.name)'"
        var defined = Set<String>()
        for i in graph.inputs {
            guard defined.insert(i.name).inserted else { throw SegFormerError.invalid("\(where_): input '\(i.name)' is listed twice") }
        }
        for name in graph.initializers.keys { defined.insert(name) }
        var producedBy: [String: String] = [:]
        for n in graph.nodes {
            for o in n.outputs where !o.isEmpty {
                if let other = producedBy[o] {
                    throw SegFormerError.invalid("\(where_): value '\(o)' is produced twice (by \(other) and \(n.label))")
                }
                if defined.contains(o) {
                    let what = graph.initializers[o] != nil ? "an initializer" : "a graph input"
                    throw SegFormerError.invalid("\(where_): \(n.label) produces '\(o)', which is already \(what)")
                }
                producedBy[o] = n.label
            }
        }
        var visible = outerScope.union(defined)
        visible.formUnion(producedBy.keys)
        for n in graph.nodes {
            for i in n.inputs where !i.isEmpty && !visible.contains(i) {
                throw SegFormerError.invalid("\(where_): \(n.label) reads '\(i)', which is not a graph input, an initializer or any node's output")
            }
            for (key, a) in n.attributes.sorted(by: { $0.key < $1.key }) {
                if case .graph(let sub) = a {
                    do { try validate(sub, outerScope: visible) } catch let e as SegFormerError {
                        throw e.prefixed("\(n.label): attribute '\(key)'")
                    }
                }
            }
        }
        for o in graph.outputs where !visible.contains(o.name) {
            throw SegFormerError.invalid("\(where_): output '\(o.name)' is not produced by any node")
        }
    }
}
