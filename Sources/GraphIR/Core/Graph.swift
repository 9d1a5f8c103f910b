/// A node attribute, as ONNX's AttributeProto carries it.
public enum Attribute: Sendable {
    case int(Int)
    case float(Float)
    case string(String)
    case tensor(Tensor)
    case ints([Int])
    case floats([Float])
    case strings([String])
    case graph(Graph)

    public var kindName: String {
        switch self {
        case .int: return "int"
        case .float: return "float"
        case .string: return "string"
        case .tensor: return "tensor"
        case .ints: return "ints"
        case .floats: return "floats"
        case .strings: return "strings"
        case .graph: return "graph"
        }
    }
}

/// One operation. Inputs and outputs name values; an empty input name means "optional, absent".
public struct Node: Sendable, CustomStringConvertible {
    public var name: String
    public var opType: String
    /// "" is the default ONNX domain (ai.onnx).
    public var domain: String
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: [String: Attribute]

    // Public memberwise inits (here, in ValueInfo and Graph) are written out because Swift's synthesised
    // ones are internal; they look alike, as memberwise inits do.
    public init(name: String, opType: String, domain: String = "", inputs: [String], outputs: [String],
                attributes: [String: Attribute] = [:]) {
        self.name = name
        self.opType = opType
        self.domain = domain
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
    }

    /// `node "name" (OpType)` — how errors refer to a node.
    public var label: String {
        let shown = name.isEmpty ? (outputs.first.map { "→\($0)" } ?? "?") : name
        return "node \"\(shown)\" (\(opName))"
    }

    /// The op type, with its domain when not ai.onnx.
    public var opName: String { domain.isEmpty ? opType : "\(domain).\(opType)" }
    public var description: String { label }

    // MARK: typed attribute access (errors name the node and attribute)

    public func int(_ key: String) throws -> Int? {
        guard let a = attributes[key] else { return nil }
        if case .int(let v) = a { return v }
        throw SegFormerError.invalid("\(label): attribute '\(key)' must be an int, got \(a.kindName)")
    }
    public func int(_ key: String, default value: Int) throws -> Int { try int(key) ?? value }

    public func float(_ key: String) throws -> Float? {
        guard let a = attributes[key] else { return nil }
        if case .float(let v) = a { return v }
        if case .int(let v) = a { return Float(v) }
        throw SegFormerError.invalid("\(label): attribute '\(key)' must be a float, got \(a.kindName)")
    }
    public func float(_ key: String, default value: Float) throws -> Float { try float(key) ?? value }

    public func string(_ key: String) throws -> String? {
        guard let a = attributes[key] else { return nil }
        if case .string(let v) = a { return v }
        throw SegFormerError.invalid("\(label): attribute '\(key)' must be a string, got \(a.kindName)")
    }
    public func string(_ key: String, default value: String) throws -> String { try string(key) ?? value }

    public func ints(_ key: String) throws -> [Int]? {
        guard let a = attributes[key] else { return nil }
        if case .ints(let v) = a { return v }
        if case .int(let v) = a { return [v] }
        throw SegFormerError.invalid("\(label): attribute '\(key)' must be a list of ints, got \(a.kindName)")
    }

    public func floats(_ key: String) throws -> [Float]? {
        guard let a = attributes[key] else { return nil }
        if case .floats(let v) = a { return v }
        if case .float(let v) = a { return [v] }
        throw SegFormerError.invalid("\(label): attribute '\(key)' must be a list of floats, got \(a.kindName)")
    }

    public func tensor(_ key: String) throws -> Tensor? {
        guard let a = attributes[key] else { return nil }
        if case .tensor(let v) = a { return v }
        throw SegFormerError.invalid("\(label): attribute '\(key)' must be a tensor, got \(a.kindName)")
    }

    /// The i-th input name, or nil when absent (beyond the list or empty).
    public func input(_ i: Int) -> String? {
        i < inputs.count && !inputs[i].isEmpty ? inputs[i] : nil
    }
}

/// A named value with its static type (graph inputs, outputs and annotated intermediates).
public struct ValueInfo: Sendable {
    public var name: String
    public var type: TensorType
    public init(name: String, type: TensorType) {
        self.name = name
        self.type = type
    }
}

/// A computation graph: nodes in any order (passes sort them), graph inputs and outputs,
/// initializers (constant tensors such as weights) and optional type annotations.
public struct Graph: Sendable {
    public var name: String
    public var nodes: [Node]
    public var inputs: [ValueInfo]
    public var outputs: [ValueInfo]
    public var initializers: [String: Tensor]
    /// Initializer names in file order, so export keeps the exporter's order.
    public var initializerOrder: [String]
    /// Known types of intermediate values (ONNX value_info).
    public var valueInfo: [String: TensorType]

    // Written out to be public, like Node's init; see there.
    public init(name: String = "graph", nodes: [Node] = [], inputs: [ValueInfo] = [], outputs: [ValueInfo] = [],
                initializers: [String: Tensor] = [:], initializerOrder: [String]? = nil,
                valueInfo: [String: TensorType] = [:]) {
        self.name = name
        self.nodes = nodes
        self.inputs = inputs
        self.outputs = outputs
        self.initializers = initializers
        self.initializerOrder = initializerOrder ?? initializers.keys.sorted()
        self.valueInfo = valueInfo
    }

    /// Graph inputs that are not also initializers (ONNX allows an initializer to be listed as an
    /// input, which makes it an overridable default).
    public var runtimeInputs: [ValueInfo] { inputs.filter { initializers[$0.name] == nil } }

    public mutating func setInitializer(_ name: String, _ tensor: Tensor) {
        if initializers[name] == nil { initializerOrder.append(name) }
        initializers[name] = tensor
    }

    public mutating func removeInitializer(_ name: String) {
        if initializers.removeValue(forKey: name) != nil { initializerOrder.removeAll { $0 == name } }
    }

    /// For each value name, the index of the node producing it.
    public func producers() -> [String: Int] {
        var map: [String: Int] = [:]
        for (i, n) in nodes.enumerated() { for o in n.outputs where !o.isEmpty { map[o] = i } }
        return map
    }

    /// Number of elements in all float initializers (the "parameter count").
    public var parameterCount: Int {
        initializers.values.filter { $0.dataType.isFloatingPoint }.reduce(0) { $0 + $1.count }
    }
}

/// A model: a graph plus the opset versions it was written for and file metadata.
public struct Model: Sendable {
    public var graph: Graph
    /// Domain → opset version; "" is ai.onnx.
    public var opsetImports: [String: Int]
    public var irVersion: Int
    public var producerName: String
    public var producerVersion: String
    public var metadata: [String: String]

    public init(graph: Graph, opsetImports: [String: Int] = ["": 17], irVersion: Int = 8,
                producerName: String = "segformer-swift", producerVersion: String = "0.1",
                metadata: [String: String] = [:]) {
        self.graph = graph
        self.opsetImports = opsetImports
        self.irVersion = irVersion
        self.producerName = producerName
        self.producerVersion = producerVersion
        self.metadata = metadata
    }

    /// The ai.onnx opset version.
    public var opset: Int { opsetImports[""] ?? opsetImports["ai.onnx"] ?? 1 }
}
