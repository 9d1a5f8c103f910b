import Foundation
import GraphIR

// CPU kernels of the SliceConcat family: the schemas (what each op means) are in Ops/SliceConcat.swift.
// Copies of contiguous runs (memcpy) or strided views.
enum SliceConcatKernels {
    // MARK: Concat

    /// Concat of `xs` along `axis`: per input, one memcpy of its row into each outer slab.
    static func concat(_ xs: [Tensor], axis axisAttr: Int, label: String, context: ExecutionContext) throws -> Tensor {
        guard let first = xs.first else { throw SegFormerError.invalid("\(label): no inputs") }
        let axis = try Axes.normalise(axisAttr, rank: first.rank, label)
        var outShape = first.shape
        outShape[axis] = 0
        for x in xs {
            var a = x.shape, b = first.shape
            guard x.dataType == first.dataType, x.rank == first.rank else {
                throw SegFormerError.invalid("\(label): cannot concatenate \(first) and \(x)")
            }
            a[axis] = 0; b[axis] = 0
            guard a == b else {
                throw SegFormerError.invalid("\(label): shapes \(first.shape) and \(x.shape) differ off axis \(axis)")
            }
            outShape[axis] += x.shape[axis]
        }
        var out = Tensor(uninitialized: first.dataType, shape: outShape)
        if out.count == 0 { return out }
        let outer = Tensor.elementCount(Array(outShape[..<axis]))
        let inner = Tensor.elementCount(Array(outShape[(axis + 1)...]))
        let rowOut = outShape[axis] * inner
        if first.dataType == .string {
            var strings = [String]()
            strings.reserveCapacity(out.count)
            for o in 0..<outer { for x in xs { let r = x.shape[axis] * inner; strings += x.strings[(o * r)..<(o * r + r)] } }
            out.strings = strings
            return out
        }
        let es = try Movement.elementSize(first.dataType)
        let dst = out.storage.pointer
        var col = 0
        for x in xs {
            let rowBytes = x.shape[axis] * inner * es
            if rowBytes > 0 {
                let src = UnsafeRawPointer(x.storage.pointer)
                let dstBase = dst + col * es
                if outer == 1 {
                    StridedCopy.copyBytes(dst: dstBase, src: src, bytes: rowBytes, context: context)
                } else {
                    context.parallelFor(outer, minimumPerChunk: max(1, 65536 / rowBytes)) { s, e in
                        for o in s..<e { memcpy(dstBase + o * rowOut * es, src + o * rowBytes, rowBytes) }
                    }
                }
            }
            col += x.shape[axis] * inner
        }
        return out
    }

    // MARK: Split

    /// Split of `x` along the (normalised) `axis` into parts of `sizes`, one strided copy each.
    static func split(_ x: Tensor, axis: Int, sizes: [Int], context: ExecutionContext) throws -> [Tensor] {
        let dim = x.shape[axis]
        let outer = Tensor.elementCount(Array(x.shape[..<axis]))
        let inner = Tensor.elementCount(Array(x.shape[(axis + 1)...]))
        var outs: [Tensor] = []
        var start = 0
        for s in sizes {
            var shape = x.shape
            shape[axis] = s
            outs.append(try StridedCopy.materialize(
                x, offset: start * inner, shape: [outer, s * inner], strides: [dim * inner, 1], context: context
            ).reshaped(shape))
            start += s
        }
        return outs
    }

    // MARK: Slice

    /// Slice of `x` by `plan` ((axis, start, end, step) per sliced axis): a strided view, copied.
    static func slice(_ x: Tensor, plan: [(Int, Int, Int, Int)], context: ExecutionContext) throws -> Tensor {
        let view = sliceView(of: x.shape, plan: plan)
        if view.shape == x.shape && view.strides == Strides.rowMajor(x.shape) { return x }
        if view.shape.contains(0) { return Tensor(uninitialized: x.dataType, shape: view.shape) }
        return try StridedCopy.materialize(x, offset: view.offset, shape: view.shape, strides: view.strides,
                                           context: context)
    }

