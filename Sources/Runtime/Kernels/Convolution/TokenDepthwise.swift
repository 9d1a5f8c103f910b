import CKernels
import GraphIR

// TokenDepthwiseConv (fused domain, written by GraphIR/Passes/FuseTokenDepthwiseConv.swift): SegFormer's
// MixFFN convolution without its two Transposes,
//
//     TokenDepthwiseConv(X, W, shape, B; activation)
//       = Transpose(Reshape(Conv(Reshape(Transpose(X), shape), W, B), [B, C, H·W]))   (then GELU)
//
// X [B, N, C] tokens, channels last; `shape` the NCHW target [B, C, H, W] that the first Reshape
// resolves against the transposed tokens [B, C, N]; W [C, 1, KH, KW] (KH, KW odd, one channel per
// group, stride 1, zero padding (K − 1)/2: the output has the input's size); B [C] optional. The
// result has X's shape and layout. Each output position is a vector of C channels (contiguous, so the
// C kernel vectorises over channels); threads split the B·H output rows in fixed chunks, and every
// output is computed by one thread in one order, so the bits do not depend on the thread count.
extension Convolution {
    static func tokenDepthwiseKernel(_ node: Node) throws -> Kernel {
        let label = node.label
        let activation = try node.string("activation", default: "")
        guard activation.isEmpty || activation == OpType.gelu else {
            throw SegFormerError.invalid("\(label): TokenDepthwiseConv activation must be Gelu or absent, got '\(activation)'")
        }
        let allowZero = try node.int("allowzero", default: 0) != 0
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0, "X"), w = try inputs.required(1, "W")
            let target = try inputs.required(2, "shape").integers()
            let bias = inputs.optional(3)
            for t in [x, w] + [bias].compactMap({ $0 }) where t.dataType != .float {
                throw SegFormerError.unsupported("\(label): TokenDepthwiseConv of \(t.dataType) tensors (float32 only)")
            }
            guard x.rank == 3 else {
                throw SegFormerError.invalid("\(label): TokenDepthwiseConv tokens must be [batch, tokens, channels], got \(x.shape)")
            }
            let (n, tokens, c) = (x.shape[0], x.shape[1], x.shape[2])
            let nchw = try OpRegistry.reshapeShape([n, c, tokens], target, allowZero: allowZero, label)
            guard nchw.count == 4, nchw[0] == n, nchw[1] == c else {
                throw SegFormerError.invalid("\(label): TokenDepthwiseConv shape \(target) does not split the \(tokens) tokens of \(x.shape) into rows and columns")
            }
            guard w.rank == 4, w.shape[0] == c, w.shape[1] == 1, w.shape[2] % 2 == 1, w.shape[3] % 2 == 1 else {
                throw SegFormerError.invalid("\(label): TokenDepthwiseConv weight must be [\(c), 1, KH, KW] with KH, KW odd, got \(w.shape)")
            }
            if let bias, bias.shape != [c] {
                throw SegFormerError.invalid("\(label): TokenDepthwiseConv bias must be [\(c)], got \(bias.shape)")
            }
            return [withExtendedLifetime(bias) {
                tokenDepthwise(x, w, bias, height: nchw[2], width: nchw[3], gelu: !activation.isEmpty, context)
            }]
        }
    }

    static func tokenDepthwise(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, height: Int, width: Int, gelu: Bool,
                               _ context: ExecutionContext) -> Tensor {
        let out = Tensor(uninitialized: .float, shape: x.shape)
        let (n, c) = (x.shape[0], x.shape[2]), (kh, kw) = (w.shape[2], w.shape[3])
        if out.count == 0 { return out }
        // The taps channel-last: [KH·KW, C], so each tap is a vector of C weights.
        let taps = kh * kw
        let weights = [Float](unsafeUninitializedCapacity: taps * c) { buf, count in
            let pw = w.pointer(Float.self)
            for ch in 0..<c { for t in 0..<taps { buf[t * c + ch] = pw[ch * taps + t] } }
            count = taps * c
        }
        let px = x.pointer(Float.self), py = out.pointer(Float.self), pb = bias.map { UnsafePointer($0.pointer(Float.self)) }
        let image = height * width * c
        weights.withUnsafeBufferPointer { pw in
            // Rows of all images in one range; a chunk that crosses images is cut at their boundary.
            context.parallelFor(n * height, minimumPerChunk: max(1, 16384 / max(1, width * c * taps))) { start, end in
                var row = start
                while row < end {
                    let img = row / height, first = row % height
                    let last = min(height, first + (end - row))
                    ck_depthwise_tokens_rows(px + img * image, pw.baseAddress!, pb, py + img * image,
                                             height, width, c, kh, kw, first, last, gelu ? 1 : 0)
                    row += last - first
                }
            }
        }
        return out
    }
}
