import Foundation
import GraphIR

// CPU kernels of the Gather family: the schemas (what each op means) are in Ops/Gather.swift.
enum GatherKernels {
    /// Gather: the slices of `x` along `axis` picked by `indices` (any rank, possibly negative).
    static func gather(_ x: Tensor, indices: Tensor, axis axisAttr: Int, label: String,
                       context: ExecutionContext) throws -> Tensor {
        let axis = try Axes.normalise(axisAttr, rank: x.rank, label)
        let n = x.shape[axis]
        // Normalise the indices once (they are few: a row list, or shape arithmetic).
        let idx = try normalisedIndices(indices, axis: axis, dataShape: x.shape, label: label)
        let outShape = Array(x.shape[..<axis]) + indices.shape + Array(x.shape[(axis + 1)...])
        var out = Tensor(uninitialized: x.dataType, shape: outShape)
        if out.count == 0 { return out }
        let outer = Tensor.elementCount(Array(x.shape[..<axis]))
        let inner = Tensor.elementCount(Array(x.shape[(axis + 1)...]))
        let m = idx.count
        if x.dataType == .string {
            var strings = [String]()
            strings.reserveCapacity(out.count)
            for o in 0..<outer { for j in idx { strings += x.strings[((o * n + j) * inner)..<((o * n + j + 1) * inner)] } }
            out.strings = strings
            return out
        }
        let es = try Movement.elementSize(x.dataType)
        let src = UnsafeRawPointer(x.storage.pointer), dst = out.storage.pointer
        func small<T>(_: T.Type) {
            let s = src.assumingMemoryBound(to: T.self), d = dst.assumingMemoryBound(to: T.self)
            var w = 0
            for o in 0..<outer {
                for j in idx {
                    let base = (o * n + j) * inner
                    for i in 0..<inner { d[w + i] = s[base + i] }
                    w += inner
                }
            }
        }
        let rowBytes = inner * es
        if rowBytes <= 32 && out.count <= 1 << 16 {
            // A width switch like Pad's (SliceConcatKernels.swift): Swift closures cannot be generic, so each
            // byte-moving kernel switches onto its own generic function.
            switch es {
            case 1: small(UInt8.self)
            case 2: small(UInt16.self)
            case 4: small(UInt32.self)
            default: small(UInt64.self)
            }
            return out
        }
        // Row copies, parallel over (outer, index) pairs.
        context.parallelFor(outer * m, minimumPerChunk: max(1, 65536 / max(rowBytes, 1))) { s, e in
            idx.withUnsafeBufferPointer { ip in
                for r in s..<e {
                    let o = r / m, j = ip[r % m]
                    memcpy(dst + r * rowBytes, src + (o * n + j) * rowBytes, rowBytes)
                }
            }
        }
        return out
    }

    /// GatherGrad: zeros of `shape` (the data's) with every gathered slab of `dy` added back at its
    /// (possibly negative, possibly repeated) index. Work is split over the outer dims and chunks of
    /// the inner ones, and each task walks all indices, so no two tasks write the same element and
    /// repeated indices accumulate in a fixed order.
    static func backward(_ dy: Tensor, indices: Tensor, shape: [Int], axis axisAttr: Int, label: String,
                         context: ExecutionContext) throws -> Tensor {
        try Movement.checkShape(shape, label)
        let axis = try Axes.normalise(axisAttr, rank: shape.count, label)
        let n = shape[axis]
        let idx = try normalisedIndices(indices, axis: axis, dataShape: shape, label: label)
        let expected = Array(shape[..<axis]) + indices.shape + Array(shape[(axis + 1)...])
        guard dy.shape == expected else {
            throw SegFormerError.invalid("\(label): gradient shape \(dy.shape) is not the Gather output shape \(expected)")
        }
        let out = Tensor(uninitialized: dy.dataType, shape: shape)
        if out.count == 0 { return out }
        let es = try Movement.elementSize(dy.dataType)
        StridedCopy.zeroBytes(out.storage.pointer, bytes: out.count * es, context: context)
        if dy.count == 0 { return out }
        let outer = Tensor.elementCount(Array(shape[..<axis]))
        let inner = Tensor.elementCount(Array(shape[(axis + 1)...]))
        let m = idx.count
        let chunk = inner > 4096 ? 2048 : inner
        let chunks = (inner + chunk - 1) / chunk
        func run<T: BinaryFloatingPoint>(_: T.Type) {
            let g = dy.pointer(T.self), o = out.pointer(T.self)
            context.parallelFor(outer * chunks, minimumPerChunk: max(1, 32768 / max(1, m * chunk))) { s, e in
                idx.withUnsafeBufferPointer { ip in
                    for item in s..<e {
                        let b = item / chunks, c = item % chunks
                        let i0 = c * chunk, i1 = min(inner, i0 + chunk)
                        for j in 0..<m {
                            let src = g + (b * m + j) * inner, dst = o + (b * n + ip[j]) * inner
                            for i in i0..<i1 { dst[i] += src[i] }
                        }
                    }
                }
            }
        }
        switch dy.dataType {
        case .float: run(Float.self)
        case .double: run(Double.self)
        case .float16: run(Float16.self)
        default: throw SegFormerError.unsupported("\(label): Gather gradient of \(dy.dataType) tensors")
        }
        return out
    }

    /// `indices` as non-negative positions along `axis` of a tensor of `dataShape`, each checked.
    private static func normalisedIndices(_ indices: Tensor, axis: Int, dataShape: [Int], label: String) throws -> [Int] {
        let n = dataShape[axis]
        var idx = try indices.integers()
        for (j, v) in idx.enumerated() {
            guard v >= -n && v < n else {
                throw SegFormerError.invalid("\(label): index \(v) is out of range for axis \(axis) of size \(n) (data shape \(dataShape))")
            }
            if v < 0 { idx[j] = v + n }
        }
        return idx
    }
}