    /// Where a slice of a row-major tensor of `shape` reads: offset, shape and element strides.
    static func sliceView(of inShape: [Int], plan: [(Int, Int, Int, Int)]) -> (offset: Int, shape: [Int], strides: [Int]) {
        let inStrides = Strides.rowMajor(inShape)
        var shape = inShape
        var strides = inStrides
        var offset = 0
        for (axis, s, e, st) in plan {
            let r = OpRegistry.sliceRange(s, e, st, dim: inShape[axis])
            shape[axis] = r.count
            strides[axis] = inStrides[axis] * st
            offset += r.start * inStrides[axis]
        }
        return (offset, shape, strides)
    }

    // MARK: Expand

    /// Expand of `x` to the broadcast of its shape with `target`: a stride-0 view, copied.
    static func expand(_ x: Tensor, to target: [Int], label: String, context: ExecutionContext) throws -> Tensor {
        let rank = max(x.rank, target.count)
        let xs = [Int](repeating: 1, count: rank - x.rank) + x.shape
        let ts = [Int](repeating: 1, count: rank - target.count) + target
        let inStrides = Strides.rowMajor(xs)
        var out: [Int] = [], strides: [Int] = []
        for k in 0..<rank {
            if xs[k] == ts[k] || ts[k] == 1 { out.append(xs[k]); strides.append(inStrides[k]) }
            else if xs[k] == 1 { out.append(ts[k]); strides.append(0) }
            else { throw SegFormerError.invalid("\(label): cannot expand \(x.shape) to \(target)") }
        }
        try Movement.checkShape(out, label)
        if out == x.shape { return x }
        return try StridedCopy.materialize(x, offset: 0, shape: out, strides: strides, context: context)
    }

    // MARK: Tile

    /// Tile of `x` by `reps` (one count per axis).
    static func tile(_ x: Tensor, repeats reps: [Int], label: String, context: ExecutionContext) throws -> Tensor {
        guard reps.count == x.rank, reps.allSatisfy({ $0 >= 0 }) else {
            throw SegFormerError.invalid("\(label): repeats \(reps) must be \(x.rank) non-negative counts for input \(x.shape)")
        }
        let outShape = zip(x.shape, reps).map { $0 * $1 }
        try Movement.checkShape(outShape, label)
        // Tiling = broadcasting a [1, d0, 1, d1, …] view to [r0, d0, r1, d1, …].
        let inStrides = Strides.rowMajor(x.shape)
        var shape: [Int] = [], strides: [Int] = []
        for k in 0..<x.rank { shape += [reps[k], x.shape[k]]; strides += [0, inStrides[k]] }
        return try StridedCopy.materialize(x, offset: 0, shape: shape, strides: strides, context: context).reshaped(outShape)
    }

    // MARK: Pad

    /// Pad of `x` by `begin`/`end` per axis in `mode` (constant, reflect, edge or wrap); `value` is the
    /// constant (default zero, or "" for strings).
    static func pad(_ x: Tensor, begin: [Int], end: [Int], value: Tensor?, mode: String, label: String) throws -> Tensor {
        let outShape = (0..<x.rank).map { x.shape[$0] + begin[$0] + end[$0] }
        try Movement.checkShape(outShape, label)
        let maps = try padMaps(x.shape, outShape, begin, mode, label)
        var out = Tensor(uninitialized: x.dataType, shape: outShape)
        if out.count == 0 { return out }
        let strides = Strides.rowMajor(x.shape)
        if x.dataType == .string {
            let fill = value?.strings.first ?? ""
            var strings = [String]()
            strings.reserveCapacity(out.count)
            padWalk(outShape, maps, strides) { src in strings.append(src < 0 ? fill : x.strings[src]) }
            out.strings = strings
            return out
        }
        let es = try Movement.elementSize(x.dataType)
        var fill = [UInt8](repeating: 0, count: es)
        if let v = value, v.count > 0 {
            guard v.dataType == x.dataType else {
                throw SegFormerError.invalid("\(label): constant_value is \(v.dataType), data is \(x.dataType)")
            }
            memcpy(&fill, v.storage.pointer, es)
        }
        func run<T>(_: T.Type) {
            let s = x.pointer(T.self), d = out.pointer(T.self)
            let f = fill.withUnsafeBytes { $0.load(as: T.self) }
            var i = 0
            padWalk(outShape, maps, strides) { src in d[i] = src < 0 ? f : s[src]; i += 1 }
        }
        // The width switch of Gather's small path: one per kernel, since Swift closures cannot be generic.
        switch es {
        case 1: run(UInt8.self)
        case 2: run(UInt16.self)
        case 4: run(UInt32.self)
        default: run(UInt64.self)
        }
        return out
    }

