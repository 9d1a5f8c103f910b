import Foundation
import GraphIR

/// Gather: picks slices of `data` along `axis` by (possibly negative) indices of any rank.
extension OpRegistry {
    static let gatherSchema = OpSchema("Gather", opsets: movementOpsets, inputs: 2...2, inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let data = t.shape, let idx = ctx.type(1)?.shape else { return [TensorType(t.dataType, nil)] }
        let axis = try Axes.normalise(try ctx.node.int("axis", default: 0), rank: data.count, ctx.node.label)
        return [TensorType(t.dataType, Array(data[..<axis]) + idx + Array(data[(axis + 1)...]))]
    }, makeKernel: { node, _ in
        let axisAttr = try node.int("axis", default: 0)
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            let indices = try inputs.required(1, "indices")
            let axis = try Axes.normalise(axisAttr, rank: x.rank, node.label)
            let n = x.shape[axis]
            // Normalise the indices once (they are few: a row list, or shape arithmetic).
            var idx = try indices.integers()
            for (j, v) in idx.enumerated() {
                guard v >= -n && v < n else {
                    throw SegFormerError.invalid("\(node.label): index \(v) is out of range for axis \(axis) of size \(n) (data shape \(x.shape))")
                }
                if v < 0 { idx[j] = v + n }
            }
            let outShape = Array(x.shape[..<axis]) + indices.shape + Array(x.shape[(axis + 1)...])
            var out = Tensor(uninitialized: x.dataType, shape: outShape)
            if out.count == 0 { return [out] }
            let outer = Tensor.elementCount(Array(x.shape[..<axis]))
            let inner = Tensor.elementCount(Array(x.shape[(axis + 1)...]))
            let m = idx.count
            if x.dataType == .string {
                var strings = [String]()
                strings.reserveCapacity(out.count)
                for o in 0..<outer { for j in idx { strings += x.strings[((o * n + j) * inner)..<((o * n + j + 1) * inner)] } }
                out.strings = strings
                return [out]
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
                // A width switch like Pad's (SliceConcat.swift): Swift closures cannot be generic, so each
                // byte-moving kernel switches onto its own generic function.
                switch es {
                case 1: small(UInt8.self)
                case 2: small(UInt16.self)
                case 4: small(UInt32.self)
                default: small(UInt64.self)
                }
                return [out]
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
            return [out]
        }
    }).withGradient(gatherGradient)
        .withSymbolicValue { ctx in
            // Picking entries of a shape vector, e.g. Shape(x)[2] → height.
            guard let data = ctx.symbols(0), let idx = ctx.symbols(1), try ctx.node.int("axis", default: 0) == 0 else { return nil }
            var out: [Dim] = []
            for i in idx {
                guard let k = i.value, k >= -data.count, k < data.count else { return nil }
                out.append(data[k < 0 ? k + data.count : k])
            }
            return out
        }
}

// MARK: - Gradient

extension OpRegistry {
    /// Gather: dData = GatherGrad(dY, indices, Shape(data)), a scatter-add; indices get none.
    static let gatherGradient: GradientRule = { ctx in
        guard ctx.needs(0) else { return [nil, nil] }
        return [ctx.builder.add1("GatherGrad", domain: trainingDomain,
                                 [try ctx.gradient(), ctx.input(1), ctx.shape(of: ctx.input(0))],
                                 attributes: ["axis": .int(try ctx.node.int("axis", default: 0))]), nil]
    }

    /// GatherGrad(dY, indices, Shape(data); axis): zeros of data's shape with every gathered slab of dY
    /// added back at its (possibly negative, possibly repeated) index. Work is split over the outer
    /// dims and chunks of the inner ones, and each task walks all indices, so no two tasks write the
    /// same element and repeated indices accumulate in a fixed order.
    static let gatherGradSchema = OpSchema("GatherGrad", domain: trainingDomain, inputs: 3...3, shapeInputs: [2], inferTypes: { ctx in
        guard let g = ctx.type(0), let s = ctx.constant(2) else { return [nil] }
        return [TensorType(g.dataType, known: try s.integers())]
    }, makeKernel: { node, _ in
        let axisAttr = try node.int("axis", default: 0)
        return ClosureKernel { inputs, context in
            let dy = try inputs.required(0)
            let indices = try inputs.required(1, "indices")
            let shape = try inputs.required(2, "shape").integers()
            try Movement.checkShape(shape, node.label)
            let axis = try Axes.normalise(axisAttr, rank: shape.count, node.label)
            let n = shape[axis]
            var idx = try indices.integers()
            for (j, v) in idx.enumerated() {
                guard v >= -n && v < n else {
                    throw SegFormerError.invalid("\(node.label): index \(v) is out of range for axis \(axis) of size \(n) (data shape \(shape))")
                }
                if v < 0 { idx[j] = v + n }
            }
            let expected = Array(shape[..<axis]) + indices.shape + Array(shape[(axis + 1)...])
            guard dy.shape == expected else {
                throw SegFormerError.invalid("\(node.label): gradient shape \(dy.shape) is not the Gather output shape \(expected)")
            }
            let out = Tensor(uninitialized: dy.dataType, shape: shape)
            if out.count == 0 { return [out] }
            let es = try Movement.elementSize(dy.dataType)
            StridedCopy.zeroBytes(out.storage.pointer, bytes: out.count * es, context: context)
            if dy.count == 0 { return [out] }
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
            default: throw SegFormerError.unsupported("\(node.label): Gather gradient of \(dy.dataType) tensors")
            }
            return [out]
        }
    })
}
