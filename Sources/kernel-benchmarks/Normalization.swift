import GraphIR
import Runtime

/// Softmax, ReduceMean, LayerNorm, Resize, ArgMax and ReduceMax forward at SegFormer-b0 sizes, 1 thread.
func normOpsForward() throws {
    let timer = Timer(.threadCPU, threads: 1, repeats: 5)
    for shape in [[1, 1, 16384, 256], [1, 2, 4096, 256], [1, 8, 256, 256]] {
        let x = try random(shape)
        try timer.time("Softmax \(shape)") { _ = try timer.op(OpType.softmax, [x], opset: 13) }
    }
    let x1 = try random([1, 16384, 32])
    let lastAxis = ints([-1])
    try timer.time("ReduceMean last [1,16384,32]") { _ = try timer.op("ReduceMean", [x1, lastAxis], opset: 18) }
    try timer.time("ReduceMean last opset13 [1,16384,32]") {
        _ = try timer.op("ReduceMean", [x1], ["axes": .ints([-1])], opset: 13)
    }
    let x2 = try random([1, 256, 256])
    try timer.time("ReduceMean last [1,256,256]") { _ = try timer.op("ReduceMean", [x2, lastAxis], opset: 18) }
    let scale = try random([32], seed: 1), bias = try random([32], seed: 2)
    try timer.time("LayerNorm [1,16384,32]") { _ = try timer.op(OpType.layerNormalization, [x1, scale, bias]) }
    let linear: [String: Attribute] = ["mode": .string("linear")]
    let x3 = try random([1, 256, 16, 16])
    try timer.time("Resize bilinear [1,256,16,16]->128") {
        _ = try timer.op(OpType.resize, [x3, nil, nil, ints([1, 256, 128, 128])], linear, opset: 13)
    }
    let x4 = try random([1, 150, 128, 128])
    try timer.time("Resize bilinear [1,150,128,128]->512", repeats: 3) {
        _ = try timer.op(OpType.resize, [x4, nil, nil, ints([1, 150, 512, 512])], linear, opset: 13)
    }
    let x5 = try random([2, 150, 128, 128])
    try timer.time("ArgMax axis1 [2,150,128,128]") { _ = try timer.op("ArgMax", [x5], ["axis": .int(1)], opset: 13) }
    try timer.time("ReduceMax axis1 [2,150,128,128]") { _ = try timer.op("ReduceMax", [x5, ints([1])], opset: 18) }
}

