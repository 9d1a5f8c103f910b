import CBLAS
import GraphIR
import Runtime

/// Every SegFormer-b0 Conv and MatMul shape forward (batch 1, 512×512) with its GFLOP/s, and raw
/// OpenBLAS sgemm on the 1×1 convs' shapes as the ceiling under the same conditions; 2 threads.
func convMatMulForward() throws {
    let timer = Timer(.wall, threads: 2, repeats: 5, nameWidth: 40)
    // A table of SegFormer-b0's shapes: its rows look alike on purpose.
    // (label, input shape, weight shape, group, stride, pad)
    let convs: [(String, [Int], [Int], Int, Int, Int)] = [
        ("patch1 7x7 s4 3→32", [1, 3, 512, 512], [32, 3, 7, 7], 1, 4, 3),
        ("sr1 k8 s8 32→32", [1, 32, 128, 128], [32, 32, 8, 8], 1, 8, 0),
        ("dw1 3x3 128ch @128²", [1, 128, 128, 128], [128, 1, 3, 3], 128, 1, 1),
        ("patch2 3x3 s2 32→64", [1, 32, 128, 128], [64, 32, 3, 3], 1, 2, 1),
        ("sr2 k4 s4 64→64", [1, 64, 64, 64], [64, 64, 4, 4], 1, 4, 0),
        ("dw2 3x3 256ch @64²", [1, 256, 64, 64], [256, 1, 3, 3], 256, 1, 1),
        ("patch3 3x3 s2 64→160", [1, 64, 64, 64], [160, 64, 3, 3], 1, 2, 1),
        ("sr3 k2 s2 160→160", [1, 160, 32, 32], [160, 160, 2, 2], 1, 2, 0),
        ("dw3 3x3 640ch @32²", [1, 640, 32, 32], [640, 1, 3, 3], 640, 1, 1),
        ("patch4 3x3 s2 160→256", [1, 160, 32, 32], [256, 160, 3, 3], 1, 2, 1),
        ("dw4 3x3 1024ch @16²", [1, 1024, 16, 16], [1024, 1, 3, 3], 1024, 1, 1),
        ("fuse 1x1 1024→256 @128²", [1, 1024, 128, 128], [256, 1024, 1, 1], 1, 1, 0),
        ("classifier 1x1 256→150 @128²", [1, 256, 128, 128], [150, 256, 1, 1], 1, 1, 0),
    ]
    for (label, xs, ws, group, s, p) in convs {
        let x = try random(xs, seed: 1), w = try random(ws, seed: 2), b = try random([ws[0]], seed: 3)
        let attributes: [String: Attribute] = ["group": .int(group), "strides": .ints([s, s]), "pads": .ints([p, p, p, p])]
        let y = try timer.op(OpType.conv, [x, w, b], attributes)[0]
        let flop = 2.0 * Double(y.count) * Double(ws[1] * ws[2] * ws[3])
        try timer.time(label, detail: gflops(flop)) { _ = try timer.op(OpType.conv, [x, w, b], attributes) }
    }
    for (m, n, k) in [(256, 16384, 1024), (150, 16384, 256), (2048, 2048, 2048)] {
        let a = try random([m, k], seed: 1), b = try random([k, n], seed: 2)
        let c = Tensor(uninitialized: .float, shape: [m, n])
        openblas_set_num_threads(Int32(timer.context.threads))
        timer.time("raw sgemm \(m)×\(n)×\(k)", detail: gflops(2.0 * Double(m * n * k))) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1,
                        a.pointer(Float.self), Int32(k), b.pointer(Float.self), Int32(n), 0, c.pointer(Float.self), Int32(n))
        }
    }
    let matmuls: [(String, [Int], [Int])] = [
        ("mlp1 [16384,32]x[32,128]", [1, 16384, 32], [32, 128]),
        ("attn1 QK [16384,32]x[32,256]", [1, 1, 16384, 32], [1, 1, 32, 256]),
        ("attn2 QK 2 heads [4096,32]x[32,256]", [1, 2, 4096, 32], [1, 2, 32, 256]),
        ("attn4 QK 8 heads [256,32]x[32,256]", [1, 8, 256, 32], [1, 8, 32, 256]),
        ("mlp4 [256,256]x[256,1024]", [1, 256, 256], [256, 1024]),
        ("head linear_c1 [16384,32]x[32,256]", [1, 16384, 32], [32, 256]),
    ]
    for (label, sa, sb) in matmuls {
        let a = try random(sa, seed: 1), b = try random(sb, seed: 2)
        let y = try timer.op(OpType.matMul, [a, b])[0]
        try timer.time(label, detail: gflops(2.0 * Double(y.count) * Double(sa.last!))) { _ = try timer.op(OpType.matMul, [a, b]) }
    }
}

