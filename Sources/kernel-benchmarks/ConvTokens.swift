import GraphIR
import Runtime

/// The convs whose output becomes tokens at b0's shapes (batch 1, 512², inference): Conv → Reshape →
/// Transpose (and, for the spatial reductions, the Transpose → Reshape before it) against the
/// ChannelsLastConv the fuse-conv-to-tokens pass writes (the Reshapes are views), 2 threads, wall clock.
func convTokensForward() throws {
    let timer = Timer(.wall, threads: 2, repeats: 5, nameWidth: 44)
    let perm: [String: Attribute] = ["perm": .ints([0, 2, 1])]
    func window(_ k: Int, _ s: Int, _ p: Int) -> [String: Attribute] {
        ["kernel_shape": .ints([k, k]), "strides": .ints([s, s]), "pads": .ints([p, p, p, p])]
    }
    // Patch embeddings: (name, input side, C, M, kernel, stride, pad); the input is NCHW.
    let embeddings: [(String, Int, Int, Int, Int, Int, Int)] = [
        ("patch embedding 1", 512, 3, 32, 7, 4, 3), ("patch embedding 2", 128, 32, 64, 3, 2, 1),
        ("patch embedding 3", 64, 64, 160, 3, 2, 1), ("patch embedding 4", 32, 160, 256, 3, 2, 1)]
    for (name, side, c, m, k, s, p) in embeddings {
        let x = try random([1, c, side, side], seed: 1), w = try random([m, c, k, k], seed: 2), b = try random([m], seed: 3)
        try timer.time("\(name) Conv + Transpose") {
            let y = try timer.op(OpType.conv, [x, w, b], window(k, s, p))[0]
            _ = try timer.op(OpType.transpose, [try timer.op(OpType.reshape, [y, ints([1, m, -1])])[0]], perm)
        }
        try timer.time("\(name) ChannelsLastConv") {
            _ = try timer.op(OpType.channelsLastConv, domain: fusedDomain, [x, w, b], window(k, s, p))
        }
    }
    // Spatial reductions: (name, tokens side, C, kernel = stride) on tokens [1, side², C].
    for (name, side, c, k) in [("spatial reduction 1", 128, 32, 8), ("spatial reduction 2", 64, 64, 4), ("spatial reduction 3", 32, 160, 2)] {
        let x = try random([1, side * side, c], seed: 1), w = try random([c, c, k, k], seed: 2), b = try random([c], seed: 3)
        let wLast = try timer.op(OpType.transpose, [w], ["perm": .ints([0, 2, 3, 1])])[0]
        try timer.time("\(name) Transposes + Conv") {
            let planes = try timer.op(OpType.reshape, [try timer.op(OpType.transpose, [x], perm)[0], ints([1, c, side, side])])[0]
            let y = try timer.op(OpType.conv, [planes, w, b], window(k, k, 0))[0]
            _ = try timer.op(OpType.transpose, [try timer.op(OpType.reshape, [y, ints([1, c, -1])])[0]], perm)
        }
        try timer.time("\(name) ChannelsLastConv") {
            let image = try timer.op(OpType.reshape, [x, ints([1, side, side, c])])[0]
            var attributes = window(k, k, 0)
            attributes["channels_last_input"] = .int(1)
            _ = try timer.op(OpType.channelsLastConv, domain: fusedDomain, [image, wLast, b], attributes)
        }
    }
}
