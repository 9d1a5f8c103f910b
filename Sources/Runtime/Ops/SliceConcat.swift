import Foundation
import GraphIR

/// Concat, Split, Slice, Expand, Tile and Pad: copies of contiguous runs (memcpy) or strided views.
extension OpRegistry {
    // MARK: Concat

    static let concatSchema = OpSchema("Concat", opsets: movementOpsets, inputs: 1...Int.max, inferTypes: { ctx in
        guard let t0 = ctx.type(0) else { return [nil] }
        let types = (0..<ctx.node.inputs.count).map { ctx.type($0) }
        guard let shapes = Optional(types.compactMap { $0?.shape }), shapes.count == types.count,
              let first = shapes.first else { return [TensorType(t0.dataType, nil)] }
        let rank = first.count
        let axis = try Movement.axis(try requiredInt(ctx.node, "axis"), rank: rank, ctx.node.label)
        var out = first
        for s in shapes where s.count != rank {
            throw SegFormerError.invalid("\(ctx.node.label): inputs have ranks \(rank) and \(s.count)")
        }
        for k in 0..<rank where k != axis {
            if out[k].value == nil, let known = shapes.first(where: { $0[k].value != nil }) { out[k] = known[k] }
        }
        let parts = shapes.map { $0[axis] }
        if parts.allSatisfy({ $0.value != nil }) {
            out[axis] = .known(parts.reduce(0) { $0 + $1.value! })
        } else {
            out[axis] = .symbol(parts.map(\.description).joined(separator: "+"))
        }
        return [TensorType(t0.dataType, out)]
    }, makeKernel: { node, _ in
        let axisAttr = try requiredInt(node, "axis")
        return ClosureKernel { inputs, context in
            let xs = inputs.compactMap { $0 }
            guard let first = xs.first else { throw SegFormerError.invalid("\(node.label): no inputs") }
            let axis = try Movement.axis(axisAttr, rank: first.rank, node.label)
            var outShape = first.shape
            outShape[axis] = 0
            for x in xs {
                var a = x.shape, b = first.shape
                guard x.dataType == first.dataType, x.rank == first.rank else {
                    throw SegFormerError.invalid("\(node.label): cannot concatenate \(first) and \(x)")
                }
                a[axis] = 0; b[axis] = 0
                guard a == b else {
                    throw SegFormerError.invalid("\(node.label): shapes \(first.shape) and \(x.shape) differ off axis \(axis)")
                }
                outShape[axis] += x.shape[axis]
            }
            var out = Tensor(uninitialized: first.dataType, shape: outShape)
            if out.count == 0 { return [out] }
            let outer = Tensor.elementCount(Array(outShape[..<axis]))
            let inner = Tensor.elementCount(Array(outShape[(axis + 1)...]))
            let rowOut = outShape[axis] * inner
            if first.dataType == .string {
                var strings = [String]()
                strings.reserveCapacity(out.count)
                for o in 0..<outer { for x in xs { let r = x.shape[axis] * inner; strings += x.strings[(o * r)..<(o * r + r)] } }
                out.strings = strings
                return [out]
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
            return [out]
        }
    })

    static func requiredInt(_ node: Node, _ name: String) throws -> Int {
        guard let v = try node.int(name) else { throw SegFormerError.invalid("\(node.label): missing attribute '\(name)'") }
        return v
    }

    // MARK: Split

    static let splitSchema = OpSchema("Split", opsets: movementOpsets, inputs: 1...2, outputs: 1...Int.max,
                                      shapeInputs: [1], inferTypes: { ctx in
        let n = ctx.node.outputs.count
        guard let t = ctx.type(0) else { return Array(repeating: nil, count: n) }
        guard let shape = t.shape else { return Array(repeating: TensorType(t.dataType, nil), count: n) }
        let axis = try Movement.axis(try ctx.node.int("axis", default: 0), rank: shape.count, ctx.node.label)
        let splitInput = ctx.opset >= 13 && ctx.node.input(1) != nil
        if splitInput && ctx.constant(1) == nil { return Array(repeating: TensorType(t.dataType, nil), count: n) }
        guard let dim = shape[axis].value else {
            if !splitInput, ctx.opset <= 12 ? (try ctx.node.ints("split")) == nil : true, n == 1 {
                return [t]
            }
            return Array(repeating: TensorType(t.dataType, nil), count: n)
        }
        let sizes = try splitSizes(ctx.node, ctx.opset, dim: dim, given: try ctx.constant(1)?.integers())
        return sizes.map { s in var sh = shape; sh[axis] = .known(s); return TensorType(t.dataType, sh) }
    }, makeKernel: { node, opset in
        let axisAttr = try node.int("axis", default: 0)
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            let axis = try Movement.axis(axisAttr, rank: x.rank, node.label)
            let dim = x.shape[axis]
            let sizes = try splitSizes(node, opset, dim: dim, given: opset >= 13 ? try inputs.optional(1)?.integers() : nil)
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
    })

    /// Split part sizes: the `split` attribute (≤12) or input (≥13), else `num_outputs` (≥18, last part
    /// smaller when uneven), else equal parts, one per output.
    static func splitSizes(_ node: Node, _ opset: Int, dim: Int, given: [Int]?) throws -> [Int] {
        let n = node.outputs.count
        let split = opset <= 12 ? try node.ints("split") : given
        if let split {
            guard split.count == n, split.allSatisfy({ $0 >= 0 }), split.reduce(0, +) == dim else {
                throw SegFormerError.invalid("\(node.label): split \(split) does not cut a dimension of \(dim) into \(n) outputs")
            }
            return split
        }
        if opset >= 18, let parts = try node.int("num_outputs") {
            guard parts == n, parts > 0 else {
                throw SegFormerError.invalid("\(node.label): num_outputs \(parts) but the node has \(n) outputs")
            }
            let chunk = (dim + parts - 1) / parts
            let last = dim - chunk * (parts - 1)
            guard last >= 0 else {
                throw SegFormerError.invalid("\(node.label): cannot split a dimension of \(dim) into \(parts) parts")
            }
            return Array(repeating: chunk, count: parts - 1) + [last]
        }
        guard n > 0, dim % n == 0 else {
            throw SegFormerError.invalid("\(node.label): cannot split a dimension of \(dim) into \(n) equal parts")
        }
        return Array(repeating: dim / n, count: n)
    }

    // MARK: Slice

    static let sliceSchema = OpSchema("Slice", opsets: movementOpsets, inputs: 3...5, shapeInputs: [1, 2, 3, 4],
                                      inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let shape = t.shape else { return [TensorType(t.dataType, nil)] }
        func const(_ i: Int) throws -> [Int]?? {
            if ctx.node.input(i) == nil { return .some(nil) }
            guard let c = ctx.constant(i) else { return nil }
            return .some(try c.integers())
        }
        guard let starts = try const(1) ?? nil, let ends = try const(2) ?? nil,
              let axes = try const(3), let steps = try const(4) else {
            return [TensorType(t.dataType, freshDims(ctx, count: shape.count))]
        }
        var out = shape
        let plan = try slicePlanAxes(starts: starts, ends: ends, axes: axes, steps: steps, rank: shape.count, ctx.node.label)
        for (axis, s, e, st) in plan {
            if let d = shape[axis].value {
                out[axis] = .known(sliceRange(s, e, st, dim: d).count)
            } else if s == 0 && st == 1 && e >= Int(Int32.max) {
                out[axis] = shape[axis]
            } else {
                out[axis] = .symbol("\(ctx.node.outputs.first ?? "?")#\(axis)")
            }
        }
        return [TensorType(t.dataType, out)]
    }, makeKernel: { node, _ in
        ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            let plan = try slicePlanAxes(starts: try inputs.required(1, "starts").integers(),
                                         ends: try inputs.required(2, "ends").integers(),
                                         axes: try inputs.optional(3)?.integers(),
                                         steps: try inputs.optional(4)?.integers(), rank: x.rank, node.label)
            let inStrides = Movement.strides(x.shape)
            var shape = x.shape
            var strides = inStrides
            var offset = 0
            for (axis, s, e, st) in plan {
                let r = sliceRange(s, e, st, dim: x.shape[axis])
                shape[axis] = r.count
                strides[axis] = inStrides[axis] * st
                offset += r.start * inStrides[axis]
            }
            if shape == x.shape && strides == inStrides { return [x] }
            if shape.contains(0) { return [Tensor(uninitialized: x.dataType, shape: shape)] }
            return [try StridedCopy.materialize(x, offset: offset, shape: shape, strides: strides, context: context)]
        }
    })

    /// (axis, start, end, step) per sliced axis, axes normalised and checked.
    static func slicePlanAxes(starts: [Int], ends: [Int], axes: [Int]?, steps: [Int]?, rank: Int,
                              _ label: String) throws -> [(Int, Int, Int, Int)] {
        let axes = try Movement.axes(axes ?? Array(0..<starts.count), rank: rank, label)
        let steps = steps ?? Array(repeating: 1, count: starts.count)
        guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count else {
            throw SegFormerError.invalid("\(label): starts \(starts), ends \(ends), axes \(axes), steps \(steps) differ in length")
        }
        guard !steps.contains(0) else { throw SegFormerError.invalid("\(label): a step is 0") }
        return (0..<axes.count).map { (axes[$0], starts[$0], ends[$0], steps[$0]) }
    }

    /// First index and element count of a slice of a dim (ONNX clamping rules).
    static func sliceRange(_ start: Int, _ end: Int, _ step: Int, dim: Int) -> (start: Int, count: Int) {
        var s = start < 0 ? start &+ dim : start
        var e = end < 0 ? end &+ dim : end
        if step > 0 {
            s = min(max(s, 0), dim)
            e = min(max(e, 0), dim)
            return (s, e > s ? (e - s + step - 1) / step : 0)
        } else {
            s = min(max(s, 0), dim - 1)
            e = min(max(e, -1), dim - 1)
            return (s, s > e ? (s - e - step - 1) / (-step) : 0)
        }
    }

    // MARK: Expand

    static let expandSchema = OpSchema("Expand", opsets: movementOpsets, inputs: 2...2, shapeInputs: [1],
                                       inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let c = ctx.constant(1), let shape = t.shape else {
            let n = ctx.type(1)?.knownShape?.first
            return [TensorType(t.dataType, freshDims(ctx, count: n.flatMap { n in t.shape.map { max($0.count, n) } }))]
        }
        let target = try c.integers()
        let rank = max(shape.count, target.count)
        var out: [Dim] = []
        for k in 0..<rank {
            let a: Dim = k - (rank - shape.count) >= 0 ? shape[k - (rank - shape.count)] : .known(1)
            let b = k - (rank - target.count) >= 0 ? target[k - (rank - target.count)] : 1
            if b == 1 { out.append(a) }
            else if a.value == 1 || a.value == nil || a.value == b { out.append(.known(b)) }
            else { throw SegFormerError.invalid("\(ctx.node.label): cannot expand \(shape) to \(target)") }
        }
        return [TensorType(t.dataType, out)]
    }, makeKernel: { node, _ in
        ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            let target = try inputs.required(1, "shape").integers()
            let rank = max(x.rank, target.count)
            let xs = [Int](repeating: 1, count: rank - x.rank) + x.shape
            let ts = [Int](repeating: 1, count: rank - target.count) + target
            let inStrides = Movement.strides(xs)
            var out: [Int] = [], strides: [Int] = []
            for k in 0..<rank {
                if xs[k] == ts[k] || ts[k] == 1 { out.append(xs[k]); strides.append(inStrides[k]) }
                else if xs[k] == 1 { out.append(ts[k]); strides.append(0) }
                else { throw SegFormerError.invalid("\(node.label): cannot expand \(x.shape) to \(target)") }
            }
            try Movement.checkShape(out, node.label)
            if out == x.shape { return [x] }
            return [try StridedCopy.materialize(x, offset: 0, shape: out, strides: strides, context: context)]
        }
    })

    // MARK: Tile

    static let tileSchema = OpSchema("Tile", opsets: movementOpsets, inputs: 2...2, shapeInputs: [1],
                                     inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let c = ctx.constant(1), let shape = t.shape else { return [TensorType(t.dataType, t.shape.map { s in s.enumerated().map { .symbol("\(ctx.node.outputs.first ?? "?")#\($0.offset)") } })] }
        let reps = try c.integers()
        guard reps.count == shape.count else { throw SegFormerError.invalid("\(ctx.node.label): repeats \(reps) do not match rank \(shape.count)") }
        return [TensorType(t.dataType, zip(shape, reps).map { d, r in
            r == 1 ? d : (d.value.map { .known($0 * r) } ?? Movement.product([.known(r), d]))
        })]
    }, makeKernel: { node, _ in
        ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            let reps = try inputs.required(1, "repeats").integers()
            guard reps.count == x.rank, reps.allSatisfy({ $0 >= 0 }) else {
                throw SegFormerError.invalid("\(node.label): repeats \(reps) must be \(x.rank) non-negative counts for input \(x.shape)")
            }
            let outShape = zip(x.shape, reps).map { $0 * $1 }
            try Movement.checkShape(outShape, node.label)
            // Tiling = broadcasting a [1, d0, 1, d1, …] view to [r0, d0, r1, d1, …].
            let inStrides = Movement.strides(x.shape)
            var shape: [Int] = [], strides: [Int] = []
            for k in 0..<x.rank { shape += [reps[k], x.shape[k]]; strides += [0, inStrides[k]] }
            return [try StridedCopy.materialize(x, offset: 0, shape: shape, strides: strides, context: context).reshaped(outShape)]
        }
    })

    // MARK: Pad

    static let padSchema = OpSchema("Pad", opsets: movementOpsets, inputs: 2...4, shapeInputs: [1, 3], inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let shape = t.shape, let p = ctx.constant(1) else { return [TensorType(t.dataType, nil)] }
        if ctx.node.input(3) != nil && ctx.constant(3) == nil { return [TensorType(t.dataType, nil)] }
        let (begin, end) = try padAmounts(try p.integers(), axes: try ctx.constant(3)?.integers(), rank: shape.count, ctx.node.label)
        return [TensorType(t.dataType, shape.enumerated().map { k, d in
            begin[k] == 0 && end[k] == 0 ? d : (d.value.map { .known($0 + begin[k] + end[k]) } ?? .symbol("\(ctx.node.outputs.first ?? "?")#\(k)"))
        })]
    }, makeKernel: { node, opset in
        let mode = try node.string("mode", default: "constant")
        guard ["constant", "reflect", "edge"].contains(mode) || (mode == "wrap" && opset >= 19) else {
            throw SegFormerError.unsupported("\(node.label): pad mode '\(mode)'")
        }
        return ClosureKernel { inputs, _ in
            let x = try inputs.required(0)
            let (begin, end) = try padAmounts(try inputs.required(1, "pads").integers(),
                                              axes: opset >= 18 ? try inputs.optional(3)?.integers() : nil,
                                              rank: x.rank, node.label)
            let outShape = (0..<x.rank).map { x.shape[$0] + begin[$0] + end[$0] }
            try Movement.checkShape(outShape, node.label)
            // Per axis: output index → input index, or -1 for the constant.
            var maps: [[Int]] = []
            for k in 0..<x.rank {
                let d = x.shape[k]
                var m = [Int](repeating: -1, count: outShape[k])
                for o in 0..<outShape[k] {
                    let i = o - begin[k]
                    if i >= 0 && i < d { m[o] = i; continue }
                    if mode == "constant" { continue }
                    guard d > 0 else { throw SegFormerError.invalid("\(node.label): cannot \(mode)-pad an empty axis \(k)") }
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
            var out = Tensor(uninitialized: x.dataType, shape: outShape)
            if out.count == 0 { return [out] }
            let strides = Movement.strides(x.shape)
            let value = inputs.optional(2)
            if x.dataType == .string {
                let fill = value?.strings.first ?? ""
                var strings = [String]()
                strings.reserveCapacity(out.count)
                padWalk(outShape, maps, strides) { src in strings.append(src < 0 ? fill : x.strings[src]) }
                out.strings = strings
                return [out]
            }
            let es = try Movement.elementSize(x.dataType)
            var fill = [UInt8](repeating: 0, count: es)
            if let v = value, v.count > 0 {
                guard v.dataType == x.dataType else {
                    throw SegFormerError.invalid("\(node.label): constant_value is \(v.dataType), data is \(x.dataType)")
                }
                memcpy(&fill, v.storage.pointer, es)
            }
            func run<T>(_: T.Type) {
                let s = x.pointer(T.self), d = out.pointer(T.self)
                let f = fill.withUnsafeBytes { $0.load(as: T.self) }
                var i = 0
                padWalk(outShape, maps, strides) { src in d[i] = src < 0 ? f : s[src]; i += 1 }
            }
            switch es {
            case 1: run(UInt8.self)
            case 2: run(UInt16.self)
            case 4: run(UInt32.self)
            default: run(UInt64.self)
            }
            return [out]
        }
    })

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

    /// Pads [b1, b2, …, e1, e2, …] (for `axes`, or all axes) → per-axis begin and end amounts.
    static func padAmounts(_ pads: [Int], axes: [Int]?, rank: Int, _ label: String) throws -> ([Int], [Int]) {
        let axes = try Movement.axes(axes ?? Array(0..<rank), rank: rank, label)
        guard pads.count == 2 * axes.count else {
            throw SegFormerError.invalid("\(label): pads \(pads) must hold 2 × \(axes.count) values")
        }
        var begin = [Int](repeating: 0, count: rank), end = begin
        for (j, a) in axes.enumerated() { begin[a] = pads[j]; end[a] = pads[j + axes.count] }
        return (begin, end)
    }
}

extension StridedCopy {
    /// memcpy, split across threads when large.
    static func copyBytes(dst: UnsafeMutableRawPointer, src: UnsafeRawPointer, bytes: Int, context: ExecutionContext) {
        let block = 1 << 16
        let blocks = (bytes + block - 1) / block
        context.parallelFor(blocks, minimumPerChunk: 16) { s, e in
            let lo = s * block, hi = min(bytes, e * block)
            memcpy(dst + lo, src + lo, hi - lo)
        }
    }
}