/// A timing's rate for `flop` floating-point operations.
func gflops(_ flop: Double) -> (Double) -> String { { ms in String(format: "%.1f GFLOP/s", flop / ms / 1e6) } }

/// float32 products on each GEMM library there is (`--gemm`), 2 threads: the encoder's skinny shapes
/// (M = 16384 tokens at 512²) and a square one; then a linear layer with its bias and residual as
/// MatMul → Add → Add beside the one FusedMatMul the fuse-matmul-epilogue pass makes of it.
func gemmLibraries() throws {
    let timer = Timer(.wall, threads: 2, repeats: 10, nameWidth: 44)
    let initial = GEMMLibrary.current
    defer { try? GEMMLibrary.use(initial) }
    let libraries = GEMMLibrary.allCases.filter { $0 == .openBLAS || GEMMLibrary.oneDNNAvailable }
    for (m, n, k) in [(16384, 32, 32), (16384, 128, 32), (16384, 32, 256), (16384, 256, 32), (16384, 256, 1024), (2048, 2048, 2048)] {
        let a = try random([m, k], seed: 1), b = try random([k, n], seed: 2)
        for library in libraries {
            try GEMMLibrary.use(library)
            try timer.time("\(library.rawValue) \(m)×\(n)×\(k)", detail: gflops(2.0 * Double(m * n * k))) {
                _ = try timer.op(OpType.matMul, [a, b])
            }
        }
    }
    // Stage 1's MLP output (fc2: 128 → 32 channels over 16384 tokens) and stage 4's, with bias and residual.
    for (tokens, k, n) in [(16384, 128, 32), (256, 1024, 256)] {
        let x = try random([1, tokens, k], seed: 3), w = try random([k, n], seed: 4)
        let bias = try random([n], seed: 5), residual = try random([1, tokens, n], seed: 6)
        for library in libraries {
            try GEMMLibrary.use(library)
            try timer.time("\(library.rawValue) MatMul+Add+Add [\(tokens),\(k)]x[\(k),\(n)]") {
                let y = try timer.op(OpType.matMul, [x, w])[0]
                _ = try timer.op(OpType.add, [try timer.op(OpType.add, [y, bias])[0], residual])
            }
            try timer.time("\(library.rawValue) FusedMatMul [\(tokens),\(k)]x[\(k),\(n)]") {
                _ = try timer.op(OpType.fusedMatMul, domain: fusedDomain, [x, w, bias, residual])
            }
        }
    }
}

