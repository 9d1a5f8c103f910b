import GraphIR
import Runtime

/// Scaled dot-product attention at b0's shapes (batch 1, inference): the fused, tiled Attention kernel
/// against the unfused MatMul(Q, Kᵀ) → Softmax → MatMul(P, V) it replaces, and in the tokens-first
/// layout (heads strided, no Transposes around it), 2 threads, wall clock.
func attentionForward() throws {
    let timer = Timer(.wall, threads: 2, repeats: 5, nameWidth: 44)
    let scale: [String: Attribute] = ["scale": .float(0.17677669)]
    // (name, heads, queries, keys, head size): stages 1–3 at 512² and stage 1 at 1024².
    let shapes: [(String, Int, Int, Int, Int)] = [
        ("stage 1 at 512²", 1, 16384, 256, 32), ("stage 2 at 512²", 2, 4096, 256, 32),
        ("stage 3 at 512²", 5, 1024, 256, 32), ("stage 1 at 1024²", 1, 65536, 1024, 32),
    ]
    for (name, heads, n, m, d) in shapes {
        let q = try random([1, heads, n, d], seed: 1), k = try random([1, heads, m, d], seed: 2)
        let kT = try random([1, heads, d, m], seed: 2), v = try random([1, heads, m, d], seed: 3)
        let flop = 4.0 * Double(heads * n * m * d)
        let rate: (Double) -> String = { ms in String(format: "%.0f GFLOP/s", flop / ms / 1e6) }
        try timer.time("\(name) unfused", detail: rate) {
            let s = try timer.op(OpType.matMul, [q, kT])[0]
            let p = try timer.op(OpType.softmax, [s], opset: 13)[0]
            _ = try timer.op(OpType.matMul, [p, v])
        }
        let s0 = try timer.op(OpType.matMul, [q, kT])[0], p0 = try timer.op(OpType.softmax, [s0], opset: 13)[0]
        try timer.time("\(name)   QKᵀ") { _ = try timer.op(OpType.matMul, [q, kT]) }
        try timer.time("\(name)   softmax") { _ = try timer.op(OpType.softmax, [s0], opset: 13) }
        try timer.time("\(name)   PV") { _ = try timer.op(OpType.matMul, [p0, v]) }
        try timer.time("\(name) fused", detail: rate) {
            _ = try timer.op(OpType.attention, domain: fusedDomain, [q, k, v], scale)
        }
        // The same reading Q, K, V and writing O strided in the linear layers' [1, rows, heads, d].
        let tokensFirst = scale.merging([AttentionLayout.attribute: .string(AttentionLayout.tokensFirst.rawValue)]) { $1 }
        let qt = try random([1, n, heads, d], seed: 1), kt = try random([1, m, heads, d], seed: 2), vt = try random([1, m, heads, d], seed: 3)
        try timer.time("\(name) fused, tokens-first", detail: rate) {
            _ = try timer.op(OpType.attention, domain: fusedDomain, [qt, kt, vt], tokensFirst)
        }
        let one = Timer(.wall, threads: 1, repeats: 5, nameWidth: 44)
        try one.time("\(name) fused", detail: rate) {
            _ = try one.op(OpType.attention, domain: fusedDomain, [q, k, v], scale)
        }
        try one.time("\(name) unfused", detail: rate) {
            let s = try one.op(OpType.matMul, [q, kT])[0]
            let p = try one.op(OpType.softmax, [s], opset: 13)[0]
            _ = try one.op(OpType.matMul, [p, v])
        }
    }
}