    /// Per axis: output index → input index, or -1 for the constant (Pad and PadGrad).
    static func padMaps(_ inShape: [Int], _ outShape: [Int], _ begin: [Int], _ mode: String, _ label: String) throws -> [[Int]] {
        var maps: [[Int]] = []
        for k in 0..<inShape.count {
            let d = inShape[k]
            var m = [Int](repeating: -1, count: outShape[k])
            for o in 0..<outShape[k] {
                let i = o - begin[k]
                if i >= 0 && i < d { m[o] = i; continue }
                if mode == "constant" { continue }
                guard d > 0 else { throw SegFormerError.invalid("\(label): cannot \(mode)-pad an empty axis \(k)") }
                switch mode {
                case "edge": m[o] = min(max(i, 0), d - 1)
                case "wrap": m[o] = ((i % d) + d) % d
                default:   // reflect (no edge repeat), period 2(d-1)
                    if d == 1 { m[o] = 0 } else {
                        let p = 2 * (d - 1)
                        var j = ((i % p) + p) % p
                        if j >= d { j = p - j }
                        m[o] = j
                    }
                }
            }
            maps.append(m)
        }
        return maps
    }

    /// Visits output elements in order with their source offset (-1 = padding constant).
    static func padWalk(_ outShape: [Int], _ maps: [[Int]], _ strides: [Int], _ body: (Int) -> Void) {
        let rank = outShape.count
        if rank == 0 { body(0); return }
        let rows = Tensor.elementCount(Array(outShape.dropLast()))
        let lastMap = maps[rank - 1], lastStride = strides[rank - 1]
        var index = [Int](repeating: 0, count: rank - 1)
        for _ in 0..<rows {
            var base = 0
            for k in 0..<(rank - 1) {
                let m = maps[k][index[k]]
                if m < 0 { base = -1; break }
                base += m * strides[k]
            }
            for m in lastMap { body(base < 0 || m < 0 ? -1 : base + m * lastStride) }
            var k = rank - 2
            while k >= 0 { index[k] += 1; if index[k] < outShape[k] { break }; index[k] = 0; k -= 1 }
        }
    }
}

// MARK: - Gradient kernels

