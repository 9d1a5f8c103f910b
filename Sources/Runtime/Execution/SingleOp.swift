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

    /// The kernel of one op whose inputs `constants` (nil: given at each run) are fixed, prepared as a
    /// compiled model prepares it (`ConstantPreparedKernel`: e.g. a weight packed once), for tests and
    /// benchmarks that run it many times.
    public static func preparedKernel(_ opType: String, domain: String = "", constants: [Tensor?],
                                      attributes: [String: Attribute] = [:], opset: Int = 17) throws -> Kernel {
        let node = Node(name: opType, opType: opType, domain: domain, inputs: constants.indices.map { "in\($0)" },
                        outputs: ["out0"], attributes: attributes)
        let kernel = try OpRegistry.schema(for: node, opset: opset).makeKernel(node, opset)
        return (kernel as? ConstantPreparedKernel)?.prepare(constants) ?? kernel
    }
}

extension ExecutionContext {
    public static let singleThreaded = ExecutionContext(threads: 1)
}
