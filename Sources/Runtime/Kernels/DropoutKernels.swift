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
        let mask: Tensor
        if let seed {
            mask = seededMask(seed: seed, ratio: ratio, shape: x.shape)
        } else {
            mask = Tensor(uninitialized: .bool, shape: x.shape)
            let u = Tensor(uninitialized: .float, shape: x.shape)
            let up = u.pointer(Float.self), m = mask.pointer(Bool.self)
            stream.context.random.uniforms(node: stream.key, count: n, context: stream.context, up)
            for i in 0..<n { m[i] = Double(up[i]) >= ratio }
        }
        let m = mask.pointer(Bool.self)
        let y = Tensor(uninitialized: x.dataType, shape: x.shape)
        func apply<T: BinaryFloatingPoint>(_: T.Type) {
            let s = x.pointer(T.self), d = y.pointer(T.self)
            let scale = T(1) / (T(1) - T(Float(ratio)))
            for i in 0..<n { d[i] = m[i] ? s[i] * scale : s[i] * 0 }
        }
        switch x.dataType {
        case .float: apply(Float.self)
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
    static func backward(_ dy: Tensor, mask: Tensor, ratio: Double, _ label: String) throws -> Tensor {
        let n = dy.count
        let m = mask.pointer(Bool.self)
        let out = Tensor(uninitialized: dy.dataType, shape: dy.shape)
        func apply<T: BinaryFloatingPoint>(_: T.Type, _ scale: T) {
            let s = dy.pointer(T.self), d = out.pointer(T.self)
            for i in 0..<n { d[i] = m[i] ? s[i] * scale : 0 }
        }
        switch dy.dataType {
        case .float: apply(Float.self, 1 / (1 - Float(ratio)))
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
