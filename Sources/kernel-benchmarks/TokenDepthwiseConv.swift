import GraphIR
import Runtime

/// MixFFN's depthwise 3×3 + GELU at b0's shapes (batch 1, inference): the fused channels-last
/// TokenDepthwiseConv against the Transpose → Conv (NCHW depthwise) → Transpose → Gelu it replaces
/// (the Reshapes between them are views), 2 threads, wall clock.
func tokenDepthwiseConvForward() throws {
    let timer = Timer(.wall, threads: 2, repeats: 5, nameWidth: 44)
    // (name, H = W, channels): the four stages at 512², stage 1 at 1024².
    let shapes: [(String, Int, Int)] = [("stage 1 at 512²", 128, 128), ("stage 2 at 512²", 64, 256),
                                        ("stage 3 at 512²", 32, 640), ("stage 4 at 512²", 16, 1024),
                                        ("stage 1 at 1024²", 256, 128)]
    for (name, side, c) in shapes {
        let n = side * side
        let x = try random([1, n, c], seed: 1), w = try random([c, 1, 3, 3], seed: 2), b = try random([c], seed: 3)
        let nchw = ints([1, c, side, side])
        let conv: [String: Attribute] = ["group": .int(c), "kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1])]
        let perm: [String: Attribute] = ["perm": .ints([0, 2, 1])]
        try timer.time("\(name) unfused") {
            let planes = try timer.op(OpType.reshape, [try timer.op(OpType.transpose, [x], perm)[0], nchw])[0]
            let y = try timer.op(OpType.conv, [planes, w, b], conv)[0]
            let tokens = try timer.op(OpType.transpose, [try timer.op(OpType.reshape, [y, ints([1, c, n])])[0]], perm)[0]
            _ = try timer.op(OpType.gelu, domain: fusedDomain, [tokens])
        }
        try timer.time("\(name) fused") {
            _ = try timer.op(OpType.tokenDepthwiseConv, domain: fusedDomain, [x, w, nchw, b], ["activation": .string(OpType.gelu)])
        }
        try timer.time("\(name) fused, no GELU") {
            _ = try timer.op(OpType.tokenDepthwiseConv, domain: fusedDomain, [x, w, nchw, b])
        }
    }
}
