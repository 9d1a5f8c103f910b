import GraphIR

// CPU kernels of the Transpose family: the schemas (what each op means) are in Ops/Transpose.swift.
// Every one is a transpose of a reshaped view, done as one strided copy (see StridedCopy.swift).
enum TransposeKernels {
    /// Transpose by `perm` (already checked to be a permutation of x's axes).
    static func transpose(_ x: Tensor, perm: [Int], context: ExecutionContext) throws -> Tensor {
        try permuted(x, shape: x.shape, perm: perm, context)
    }

    /// Transposes `x` seen with the (same element count) shape `shape` by `perm`.
    static func permuted(_ x: Tensor, shape: [Int], perm: [Int], _ context: ExecutionContext) throws -> Tensor {
        let inStrides = Strides.rowMajor(shape)
        if perm == Array(0..<perm.count) { return x.reshaped(shape) }   // identity: a view
        return try StridedCopy.materialize(x, offset: 0, shape: perm.map { shape[$0] },
                                           strides: perm.map { inStrides[$0] }, context: context)
    }

    /// DepthToSpace with block size `b` in `mode` ("DCR" or "CRD"): [N, C, H, W] → [N, C/b², H·b, W·b].
    static func depthToSpace(_ x: Tensor, blockSize b: Int, mode: String, label: String,
                             context: ExecutionContext) throws -> Tensor {
        guard x.rank == 4, x.shape[1] % (b * b) == 0 else {
            throw SegFormerError.invalid("\(label): input shape \(x.shape) must be [N, C, H, W] with C divisible by \(b * b)")
        }
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let cc = c / (b * b)
        let y: Tensor
        if mode == "DCR" {
            y = try permuted(x, shape: [n, b, b, cc, h, w], perm: [0, 3, 4, 1, 5, 2], context)
        } else {
            y = try permuted(x, shape: [n, cc, b, b, h, w], perm: [0, 1, 4, 2, 5, 3], context)
        }
        return y.reshaped([n, cc, h * b, w * b])
    }

    /// SpaceToDepth with block size `b`: [N, C, H, W] → [N, C·b², H/b, W/b].
    static func spaceToDepth(_ x: Tensor, blockSize b: Int, label: String, context: ExecutionContext) throws -> Tensor {
        guard x.rank == 4, x.shape[2] % b == 0, x.shape[3] % b == 0 else {
            throw SegFormerError.invalid("\(label): input shape \(x.shape) must be [N, C, H, W] with H and W divisible by \(b)")
        }
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let y = try permuted(x, shape: [n, c, h / b, b, w / b, b], perm: [0, 3, 5, 1, 2, 4], context)
        return y.reshaped([n, c * b * b, h / b, w / b])
    }

    /// DepthToSpaceGrad: dY [N, C, H·b, W·b] → [N, C·b², H, W], the inverse rearrangement of DepthToSpace
    /// in `mode`.
    static func depthToSpaceBackward(_ dy: Tensor, blockSize b: Int, mode: String, label: String,
                                     context: ExecutionContext) throws -> Tensor {
        guard dy.rank == 4, dy.shape[2] % b == 0, dy.shape[3] % b == 0 else {
            throw SegFormerError.invalid("\(label): gradient shape \(dy.shape) must be [N, C, H, W] with H and W divisible by \(b)")
        }
        let (n, c, h, w) = (dy.shape[0], dy.shape[1], dy.shape[2] / b, dy.shape[3] / b)
        // Forward: x [n, b, b, c, h, w] (DCR) or [n, c, b, b, h, w] (CRD) → y [n, c, h, b, w, b].
        let perm = mode == "DCR" ? [0, 3, 5, 1, 2, 4] : [0, 1, 3, 5, 2, 4]
        let g = try permuted(dy, shape: [n, c, h, b, w, b], perm: perm, context)
        return g.reshaped([n, c * b * b, h, w])
    }
}