extension SliceConcatKernels {
    /// ConcatGrad: the slabs of `dy` along `axis` for the inputs in `select`; `inputShapes` holds
    /// Shape(x_i) of every forward input (nil for an absent one).
    static func concatBackward(_ dy: Tensor, inputShapes: [Tensor?], axis axisAttr: Int, select: [Int], label: String,
                               context: ExecutionContext) throws -> [Tensor] {
        let axis = try Axes.normalise(axisAttr, rank: dy.rank, label)
        var starts: [Int?] = [], sizes: [Int] = []
        var position = 0
        for s in inputShapes {
            guard let s else { starts.append(nil); sizes.append(0); continue }
            let shape = try s.integers()
            var a = shape, b = dy.shape
            guard shape.count == dy.rank else {
                throw SegFormerError.invalid("\(label): input shape \(shape) does not match gradient \(dy.shape)")
            }
            a[axis] = 0; b[axis] = 0
            guard a == b, shape[axis] >= 0 else {
                throw SegFormerError.invalid("\(label): input shape \(shape) does not match gradient \(dy.shape) off axis \(axis)")
            }
            starts.append(position); sizes.append(shape[axis])
            position += shape[axis]
        }
        guard position == dy.shape[axis] else {
            throw SegFormerError.invalid("\(label): input sizes \(sizes) along axis \(axis) do not add up to gradient \(dy.shape)")
        }
        let outer = Tensor.elementCount(Array(dy.shape[..<axis]))
        let inner = Tensor.elementCount(Array(dy.shape[(axis + 1)...]))
        let dim = dy.shape[axis]
        return try select.map { i in
            guard i >= 0, i < starts.count, let start = starts[i] else {
                throw SegFormerError.invalid("\(label): select \(i) names no input")
            }
            var shape = dy.shape
            shape[axis] = sizes[i]
            if sizes[i] == dim { return dy }
            let out = Tensor(uninitialized: dy.dataType, shape: shape)
            if out.count == 0 { return out }
            if dy.dataType == .string {
                return try StridedCopy.materialize(dy, offset: start * inner, shape: [outer, sizes[i] * inner],
                                                   strides: [dim * inner, 1], context: context).reshaped(shape)
            }
            let es = try Movement.elementSize(dy.dataType)
            let rowBytes = sizes[i] * inner * es, rowIn = dim * inner * es
            let src = UnsafeRawPointer(dy.storage.pointer) + start * inner * es, dst = out.storage.pointer
            if outer < 4 * context.threads {
                // Few long rows (a channel concat at batch 2): split each row's copy across threads.
                for o in 0..<outer {
                    StridedCopy.copyBytes(dst: dst + o * rowBytes, src: src + o * rowIn, bytes: rowBytes, context: context)
                }
            } else {
                context.parallelFor(outer, minimumPerChunk: max(1, 65536 / rowBytes)) { s, e in
                    for o in s..<e { memcpy(dst + o * rowBytes, src + o * rowIn, rowBytes) }
                }
            }
            return out
        }
    }

    /// SplitGrad: Concat of `parts` along `axis`, where the parts listed in `zeros` are shape tensors
    /// standing for zero blocks of that shape.
    static func splitBackward(_ parts: [Tensor?], zeros: Set<Int>, axis axisAttr: Int, label: String,
                              context: ExecutionContext) throws -> Tensor {
        guard let first = parts.indices.first(where: { !zeros.contains($0) && parts[$0] != nil }).map({ parts[$0]! }) else {
            throw SegFormerError.invalid("\(label): no gradient part")
        }
        let axis = try Axes.normalise(axisAttr, rank: first.rank, label)
        var shapes: [[Int]] = []
        var outShape = first.shape
        outShape[axis] = 0
        for i in parts.indices {
            let t = try parts.required(i, "part")
            let shape = zeros.contains(i) ? try t.integers() : t.shape
            if !zeros.contains(i), t.dataType != first.dataType {
                throw SegFormerError.invalid("\(label): parts are \(first.dataType) and \(t.dataType)")
            }
            var a = shape, b = first.shape
            guard shape.count == first.rank else { throw SegFormerError.invalid("\(label): part shapes \(first.shape) and \(shape) differ in rank") }
            a[axis] = 0; b[axis] = 0
            guard a == b, shape[axis] >= 0 else {
                throw SegFormerError.invalid("\(label): part shapes \(first.shape) and \(shape) differ off axis \(axis)")
            }
            shapes.append(shape)
            outShape[axis] += shape[axis]
        }
        let out = Tensor(uninitialized: first.dataType, shape: outShape)
        if out.count == 0 { return out }
        let es = try Movement.elementSize(first.dataType)
        let outer = Tensor.elementCount(Array(outShape[..<axis]))
        let inner = Tensor.elementCount(Array(outShape[(axis + 1)...]))
        let rowOut = outShape[axis] * inner * es
        let dst = out.storage.pointer
        var col = 0
        for (i, shape) in shapes.enumerated() {
            let rowBytes = shape[axis] * inner * es
            if rowBytes > 0 {
                let base = dst + col
                let src: UnsafeRawPointer? = zeros.contains(i) ? nil : UnsafeRawPointer(parts[i]!.storage.pointer)
                context.parallelFor(outer, minimumPerChunk: max(1, 65536 / rowBytes)) { s, e in
                    for o in s..<e {
                        if let src { memcpy(base + o * rowOut, src + o * rowBytes, rowBytes) }
                        else { memset(base + o * rowOut, 0, rowBytes) }
                    }
                }
            }
            col += rowBytes
        }
        return out
    }

