import Foundation
import XCTest
import GraphIR
@testable import Runtime

/// The fused attention kernels against softmax(scale·Q·Kᵀ)·V and its gradients written out in Double,
/// at sizes that are not multiples of the row and key blocks, in one pass over the keys and streaming
/// (online softmax) over several key blocks, in both layouts (the tokens-first one reads and writes each
/// head's rows strided); and bit-identical run to run at 1, 2 and 3 threads.
final class AttentionKernelTests: XCTestCase {
    /// [2, 3] batch dims, N = 37 queries, M = 29 keys, d = 5, dv = 7.
    private let (lead, n, m, d, dv) = ([2, 3], 37, 29, 5, 7)
    private let scale: Float = 0.45
    private var q: Tensor { Tensor(NNTest.values(6 * n * d, seed: 1).map { 3 * $0 }, shape: lead + [n, d]) }
    private var k: Tensor { Tensor(NNTest.values(6 * m * d, seed: 2).map { 3 * $0 }, shape: lead + [m, d]) }
    private var v: Tensor { NNTest.tensor(lead + [m, dv], seed: 3) }
    private var dO: Tensor { NNTest.tensor(lead + [n, dv], seed: 4) }
    /// (rows, keys) per block: the defaults (one pass), and blocks that split both N and M unevenly.
    private let blockings: [(Int?, Int)] = [(nil, AttentionKernels.keyBlock), (16, 8), (5, 28)]

    /// The naive reference in Double: per batch item, the full score matrix.
    private func reference() throws -> (o: [Double], dQ: [Double], dK: [Double], dV: [Double]) {
        let (q, k, v, g) = (try q.doubles(), try k.doubles(), try v.doubles(), try dO.doubles())
        let s = Double(scale)
        var o = [Double](repeating: 0, count: 6 * n * dv), dQ = [Double](repeating: 0, count: 6 * n * d)
        var dK = [Double](repeating: 0, count: 6 * m * d), dV = [Double](repeating: 0, count: 6 * m * dv)
        for b in 0..<6 {
            let (qb, kb, vb, ob) = (b * n * d, b * m * d, b * m * dv, b * n * dv)
            for i in 0..<n {
                var p = (0..<m).map { j in s * (0..<d).reduce(0.0) { $0 + q[qb + i * d + $1] * k[kb + j * d + $1] } }
                let top = p.max()!
                p = p.map { exp($0 - top) }
                let total = p.reduce(0, +)
                p = p.map { $0 / total }
                for c in 0..<dv { o[ob + i * dv + c] = (0..<m).reduce(0.0) { $0 + p[$1] * v[vb + $1 * dv + c] } }
                // dP = dO·Vᵀ, dS = P ∘ (dP − Σ_j P·dP), then dQ, dK, dV by the chain rule.
                let dP = (0..<m).map { j in (0..<dv).reduce(0.0) { $0 + g[ob + i * dv + $1] * v[vb + j * dv + $1] } }
                let mean = (0..<m).reduce(0.0) { $0 + p[$1] * dP[$1] }
                for j in 0..<m {
                    let dS = p[j] * (dP[j] - mean)
                    for c in 0..<d {
                        dQ[qb + i * d + c] += s * dS * k[kb + j * d + c]
                        dK[kb + j * d + c] += s * dS * q[qb + i * d + c]
                    }
                    for c in 0..<dv { dV[vb + j * dv + c] += p[j] * g[ob + i * dv + c] }
                }
            }
        }
        return (o, dQ, dK, dV)
    }

    /// Swaps axes 1 and 2 of a rank-4 tensor: [2, 3, rows, f] (batch 2, 3 heads) ↔ [2, rows, 3, f].
    private func swapTokensAndHeads(_ t: Tensor) throws -> Tensor {
        try SingleOp.run("Transpose", inputs: [t], attributes: ["perm": .ints([0, 2, 1, 3])])[0]
    }

    /// Forward and backward in `layout` on the test's tensors (the tokens-first ones made by swapping
    /// tokens and heads), with the results swapped back to heads-first: [O, dQ, dK, dV].
    private func run(_ layout: AttentionLayout, _ context: ExecutionContext, rowBlock: Int?, keyBlock: Int) throws -> [Tensor] {
        let (toLayout, back): ((Tensor) throws -> Tensor, (Tensor) throws -> Tensor) =
            layout == .tokensFirst ? (swapTokensAndHeads, swapTokensAndHeads) : ({ $0 }, { $0 })
        let (q, k, v, dO) = (try toLayout(q), try toLayout(k), try toLayout(v), try toLayout(dO))
        let o = try AttentionKernels.forward(q, k, v, scale: scale, layout: layout, label: "t", context: context,
                                             rowBlock: rowBlock, keyBlock: keyBlock)
        let grads = try AttentionKernels.backward(dO, q, k, v, o, scale: scale, layout: layout, label: "t", context: context,
                                                  rowBlock: rowBlock, keyBlock: keyBlock)
        return try ([o] + grads).map(back)
    }

