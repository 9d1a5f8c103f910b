import GraphIR

// CPU kernels of the SumToShape family: the schemas (what each op means) are in Ops/SumToShape.swift.
/// Sums `grad` down to `target`, which must be broadcastable to grad's shape.
public func sumToShape(_ grad: Tensor, _ target: [Int], _ context: ExecutionContext, label: String = OpType.sumToShape) throws -> Tensor {
    let g = grad.shape
    guard target.count <= g.count else {
        throw SegFormerError.invalid("\(label): cannot sum shape \(g) down to \(target) (higher rank)")
    }
    let lead = g.count - target.count
    var axes = Array(0..<lead)
    for (i, t) in target.enumerated() {
        let d = g[lead + i]
        if t == d { continue }
        guard t == 1 else {
            throw SegFormerError.invalid("\(label): shape \(target) does not broadcast to \(g)")
        }
        axes.append(lead + i)
    }
    if axes.isEmpty { return grad.reshaped(target) }
    let axesTensor = Tensor(axes.map { Int64($0) }, shape: [axes.count])
    let summed = try SingleOp.run(OpType.reduceSum, inputs: [grad, axesTensor], attributes: ["keepdims": .int(1)],
                                  opset: 13, context: context)[0]
    return summed.reshaped(target)
}
