import GraphIR

/// Runs one op outside any graph: the way tests and constant folding call a kernel.
public enum SingleOp {
    public static func run(_ opType: String, domain: String = "", inputs: [Tensor?],
                           attributes: [String: Attribute] = [:], outputCount: Int = 1, opset: Int = 17,
                           context: ExecutionContext? = nil) throws -> [Tensor] {
        let node = Node(name: opType, opType: opType, domain: domain,
                        inputs: inputs.enumerated().map { $0.element == nil ? "" : "in\($0.offset)" },
                        outputs: (0..<outputCount).map { "out\($0)" }, attributes: attributes)
        let schema = try OpRegistry.schema(for: node, opset: opset)
        let kernel = try schema.makeKernel(node, opset)
        return try kernel.run(inputs, context ?? ExecutionContext.singleThreaded)
    }
}

extension ExecutionContext {
    public static let singleThreaded = ExecutionContext(threads: 1)
}