    func testForwardAndBackwardMatchTheNaiveReferenceAtOddSizes() throws {
        let expected = try reference()
        for layout in AttentionLayout.allCases {
            for (rows, keys) in blockings {
                for threads in [1, 2] {
                    let r = try run(layout, ExecutionContext(threads: threads), rowBlock: rows, keyBlock: keys)
                    try NNTest.assertClose(r[0], expected.o, shape: lead + [n, dv], tolerance: 2e-6)
                    try NNTest.assertClose(r[1], expected.dQ, shape: lead + [n, d], tolerance: 1e-5)
                    try NNTest.assertClose(r[2], expected.dK, shape: lead + [m, d], tolerance: 1e-5)
                    try NNTest.assertClose(r[3], expected.dV, shape: lead + [m, dv], tolerance: 1e-5)
                }
            }
        }
    }

    /// Without streaming, the probabilities are the Softmax kernel's: the fused op equals
    /// MatMul(Softmax(MatMul(Q, Kᵀ) · scale), V) computed node by node, to float rounding.
    func testOnePassEqualsTheSoftmaxKernelWithinRounding() throws {
        let kT = try TransposeKernelsTestHelper.swapLast(k)
        let graph = Graph(nodes: [
            Node(name: "qk", opType: "MatMul", inputs: ["q", "kT"], outputs: ["s"]),
            Node(name: "scale", opType: "Mul", inputs: ["s", "c"], outputs: ["ss"]),
            Node(name: "softmax", opType: "Softmax", inputs: ["ss"], outputs: ["p"]),
            Node(name: "pv", opType: "MatMul", inputs: ["p", "v"], outputs: ["o"]),
        ], inputs: [ValueInfo(name: "q", type: TensorType(.float, known: q.shape)),
                    ValueInfo(name: "kT", type: TensorType(.float, known: kT.shape)),
                    ValueInfo(name: "v", type: TensorType(.float, known: v.shape))],
           outputs: [ValueInfo(name: "o", type: TensorType(.float, nil))])
        var g = graph
        g.setInitializer("c", Tensor(scalar: scale))
        let unfused = try Session(model: Model(graph: g, opsetImports: ["": 17]), options: SessionOptions(threads: 1, optimizingPasses: false))
            .run(["q": q, "kT": kT, "v": v])["o"]!
        let fused = try AttentionKernels.forward(q, k, v, scale: scale, label: "t", context: ExecutionContext(threads: 1))
        XCTAssertEqual(fused.shape, unfused.shape)
        for (a, b) in zip(try fused.doubles(), try unfused.doubles()) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    }

    func testBitIdenticalRunToRunAtOneTwoAndThreeThreads() throws {
        for layout in AttentionLayout.allCases {
            for (rows, keys) in blockings {
                var forwardAtOneThread: [Double]?
                for threads in [1, 2, 3] {
                    let context = ExecutionContext(threads: threads)
                    let results = { try self.run(layout, context, rowBlock: rows, keyBlock: keys).map { try $0.doubles() } }
                    let first = try results()
                    for _ in 0..<3 { XCTAssertEqual(try results(), first, "\(layout), \(threads) threads, blocks \(rows)×\(keys)") }
                    // Each row block is computed alike whichever thread takes it: the forward does not
                    // depend on the thread count at all.
                    if let one = forwardAtOneThread { XCTAssertEqual(first[0], one, "\(layout), \(threads) threads") } else { forwardAtOneThread = first[0] }
                }
            }
        }
    }

    func testMismatchedShapesAreOneErrorNamingTheNode() throws {
        XCTAssertThrowsError(try AttentionKernels.forward(q, NNTest.tensor(lead + [m, d + 1], seed: 9), v, scale: 1,
                                                          label: "node 'attn'", context: .singleThreaded)) { error in
            XCTAssertTrue("\(error)".contains("node 'attn'"), "\(error)")
        }
        // Tokens-first: K with 2 heads where Q has 3.
        XCTAssertThrowsError(try AttentionKernels.forward(try swapTokensAndHeads(q), NNTest.tensor([2, m, 2, d], seed: 9),
                                                          try swapTokensAndHeads(v), scale: 1, layout: .tokensFirst,
                                                          label: "node 'attn'", context: .singleThreaded)) { error in
            XCTAssertTrue("\(error)".contains("node 'attn'") && "\(error)".contains("BSHD"), "\(error)")
        }
    }
}

/// Kᵀ over the last two axes, for building the unfused graph's input.
private enum TransposeKernelsTestHelper {
    static func swapLast(_ t: Tensor) throws -> Tensor {
        let r = t.rank
        return try SingleOp.run("Transpose", inputs: [t], attributes: ["perm": .ints(Array(0..<(r - 2)) + [r - 1, r - 2])])[0]
    }
}
