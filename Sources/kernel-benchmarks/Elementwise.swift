import GraphIR
import Runtime

/// The hot float32 elementwise kernels at 16384 tokens × 128 channels (2M elements), 2 threads.
func elementwiseForward() throws {
    let timer = Timer(.wall, threads: 2, repeats: 7, nameWidth: 34)
    let n = 16384 * 128
    let big = Tensor((0..<n).map { Float($0 % 1000) * 0.004 - 2 }, shape: [1, 16384, 128])
    let positive = Tensor((0..<n).map { Float($0 % 777) * 0.003 + 0.5 }, shape: [1, 16384, 128])
    let bias = Tensor((0..<128).map { Float($0) * 0.01 }, shape: [128])
    let nchw = big.reshaped([1, 128, 128, 128])
    let channelScale = Tensor((0..<128).map { Float($0) * 0.01 + 1 }, shape: [1, 128, 1, 1])
    let rowMean = Tensor((0..<16384).map { Float($0) * 0.001 }, shape: [1, 16384, 1])
    let half = Tensor(scalar: Float(0.5))
    let perElement = { (ms: Double) in String(format: "%.2f ns/elem", ms * 1e6 / Double(n)) }
    func time(_ name: String, _ opType: String, _ inputs: [Tensor?], _ attributes: [String: Attribute] = [:],
              opset: Int = 17) throws {
        try timer.time(name, detail: perElement) { _ = try timer.op(opType, inputs, attributes, opset: opset) }
    }
    try time("Add same shape 2M", OpType.add, [big, positive])
    try time("Add [1,N,C]+[C] 2M", OpType.add, [big, bias])
    try time("Mul [1,C,H,W]*[1,C,1,1] 2M", OpType.mul, [nchw, channelScale])
    try time("Sub [1,N,C]-[1,N,1] 2M", "Sub", [big, rowMean])
    try time("Mul by scalar 2M", OpType.mul, [big, half])
    try time("Div same shape 2M", OpType.div, [big, positive])
    try time("Pow x^2 2M", "Pow", [big, Tensor(scalar: Float(2))])
    try time("Sqrt 2M", "Sqrt", [positive])
    try time("Erf 2M", OpType.erf, [big])
    try time("Gelu 2M", "Gelu", [big], opset: 20)
    try time("Relu 2M", OpType.relu, [big])
    try time("Sigmoid 2M", "Sigmoid", [big])
    try time("Tanh 2M", "Tanh", [big])
    try time("Exp 2M", "Exp", [big])
    try time("Cast f32->f16 2M", OpType.cast, [big], ["to": .int(10)])
    try time("Where 2M", "Where", [Tensor([true, false], shape: [2, 1, 1]), big.reshaped([2, 8192, 128]), half])
}

/// Forward vs backward elementwise kernels at SegFormer-b0's largest GELU input (batch 2, 128·128
/// tokens, 128 hidden = 4M elements), 1 thread.
func elementwiseGradients() throws {
    let timer = Timer(.threadCPU, threads: 1, repeats: 3, nameWidth: 40)
    let tr = trainingDomain
    let shape = [2, 16384, 128]
    let x = try random(shape, seed: 1), dy = try random(shape, seed: 2), c = try random([128], seed: 3)
    try timer.time("Mul fwd (same shape)") { _ = try timer.op(OpType.mul, [x, dy]) }
    try timer.time("Mul fwd ([C] broadcast)") { _ = try timer.op(OpType.mul, [x, c]) }
    try timer.time("Erf fwd") { _ = try timer.op(OpType.erf, [x]) }
    try timer.time("ErfGrad") { _ = try timer.op("ErfGrad", domain: tr, [dy, x]) }
    try timer.time("Gelu fwd") { _ = try timer.op("Gelu", [x], opset: 20) }
    try timer.time("GeluGrad") { _ = try timer.op("GeluGrad", domain: tr, [dy, x]) }
    try timer.time("Relu fwd") { _ = try timer.op(OpType.relu, [x]) }
    try timer.time("ReluGrad") { _ = try timer.op("ReluGrad", domain: tr, [dy, x]) }
    try timer.time("DivGrad ([C] divisor)") { _ = try timer.op("DivGrad", domain: tr, [dy, x, c]) }
    let rowDivisor = try random([2, 16384, 1], seed: 4)
    try timer.time("DivGrad ([B,N,1] divisor)") { _ = try timer.op("DivGrad", domain: tr, [dy, x, rowDivisor]) }
    let two = Tensor([Float(2)], shape: [])
    try timer.time("Pow fwd (x^2)") { _ = try timer.op("Pow", [x, two]) }
    try timer.time("PowGrad (x^2)") { _ = try timer.op("PowGrad", domain: tr, [dy, x, two]) }
    try timer.time("SumToShape [B,N,C]→[C]") { _ = try sumToShape(dy, [128], timer.context) }
    // Training-mode dropout (the decode head's classifier dropout, [2,256,128,128] = 8M elements).
    let features = try random([2, 256, 128, 128], seed: 5), dFeatures = try random([2, 256, 128, 128], seed: 6)
    let dropout = [Tensor(scalar: Float(0.1)), Tensor(scalar: true)]
    let mask = try timer.op("Dropout", [features] + dropout, outputCount: 2, opset: 13)[1]
    try timer.time("Dropout training fwd [2,256,128,128]") { _ = try timer.op("Dropout", [features] + dropout, outputCount: 2, opset: 13) }
    try timer.time("DropoutGrad [2,256,128,128]") { _ = try timer.op("DropoutGrad", domain: tr, [dFeatures, mask] + dropout) }
}
