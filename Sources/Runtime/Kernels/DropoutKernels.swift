import CKernels
import Foundation
import GraphIR

// CPU kernels of training-mode Dropout and its gradient: the schemas are in Ops/ShapeManipulation.swift.
enum DropoutKernels {
    /// Training-mode dropout. Keeps element i when u_i ≥ ratio: with a `seed` attribute, u_i is the i-th
    /// double of numpy's legacy `RandomState(seed).uniform` stream (MT19937), which is how ONNX's
    /// reference draws the mask; without one, u_i comes from the session's counter-based random stream
    /// keyed by the node (reproducible from `--seed` on any thread count). Kept elements are scaled by
    /// 1/(1-ratio) computed in the tensor's precision.
    static func forward(_ x: Tensor, ratio: Double, seed: Int?, stream: (context: ExecutionContext, key: String),
                        wantsMask: Bool, _ label: String) throws -> [Tensor] {
        let n = x.count
        let y = Tensor(uninitialized: x.dataType, shape: x.shape)
        if x.dataType == .float {
            // float32: each chunk's mask is applied while it is in cache.
            let s = x.pointer(Float.self), d = y.pointer(Float.self)
            let scale = 1 / (1 - Float(ratio))
            let mask: Tensor
            if let seed {
                mask = seededMask(seed: seed, ratio: ratio, shape: x.shape)
                ck_dropout_forward(s, mask.pointer(Bool.self), scale, d, n)
            } else {
                mask = Tensor(uninitialized: .bool, shape: x.shape)
                let m = mask.pointer(Bool.self)
                stream.context.random.keepMask(node: stream.key, count: n, ratio: ratio, context: stream.context, m) { first, count in
                    ck_dropout_forward(s + first, m + first, scale, d + first, count)
                }
            }
            return wantsMask ? [y, mask] : [y]
        }
        let mask: Tensor
        if let seed {
            mask = seededMask(seed: seed, ratio: ratio, shape: x.shape)
        } else {
            mask = Tensor(uninitialized: .bool, shape: x.shape)
            stream.context.random.keepMask(node: stream.key, count: n, ratio: ratio, context: stream.context, mask.pointer(Bool.self))
        }
        let m = mask.pointer(Bool.self)
        func apply<T: BinaryFloatingPoint>(_: T.Type) {
            let s = x.pointer(T.self), d = y.pointer(T.self)
            let scale = T(1) / (T(1) - T(Float(ratio)))
            for i in 0..<n { d[i] = m[i] ? s[i] * scale : s[i] * 0 }
        }
        switch x.dataType {
        case .double:
            let s = x.pointer(Double.self), d = y.pointer(Double.self)
            let scale = 1 / (1 - ratio)
            for i in 0..<n { d[i] = m[i] ? s[i] * scale : s[i] * 0 }
        case .float16: apply(Float16.self)
        case .bfloat16:
            let s = x.pointer(BFloat16.self), d = y.pointer(BFloat16.self)
            let scale = 1 / (1 - Float(ratio))
            for i in 0..<n { d[i] = BFloat16(m[i] ? s[i].float * scale : s[i].float * 0) }
        default:
            throw SegFormerError.unsupported("\(label): training-mode dropout of \(x.dataType) tensors")
        }
        return wantsMask ? [y, mask] : [y]
    }

    /// The mask ONNX's reference draws for a `seed` attribute: element i is kept when the i-th double of
    /// numpy's legacy `RandomState(seed)` stream (MT19937) is ≥ ratio. The forward reseeds on every run,
    /// so the backward draws the same mask again.
    static func seededMask(seed: Int, ratio: Double, shape: [Int]) -> Tensor {
        var rng = MT19937(seed: UInt32(truncatingIfNeeded: seed))
        let mask = Tensor(uninitialized: .bool, shape: shape)
        let m = mask.pointer(Bool.self)
        for i in 0..<mask.count { m[i] = rng.nextDouble() >= ratio }
        return mask
    }

    /// dX = dY · mask / (1 − ratio), the scale computed in the tensor's precision as the forward does.
    static func backward(_ dy: Tensor, mask: Tensor, ratio: Double, _ label: String, context: ExecutionContext) throws -> Tensor {
        let n = dy.count
        let m = mask.pointer(Bool.self)
        let out = Tensor(uninitialized: dy.dataType, shape: dy.shape)
        if dy.dataType == .float {
            let s = dy.pointer(Float.self), d = out.pointer(Float.self), scale = 1 / (1 - Float(ratio))
            let per = RandomStream.chunkElements
            context.parallelFor((n + per - 1) / per) { start, end in
                let first = start * per
                ck_dropout_backward(s + first, m + first, scale, d + first, min(n, end * per) - first)
            }
            return out
        }
        func apply<T: BinaryFloatingPoint>(_: T.Type, _ scale: T) {
            let s = dy.pointer(T.self), d = out.pointer(T.self)
            for i in 0..<n { d[i] = m[i] ? s[i] * scale : 0 }
        }
        switch dy.dataType {
        case .double: apply(Double.self, 1 / (1 - ratio))
        case .float16: apply(Float16.self, Float16(1) / (Float16(1) - Float16(Float(ratio))))
        case .bfloat16:
            let s = dy.pointer(BFloat16.self), d = out.pointer(BFloat16.self)
            let scale = 1 / (1 - Float(ratio))
            for i in 0..<n { d[i] = BFloat16(m[i] ? s[i].float * scale : 0) }
        default:
            throw SegFormerError.unsupported("\(label): Dropout gradient of \(dy.dataType) tensors")
        }
        return out
    }
}
