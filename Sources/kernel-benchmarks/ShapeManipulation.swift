import GraphIR
import Runtime

/// Transpose, Concat and Slice forward at the SegFormer-b0 data-movement shapes, all cores, with the
/// bandwidth each reaches (bytes read + written).
func shapeOpsForward() throws {
    let timer = Timer(.wall, threads: ExecutionContext.coreCount, repeats: 7, nameWidth: 44)
    func bandwidth(_ bytes: Int) -> (Double) -> String { { ms in String(format: "%.1f GB/s read+write", Double(2 * bytes) / ms / 1e6) } }
    for (shape, perm) in [([1, 16384, 32], [0, 2, 1]), ([1, 32, 16384], [0, 2, 1]), ([1, 16384, 1, 32], [0, 2, 1, 3]),
                          ([1, 1024, 2, 32], [0, 2, 1, 3]), ([1, 256, 5, 32], [0, 2, 1, 3]), ([1, 64, 8, 32], [0, 2, 3, 1]),
                          ([1, 128, 128, 32], [0, 3, 1, 2]), ([1, 64, 64, 64], [0, 3, 1, 2]), ([1, 16384, 256], [0, 2, 1]),
                          ([1, 16384, 128], [0, 2, 1]), ([1, 128, 16384], [0, 2, 1]), ([1, 4096, 256], [0, 2, 1]),
                          ([1, 256, 4096], [0, 2, 1]), ([1, 1024, 640], [0, 2, 1]), ([1, 640, 1024], [0, 2, 1])] {
        let x = try random(shape)
        try timer.time("Transpose \(shape) \(perm)", detail: bandwidth(x.count * 4)) {
            _ = try timer.op(OpType.transpose, [x], ["perm": .ints(perm)])
        }
    }
    let parts = try (0..<4).map { try random([1, 256, 128, 128], seed: UInt64($0)) }
    try timer.time("Concat 4×[1,256,128,128] axis 1", detail: bandwidth(4 * 4 * 256 * 128 * 128)) {
        _ = try timer.op(OpType.concat, parts, ["axis": .int(1)])
    }
    let big = try random([1, 16384, 256])
    try timer.time("Slice [1,16384,256] last axis 0..<128", detail: bandwidth(16384 * 128 * 4)) {
        _ = try timer.op(OpType.slice, [big, ints([0]), ints([128]), ints([2])])
    }
}

/// Forward vs backward of the shape-family kernels at SegFormer-b0 training sizes (batch 2,
/// 512×512), on 1 and on 2 threads.
func shapeGradients() throws {
    let tr = trainingDomain
    for threads in [1, 2] {
        let timer = Timer(.wall, threads: threads, repeats: 5, nameWidth: 60)
        // Decode head: 4 × [2, 256, 128, 128] concatenated on channels.
        let parts = try (0..<4).map { try random([2, 256, 128, 128], seed: UInt64($0)) }
        let dy = try random([2, 1024, 128, 128], seed: 9)
        let partShape = ints([2, 256, 128, 128])
        try timer.time("Concat fwd 4×[2,256,128,128] axis 1") { _ = try timer.op(OpType.concat, parts, ["axis": .int(1)]) }
        try timer.time("ConcatGrad [2,1024,128,128] → 4 parts") {
            _ = try timer.op("ConcatGrad", domain: tr, [dy, partShape, partShape, partShape, partShape],
                             ["axis": .int(1), "select": .ints([0, 1, 2, 3])], outputCount: 4)
        }
        // Patch-embedding transpose [2, 32, 16384] ↔ [2, 16384, 32] and its backward.
        let x = try random([2, 32, 16384], seed: 1), g = try random([2, 16384, 32], seed: 2)
        try timer.time("Transpose fwd [2,32,16384] perm [0,2,1]") { _ = try timer.op(OpType.transpose, [x], ["perm": .ints([0, 2, 1])]) }
        try timer.time("Transpose bwd [2,16384,32] perm [0,2,1]") { _ = try timer.op(OpType.transpose, [g], ["perm": .ints([0, 2, 1])]) }
        // Slice of half the channels with step 2 and its scatter.
        let s = try random([2, 64, 128, 128], seed: 3)
        let sliceInputs = [s, ints([1]), ints([64]), ints([1]), ints([2])]
        let sliced = try timer.op(OpType.slice, sliceInputs)[0]
        try timer.time("Slice fwd [2,64,128,128] step 2 axis 1") { _ = try timer.op(OpType.slice, sliceInputs) }
        try timer.time("SliceGrad → [2,64,128,128]") {
            _ = try timer.op("SliceGrad", domain: tr, [sliced, ints([2, 64, 128, 128]), ints([1]), ints([64]), ints([1]), ints([2])])
        }
        // Embedding-like gather of rows.
        let table = try random([4096, 256], seed: 4), rows = Tensor((0..<8192).map { Int64(($0 * 7919) % 4096) }, shape: [8192])
        let gy = try random([8192, 256], seed: 5)
        try timer.time("Gather fwd [4096,256] × 8192 rows") { _ = try timer.op("Gather", [table, rows]) }
        try timer.time("GatherGrad 8192 rows → [4096,256]") { _ = try timer.op("GatherGrad", domain: tr, [gy, rows, ints([4096, 256])]) }
    }
}
