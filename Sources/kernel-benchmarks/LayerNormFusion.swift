import GraphIR
import Runtime

/// The LayerNorms fuse-layer-norm-into-producer takes into the node before them, at b0's shapes
/// (batch 1, 512², 2 threads, wall clock): the producer and then the LayerNormalization kernel,
/// against the producer writing the LayerNorm as its second output (its own output kept, as the
/// residual stream reads it).
func layerNormFusionForward() throws {
    let timer = Timer(.wall, threads: 2, repeats: 10, nameWidth: 56)
    let layerNorm: [String: Attribute] = ["axis": .int(-1), "epsilon": .float(1e-6)]
    let carried: [String: Attribute] = [ProducerLayerNorm.epsilonAttribute: .float(1e-6)]
    // Each stage's attention output projection with its residual, then layernorm_after.
    for (tokens, c) in [(16384, 32), (4096, 64), (1024, 160), (256, 256)] {
        let x = try random([1, tokens, c], seed: 1), w = try random([c, c], seed: 2), bias = try random([c], seed: 3)
        let residual = try random([1, tokens, c], seed: 4), scale = try random([c], seed: 5), shift = try random([c], seed: 6)
        let shape = "[\(tokens),\(c)]x[\(c),\(c)]"
        try timer.time("FusedMatMul, LayerNorm \(shape)") {
            let y = try timer.op(OpType.fusedMatMul, domain: fusedDomain, [x, w, bias, residual])[0]
            _ = try timer.op(OpType.layerNormalization, [y, scale, shift], layerNorm)
        }
        try timer.time("FusedMatMul carrying it \(shape)") {
            _ = try timer.op(OpType.fusedMatMul, domain: fusedDomain, [x, w, bias, residual, scale, shift], carried, outputCount: 2)
        }
    }
    // Each stage's MixFFN (depthwise conv, GELU, fc2 with its residual), then the next LayerNorm.
    for (side, c) in [(128, 32), (64, 64), (32, 160), (16, 256)] {
        let (hidden, tokens) = (4 * c, side * side)
        let producer: [Tensor?] = [try random([1, tokens, hidden], seed: 1), try random([hidden, 1, 3, 3], seed: 2),
                                   ints([1, hidden, side, side]), try random([hidden], seed: 3), try random([hidden, c], seed: 4),
                                   try random([c], seed: 5), try random([1, tokens, c], seed: 6)]
        let scale = try random([c], seed: 7), shift = try random([c], seed: 8)
        let gelu: [String: Attribute] = ["activation": .string(OpType.gelu)]
        let shape = "\(side)²×\(hidden)→\(c)"
        try timer.time("TokenDepthwiseConv+fc2, LayerNorm \(shape)") {
            let y = try timer.op(OpType.tokenDepthwiseConv, domain: fusedDomain, producer, gelu)[0]
            _ = try timer.op(OpType.layerNormalization, [y, scale, shift], layerNorm)
        }
        try timer.time("TokenDepthwiseConv+fc2 carrying it \(shape)") {
            _ = try timer.op(OpType.tokenDepthwiseConv, domain: fusedDomain, producer + [scale, shift],
                             gelu.merging(carried) { $1 }, outputCount: 2)
        }
    }
}