/// Backward kernels vs the forward of the same layer at SegFormer-b0 shapes (batch 2, 512×512),
/// 2 threads: one table row per layer.
func convMatMulGradients() throws {
    let timer = Timer(.wall, threads: 2, repeats: 3)
    let d = trainingDomain
    print("layer | forward ms | dX ms | dW ms | dB ms | backward/forward")
    let convs: [(String, [Int], [Int], [String: Attribute])] = [
        ("patch embed 1 (7×7 s4)", [2, 3, 512, 512], [32, 3, 7, 7], ["strides": .ints([4, 4]), "pads": .ints([3, 3, 3, 3])]),
        ("spatial reduction 1 (8×8 s8)", [2, 32, 128, 128], [32, 32, 8, 8], ["strides": .ints([8, 8])]),
        ("MixFFN dwconv 1 (3×3, 128 ch, 128²)", [2, 128, 128, 128], [128, 1, 3, 3], ["group": .int(128), "pads": .ints([1, 1, 1, 1])]),
        ("patch embed 2 (3×3 s2)", [2, 32, 128, 128], [64, 32, 3, 3], ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])]),
        ("spatial reduction 2 (4×4 s4)", [2, 64, 64, 64], [64, 64, 4, 4], ["strides": .ints([4, 4])]),
        ("MixFFN dwconv 2 (3×3, 256 ch, 64²)", [2, 256, 64, 64], [256, 1, 3, 3], ["group": .int(256), "pads": .ints([1, 1, 1, 1])]),
        ("patch embed 3 (3×3 s2)", [2, 64, 64, 64], [160, 64, 3, 3], ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])]),
        ("MixFFN dwconv 4 (3×3, 1024 ch, 16²)", [2, 1024, 16, 16], [1024, 1, 3, 3], ["group": .int(1024), "pads": .ints([1, 1, 1, 1])]),
        ("decode fuse (1×1 1024→256, 128²)", [2, 1024, 128, 128], [256, 1024, 1, 1], [:]),
    ]
    var totalForward = 0.0, totalBackward = 0.0
    for (name, xs, ws, attributes) in convs {
        let x = try random(xs, seed: 1), w = try random(ws, seed: 2), b = try random([ws[0]], seed: 3)
        let dy = try random(try timer.op(OpType.conv, [x, w, b], attributes)[0].shape, seed: 4)
        let f = try timer.best { _ = try timer.op(OpType.conv, [x, w, b], attributes) }
        let dx = try timer.best { _ = try timer.op("ConvGradInput", domain: d, [dy, w, ints(xs)], attributes) }
        let dw = try timer.best { _ = try timer.op("ConvGradWeight", domain: d, [dy, x, ints(ws)], attributes) }
        let db = try timer.best { _ = try timer.op("ConvGradBias", domain: d, [dy]) }
        totalForward += f; totalBackward += dx + dw + db
        print("\(name) | " + String(format: "%.2f | %.2f | %.2f | %.2f | %.2f", f, dx, dw, db, (dx + dw + db) / f))
    }
    let matmuls: [(String, [Int], [Int])] = [
        ("MixFFN fc1 1 [2,16384,32]×[32,128]", [2, 16384, 32], [32, 128]),
        ("MixFFN fc2 1 [2,16384,128]×[128,32]", [2, 16384, 128], [128, 32]),
        ("attention QKᵀ 1 [2,1,16384,32]×[2,1,32,256]", [2, 1, 16384, 32], [2, 1, 32, 256]),
        ("attention PV 1 [2,1,16384,256]×[2,1,256,32]", [2, 1, 16384, 256], [2, 1, 256, 32]),
        ("attention QKᵀ 2 [2,2,4096,32]×[2,2,32,256]", [2, 2, 4096, 32], [2, 2, 32, 256]),
        ("decode MLP 4 [2,256,256]×[256,256]", [2, 256, 256], [256, 256]),
    ]
    for (name, sa, sb) in matmuls {
        let a = try random(sa, seed: 1), b = try random(sb, seed: 2)
        let dy = try random(try timer.op(OpType.matMul, [a, b])[0].shape, seed: 3)
        let f = try timer.best { _ = try timer.op(OpType.matMul, [a, b]) }
        let da = try timer.best { _ = try timer.op("MatMulGrad", domain: d, [dy, b, ints(sa)], ["input": .int(0)]) }
        let db = try timer.best { _ = try timer.op("MatMulGrad", domain: d, [dy, a, ints(sb)], ["input": .int(1)]) }
        totalForward += f; totalBackward += da + db
        print("\(name) | " + String(format: "%.2f | %.2f (dA) | %.2f (dB) | - | %.2f", f, da, db, (da + db) / f))
    }
    print(String(format: "total forward %.1f ms, backward %.1f ms", totalForward, totalBackward))
}