/// Forward vs backward of LayerNorm, ReduceMean, BatchNorm, Softmax, Resize and the losses at SegFormer-b0
/// training sizes (batch 2, 512×512), 1 thread.
func normGradients() throws {
    let timer = Timer(.threadCPU, threads: 1, repeats: 3, nameWidth: 58)
    let tr = trainingDomain
    let lastAxis = ints([-1])
    for shape in [[2, 16384, 32], [2, 4096, 64], [2, 256, 256]] {
        let x = try random(shape, seed: 1), dy = try random(shape, seed: 2)
        let scale = try random([shape[2]], seed: 3), bias = try random([shape[2]], seed: 4)
        try timer.time("LayerNorm fwd \(shape)") { _ = try timer.op(OpType.layerNormalization, [x, scale, bias]) }
        try timer.time("LayerNormGrad \(shape)") {
            _ = try timer.op("LayerNormGrad", domain: tr, [dy, x, scale], outputCount: 3)
        }
        try timer.time("ReduceMean fwd \(shape)") { _ = try timer.op("ReduceMean", [x, lastAxis], opset: 18) }
        let g = try random([shape[0], shape[1], 1], seed: 5)
        try timer.time("ReduceGrad mean \(shape)") {
            _ = try timer.op("ReduceGrad", domain: tr, [g, ints(shape), lastAxis],
                             ["kind": .string("mean"), "axes_from_input": .int(1)])
        }
    }
    // The decode head's BatchNorm in training: batch 2, 256 channels at 128×128.
    let bnShape = [2, 256, 128, 128]
    let bx = try random(bnShape, seed: 1), bdy = try random(bnShape, seed: 2)
    let bnScale = try random([256], seed: 3), bnBias = try random([256], seed: 4)
    let runningMean = Tensor([Float](repeating: 0, count: 256), shape: [256])
    let runningVariance = Tensor([Float](repeating: 1, count: 256), shape: [256])
    try timer.time("BatchNormTraining fwd \(bnShape)") {
        _ = try timer.op("BatchNormTraining", domain: tr, [bx, bnScale, bnBias, runningMean, runningVariance], outputCount: 3)
    }
    try timer.time("BatchNormTrainingGrad \(bnShape)") {
        _ = try timer.op("BatchNormTrainingGrad", domain: tr, [bdy, bx, bnScale], outputCount: 3)
    }
    let attention = try random([2, 1, 16384, 256], seed: 1), dAttention = try random([2, 1, 16384, 256], seed: 2)
    let probabilities = try timer.op(OpType.softmax, [attention], opset: 13)[0]
    try timer.time("Softmax fwd [2,1,16384,256]") { _ = try timer.op(OpType.softmax, [attention], opset: 13) }
    try timer.time("SoftmaxGrad [2,1,16384,256]") { _ = try timer.op("SoftmaxGrad", domain: tr, [dAttention, probabilities]) }

    let linear: [String: Attribute] = ["mode": .string("linear"), "coordinate_transformation_mode": .string("half_pixel")]
    for (inShape, outHW) in [([2, 256, 16, 16], 128), ([2, 256, 64, 64], 128), ([2, 150, 128, 128], 512)] {
        let x = try random(inShape, seed: 1)
        let sizes = ints([inShape[0], inShape[1], outHW, outHW])
        let dy = try random([inShape[0], inShape[1], outHW, outHW], seed: 2)
        try timer.time("Resize fwd \(inShape)→\(outHW)") { _ = try timer.op(OpType.resize, [x, nil, nil, sizes], linear) }
        try timer.time("ResizeGrad \(inShape)→\(outHW)") {
            _ = try timer.op("ResizeGrad", domain: tr, [dy, ints(inShape), nil, nil, sizes], linear)
        }
    }
    let scores = try random([2, 150, 512, 512])
    let labels = Tensor(uninitialized: .int64, shape: [2, 512, 512])
    let lp = labels.pointer(Int64.self)
    for i in 0..<labels.count { lp[i] = i % 11 == 0 ? 255 : Int64((i * 7) % 150) }   // every 11th pixel ignored
    let ignore: [String: Attribute] = ["ignore_index": .int(255)]
    try timer.time("SoftmaxCrossEntropyLoss fwd [2,150,512,512]", repeats: 2) {
        _ = try timer.op(OpType.softmaxCrossEntropyLoss, [scores, labels], ignore)
    }
    try timer.time("SoftmaxCrossEntropyLossGrad [2,150,512,512]", repeats: 2) {
        _ = try timer.op("SoftmaxCrossEntropyLossGrad", domain: tr, [Tensor(scalar: Float(1)), scores, labels], ignore)
    }
    // HF's loss as the training step runs it: upsampling, cross-entropy and gradient in one kernel.
    let logits = try random([2, 150, 128, 128], seed: 3)
    let fused = linear.merging(ignore) { a, _ in a }.merging(["reduction": .string("mean")]) { a, _ in a }
    try timer.time("UpsampledCrossEntropyLoss [2,150,128,128]→512", repeats: 2) {
        _ = try timer.op(OpType.upsampledCrossEntropyLoss, domain: tr, [logits, labels], fused)
    }
    try timer.time("UpsampledCrossEntropyLoss + d/dlogits [2,150,128,128]→512", repeats: 2) {
        _ = try timer.op(OpType.upsampledCrossEntropyLoss, domain: tr, [logits, labels], fused, outputCount: 2)
    }
}