    /// SliceGrad: zeros of `xShape` with `dy` written at the positions the slice `plan` read (the
    /// positions are distinct, so no sums).
    static func sliceBackward(_ dy: Tensor, xShape: [Int], plan: [(Int, Int, Int, Int)], label: String,
                              context: ExecutionContext) throws -> Tensor {
        let view = sliceView(of: xShape, plan: plan)
        guard view.shape == dy.shape else {
            throw SegFormerError.invalid("\(label): gradient shape \(dy.shape) is not the slice shape \(view.shape) of \(xShape)")
        }
        if view.shape == xShape && view.strides == Strides.rowMajor(xShape) { return dy }
        let es = try Movement.elementSize(dy.dataType)
        let out = Tensor(uninitialized: dy.dataType, shape: xShape)
        if out.count == 0 { return out }
        StridedCopy.zeroBytes(out.storage.pointer, bytes: out.count * es, context: context)
        if dy.count > 0 {
            StridedCopy.scatter(src: UnsafeRawPointer(dy.storage.pointer), dst: out.storage.pointer, elementSize: es,
                                offset: view.offset, shape: view.shape, strides: view.strides, context: context)
        }
        return out
    }

    /// TileGrad: dY seen as [r0, d0, r1, d1, …] summed over the repeat axes.
    static func tileBackward(_ dy: Tensor, xShape: [Int], label: String, context: ExecutionContext) throws -> Tensor {
        guard xShape.count == dy.rank else {
            throw SegFormerError.invalid("\(label): gradient shape \(dy.shape) does not tile input shape \(xShape)")
        }
        try Movement.checkShape(xShape, label)
        var tiled: [Int] = [], axes: [Int] = []
        for (k, d) in xShape.enumerated() {
            let t = dy.shape[k]
            guard d > 0 ? t % d == 0 : t == 0 else {
                throw SegFormerError.invalid("\(label): gradient shape \(dy.shape) does not tile input shape \(xShape)")
            }
            let r = d > 0 ? t / d : 1
            if r != 1 { axes.append(tiled.count) }
            tiled += [r, d]
        }
        if axes.isEmpty { return dy.reshaped(xShape) }
        if dy.count == 0 || Tensor.elementCount(xShape) == 0 { return Tensor(zeros: dy.dataType, shape: xShape) }
        let summed = try SingleOp.run(OpType.reduceSum, inputs: [dy.reshaped(tiled), Tensor(axes.map { Int64($0) }, shape: [axes.count])],
                                      attributes: ["keepdims": .int(1)], opset: 13, context: context)[0]
        return summed.reshaped(xShape)
    }

    /// PadGrad: each output element's gradient added to the input element it was read from (the
    /// forward's index maps); padding constants get nothing.
    static func padBackward(_ dy: Tensor, xShape: [Int], begin: [Int], end: [Int], mode: String,
                            label: String) throws -> Tensor {
        let outShape = (0..<xShape.count).map { xShape[$0] + begin[$0] + end[$0] }
        guard outShape == dy.shape else {
            throw SegFormerError.invalid("\(label): gradient shape \(dy.shape) is not the padded shape \(outShape)")
        }
        let out = Tensor(zeros: dy.dataType, shape: xShape)
        if out.count == 0 || dy.count == 0 { return out }
        let maps = try padMaps(xShape, outShape, begin, mode, label)
        let strides = Strides.rowMajor(xShape)
        func run<T: BinaryFloatingPoint>(_: T.Type) {
            let g = dy.pointer(T.self), o = out.pointer(T.self)
            var i = 0
            padWalk(outShape, maps, strides) { src in
                if src >= 0 { o[src] += g[i] }
                i += 1
            }
        }
        switch dy.dataType {
        case .float: run(Float.self)
        case .double: run(Double.self)
        case .float16: run(Float16.self)
        default: throw SegFormerError.unsupported("\(label): Pad gradient of \(dy.dataType) tensors")
        }
        return out
    }
}