/// oneDNN GEMMs whose weight B is packed once (the kernels of a compiled model, `PackedWeights`) against
/// the same kernels calling dnnl_sgemm, which packs B on every call: FusedMatMul at the encoder's
/// linear layers (M × K × N; 512 × K × N is TokenDepthwiseConv's per-band fc2 product), then
/// ChannelsLastConv's spatial reductions and patch embeddings 2–4, 1 and 2 threads, interleaved.
func gemmPacking() throws {
    guard GEMMLibrary.current == .oneDNN else {
        print("oneDNN is not in use (\(GEMMLibrary.current.rawValue)): nothing to compare")
        return
    }
    for threads in [1, 2] {
        let timer = Timer(.wall, threads: threads, repeats: 20, nameWidth: 48)
        for (m, k, n) in [(16384, 32, 32), (16384, 32, 128), (16384, 128, 32), (16384, 32, 256), (4096, 64, 64), (4096, 64, 256),
                          (4096, 256, 64), (1024, 160, 160), (1024, 160, 640), (1024, 640, 160), (256, 256, 256),
                          (256, 256, 1024), (256, 1024, 256), (512, 128, 32), (512, 256, 64), (512, 640, 160)] {
            let a = try random([1, m, k], seed: 1), b = try random([k, n], seed: 2)
            let plain = try SingleOp.preparedKernel(OpType.fusedMatMul, domain: fusedDomain, constants: [nil, nil])
            let packed = try SingleOp.preparedKernel(OpType.fusedMatMul, domain: fusedDomain, constants: [nil, b])
            for (name, kernel) in [("sgemm", plain), ("packed", packed)] {
                try timer.time("\(name) FusedMatMul \(m)×\(k)×\(n)", detail: gflops(2.0 * Double(m * n * k))) {
                    _ = try kernel.run([a, b], timer.context)
                }
            }
        }
        // (name, tokens side, C, M, kernel, stride, pad) on channels-last input [1, side, side, C].
        let convs: [(String, Int, Int, Int, Int, Int, Int)] = [
            ("spatial reduction 1", 128, 32, 32, 8, 8, 0), ("spatial reduction 2", 64, 64, 64, 4, 4, 0),
            ("spatial reduction 3", 32, 160, 160, 2, 2, 0), ("patch embedding 2", 128, 32, 64, 3, 2, 1),
            ("patch embedding 3", 64, 64, 160, 3, 2, 1), ("patch embedding 4", 32, 160, 256, 3, 2, 1)]
        for (name, side, c, m, k, s, p) in convs {
            let x = try random([1, side, side, c], seed: 1), w = try random([m, k, k, c], seed: 2), b = try random([m], seed: 3)
            let attributes: [String: Attribute] = ["kernel_shape": .ints([k, k]), "strides": .ints([s, s]),
                                                   "pads": .ints([p, p, p, p]), "channels_last_input": .int(1)]
            let plain = try SingleOp.preparedKernel(OpType.channelsLastConv, domain: fusedDomain, constants: [nil, nil, nil],
                                                    attributes: attributes)
            let packed = try SingleOp.preparedKernel(OpType.channelsLastConv, domain: fusedDomain, constants: [nil, w, b],
                                                     attributes: attributes)
            for (label, kernel) in [("sgemm", plain), ("packed", packed)] {
                try timer.time("\(label) ChannelsLastConv \(name)") { _ = try kernel.run([x, w, b], timer.context) }
            }
        }
    }
}
