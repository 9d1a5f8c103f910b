import Foundation
import GraphIR

/// Concat, Split, Slice, Expand, Tile and Pad: copies of contiguous runs (memcpy) or strided views.
extension OpRegistry {
    // MARK: Concat

    static let concatSchema = OpSchema(OpType.concat, opsets: movementOpsets, inputs: 1...Int.max, inferTypes: { ctx in
        guard let t0 = ctx.type(0) else { return [nil] }
        let types = (0..<ctx.node.inputs.count).map { ctx.type($0) }
        guard let shapes = Optional(types.compactMap { $0?.shape }), shapes.count == types.count,
              let first = shapes.first else { return [TensorType(t0.dataType, nil)] }
        let rank = first.count
        let axis = try Axes.normalise(try requiredInt(ctx.node, "axis"), rank: rank, ctx.node.label)
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
            let axis = try Axes.normalise(axisAttr, rank: first.rank, node.label)
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
    }).withGradient(concatGradient)
        .withSymbolicValue { ctx in
            // Shape vectors joined, e.g. Concat(batch, [-1], [32]).
            var out: [Dim] = []
            for i in ctx.node.inputs.indices { guard let v = ctx.symbols(i) else { return nil }; out += v }
            return out
        }

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
        let axis = try Axes.normalise(try ctx.node.int("axis", default: 0), rank: shape.count, ctx.node.label)
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
            let axis = try Axes.normalise(axisAttr, rank: x.rank, node.label)
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
    }).withGradient(splitGradient)

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

    static let sliceSchema = OpSchema(OpType.slice, opsets: movementOpsets, inputs: 3...5, shapeInputs: [1, 2, 3, 4],
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
            let inStrides = Strides.rowMajor(x.shape)
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
    }).withGradient(sliceGradient)
        .withSymbolicValue { ctx in
            // A unit-step slice of a shape vector, e.g. Shape(x)[2:] → [height, width].
            guard let v = ctx.symbols(0), ctx.type(0)?.shape?.count == 1,
                  let s = ctx.symbols(1)?.first?.value, let e = ctx.symbols(2)?.first?.value else { return nil }
            if ctx.node.input(3) != nil { guard let a = ctx.symbols(3)?.first?.value, a == 0 || a == -1 else { return nil } }
            if ctx.node.input(4) != nil { guard ctx.symbols(4)?.first?.value == 1 else { return nil } }
            let r = sliceRange(s, e, 1, dim: v.count)
            return Array(v[r.start..<r.start + r.count])
        }

    /// (axis, start, end, step) per sliced axis, axes normalised and checked.
    static func slicePlanAxes(starts: [Int], ends: [Int], axes: [Int]?, steps: [Int]?, rank: Int,
                              _ label: String) throws -> [(Int, Int, Int, Int)] {
        let axes = try Axes.normalise(axes ?? Array(0..<starts.count), rank: rank, label)
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
        guard let target = ctx.symbols(1), let shape = t.shape else {
            let n = ctx.type(1)?.knownShape?.first
            return [TensorType(t.dataType, freshDims(ctx, count: n.flatMap { n in t.shape.map { max($0.count, n) } }))]
        }
        let rank = max(shape.count, target.count)
        var out: [Dim] = []
        for k in 0..<rank {
            let a: Dim = k - (rank - shape.count) >= 0 ? shape[k - (rank - shape.count)] : .known(1)
            let b: Dim = k - (rank - target.count) >= 0 ? target[k - (rank - target.count)] : .known(1)
            if b.value == 1 { out.append(a) }
            else if b.value == nil { out.append(a.value == 1 ? b : a) }   // a symbolic target dim: 1 or a's size
            else if a.value == 1 || a.value == nil || a == b { out.append(b) }
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
            let inStrides = Strides.rowMajor(xs)
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
    }).withGradient(expandGradient)

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
            let inStrides = Strides.rowMajor(x.shape)
            var shape: [Int] = [], strides: [Int] = []
            for k in 0..<x.rank { shape += [reps[k], x.shape[k]]; strides += [0, inStrides[k]] }
            return [try StridedCopy.materialize(x, offset: 0, shape: shape, strides: strides, context: context).reshaped(outShape)]
        }
    }).withGradient(tileGradient)

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
            let maps = try padMaps(x.shape, outShape, begin, mode, node.label)
            var out = Tensor(uninitialized: x.dataType, shape: outShape)
            if out.count == 0 { return [out] }
            let strides = Strides.rowMajor(x.shape)
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
            // The width switch of Gather's small path: one per kernel, since Swift closures cannot be generic.
            switch es {
            case 1: run(UInt8.self)
            case 2: run(UInt16.self)
            case 4: run(UInt32.self)
            default: run(UInt64.self)
            }
            return [out]
        }
    }).withGradient(padGradient)

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

    /// Pads [b1, b2, …, e1, e2, …] (for `axes`, or all axes) → per-axis begin and end amounts.
    static func padAmounts(_ pads: [Int], axes: [Int]?, rank: Int, _ label: String) throws -> ([Int], [Int]) {
        let axes = try Axes.normalise(axes ?? Array(0..<rank), rank: rank, label)
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

// MARK: - Gradients

extension OpRegistry {
    /// Concat: each input's gradient is its slab of dY along the axis (ConcatGrad, one output per input
    /// that needs a gradient). The slab sizes come from Shape(input), folded at plan time.
    static let concatGradient: GradientRule = { ctx in
        let inputs = ctx.node.inputs
        var grads = [String?](repeating: nil, count: inputs.count)
        let wanted = inputs.indices.filter { ctx.needs($0) }
        guard !wanted.isEmpty else { return grads }
        let shapes = inputs.map { $0.isEmpty ? "" : ctx.shape(of: $0) }
        let outs = ctx.builder.add("ConcatGrad", domain: trainingDomain, [try ctx.gradient()] + shapes,
                                   attributes: ["axis": .int(try requiredInt(ctx.node, "axis")), "select": .ints(wanted)],
                                   outputs: wanted.count)
        for (k, i) in wanted.enumerated() { grads[i] = outs[k] }
        return grads
    }

    /// Split: dX = Concat of the output gradients; outputs without one contribute zeros (SplitGrad,
    /// which takes Shape(output) in their place).
    static let splitGradient: GradientRule = { ctx in
        var grads = [String?](repeating: nil, count: ctx.node.inputs.count)
        guard ctx.needs(0) else { return grads }
        let axis = try ctx.node.int("axis", default: 0)
        let gs = ctx.node.outputs.indices.map { $0 < ctx.outputGradients.count ? ctx.outputGradients[$0] : nil }
        if gs.allSatisfy({ $0 != nil }) {
            grads[0] = ctx.builder.add1(OpType.concat, gs.map { $0! }, attributes: ["axis": .int(axis)])
            return grads
        }
        var parts: [String] = [], zeros: [Int] = []
        for (i, g) in gs.enumerated() {
            if let g { parts.append(g); continue }
            guard !ctx.output(i).isEmpty else {
                throw SegFormerError.unsupported("\(ctx.node.label): gradient of Split with an unnamed output #\(i)")
            }
            parts.append(ctx.shape(of: ctx.output(i)))
            zeros.append(i)
        }
        grads[0] = ctx.builder.add1("SplitGrad", domain: trainingDomain, parts,
                                    attributes: ["axis": .int(axis), "zeros": .ints(zeros)])
        return grads
    }

    /// Slice: dY written into zeros of Shape(x) at the sliced positions (SliceGrad).
    static let sliceGradient: GradientRule = { ctx in
        let n = ctx.node.inputs
        var grads = [String?](repeating: nil, count: n.count)
        guard ctx.needs(0) else { return grads }
        grads[0] = ctx.builder.add1("SliceGrad", domain: trainingDomain,
                                    [try ctx.gradient(), ctx.shape(of: n[0])] + Array(n[1...]))
        return grads
    }

    /// Expand: the broadcast gradient summed back to x's shape.
    static let expandGradient: GradientRule = { ctx in
        guard ctx.needs(0) else { return [nil, nil] }
        return [ctx.sumToShape(try ctx.gradient(), like: ctx.input(0)), nil]
    }

    /// Tile: the sum of dY over the tiles (TileGrad).
    static let tileGradient: GradientRule = { ctx in
        guard ctx.needs(0) else { return [nil, nil] }
        return [ctx.builder.add1("TileGrad", domain: trainingDomain, [try ctx.gradient(), ctx.shape(of: ctx.input(0))]), nil]
    }

    /// Pad: every output element's gradient goes to the input element it was read from (constant
    /// padding: none) — PadGrad, for all modes. The pad value gets no gradient.
    static let padGradient: GradientRule = { ctx in
        let n = ctx.node.inputs
        var grads = [String?](repeating: nil, count: n.count)
        guard ctx.needs(0) else { return grads }
        var ins = [try ctx.gradient(), ctx.shape(of: n[0]), n[1]]
        if ctx.opset >= 18, n.count > 3, !n[3].isEmpty { ins.append(n[3]) }
        grads[0] = ctx.builder.add1("PadGrad", domain: trainingDomain, ins,
                                    attributes: ["mode": .string(try ctx.node.string("mode", default: "constant"))])
        return grads
    }

    // MARK: Gradient kernels

    /// ConcatGrad(dY, Shape(x0), Shape(x1), …; axis, select) → the slabs of dY for the inputs in `select`.
    static let concatGradSchema = OpSchema("ConcatGrad", domain: trainingDomain, inputs: 2...Int.max, outputs: 1...Int.max,
                                           inferTypes: { ctx in
        let select = try ctx.node.ints("select") ?? []
        return select.map { i in
            guard let g = ctx.type(0), let s = ctx.constant(1 + i), let shape = try? s.integers() else { return nil }
            return TensorType(g.dataType, known: shape)
        }
    }, makeKernel: { node, _ in
        let axisAttr = try requiredInt(node, "axis")
        let select = try node.ints("select") ?? []
        guard select.count == node.outputs.count else {
            throw SegFormerError.invalid("\(node.label): select \(select) does not match \(node.outputs.count) outputs")
        }
        return ClosureKernel { inputs, context in
            let dy = try inputs.required(0)
            let axis = try Axes.normalise(axisAttr, rank: dy.rank, node.label)
            var starts: [Int?] = [], sizes: [Int] = []
            var position = 0
            for k in 1..<inputs.count {
                guard let s = inputs[k] else { starts.append(nil); sizes.append(0); continue }
                let shape = try s.integers()
                var a = shape, b = dy.shape
                guard shape.count == dy.rank else {
                    throw SegFormerError.invalid("\(node.label): input shape \(shape) does not match gradient \(dy.shape)")
                }
                a[axis] = 0; b[axis] = 0
                guard a == b, shape[axis] >= 0 else {
                    throw SegFormerError.invalid("\(node.label): input shape \(shape) does not match gradient \(dy.shape) off axis \(axis)")
                }
                starts.append(position); sizes.append(shape[axis])
                position += shape[axis]
            }
            guard position == dy.shape[axis] else {
                throw SegFormerError.invalid("\(node.label): input sizes \(sizes) along axis \(axis) do not add up to gradient \(dy.shape)")
            }
            let outer = Tensor.elementCount(Array(dy.shape[..<axis]))
            let inner = Tensor.elementCount(Array(dy.shape[(axis + 1)...]))
            let dim = dy.shape[axis]
            return try select.map { i in
                guard i >= 0, i < starts.count, let start = starts[i] else {
                    throw SegFormerError.invalid("\(node.label): select \(i) names no input")
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
    })

    /// SplitGrad(part0, part1, …; axis, zeros): Concat along `axis` where the parts listed in `zeros` are
    /// shape tensors standing for zero blocks of that shape.
    static let splitGradSchema = OpSchema("SplitGrad", domain: trainingDomain, inputs: 1...Int.max, makeKernel: { node, _ in
        let axisAttr = try node.int("axis", default: 0)
        let zeros = Set(try node.ints("zeros") ?? [])
        return ClosureKernel { inputs, context in
            guard let first = inputs.indices.first(where: { !zeros.contains($0) && inputs[$0] != nil }).map({ inputs[$0]! }) else {
                throw SegFormerError.invalid("\(node.label): no gradient part")
            }
            let axis = try Axes.normalise(axisAttr, rank: first.rank, node.label)
            var shapes: [[Int]] = []
            var outShape = first.shape
            outShape[axis] = 0
            for i in inputs.indices {
                let t = try inputs.required(i, "part")
                let shape = zeros.contains(i) ? try t.integers() : t.shape
                if !zeros.contains(i), t.dataType != first.dataType {
                    throw SegFormerError.invalid("\(node.label): parts are \(first.dataType) and \(t.dataType)")
                }
                var a = shape, b = first.shape
                guard shape.count == first.rank else { throw SegFormerError.invalid("\(node.label): part shapes \(first.shape) and \(shape) differ in rank") }
                a[axis] = 0; b[axis] = 0
                guard a == b, shape[axis] >= 0 else {
                    throw SegFormerError.invalid("\(node.label): part shapes \(first.shape) and \(shape) differ off axis \(axis)")
                }
                shapes.append(shape)
                outShape[axis] += shape[axis]
            }
            let out = Tensor(uninitialized: first.dataType, shape: outShape)
            if out.count == 0 { return [out] }
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
                    let src: UnsafeRawPointer? = zeros.contains(i) ? nil : UnsafeRawPointer(inputs[i]!.storage.pointer)
                    context.parallelFor(outer, minimumPerChunk: max(1, 65536 / rowBytes)) { s, e in
                        for o in s..<e {
                            if let src { memcpy(base + o * rowOut, src + o * rowBytes, rowBytes) }
                            else { memset(base + o * rowOut, 0, rowBytes) }
                        }
                    }
                }
                col += rowBytes
            }
            return [out]
        }
    })

    /// SliceGrad(dY, Shape(x), starts, ends, axes?, steps?): zeros of x's shape with dY written at the
    /// positions Slice read (same clamping as the forward; the positions are distinct, so no sums).
    static let sliceGradSchema = OpSchema("SliceGrad", domain: trainingDomain, inputs: 4...6, shapeInputs: [1, 2, 3, 4, 5],
                                          inferTypes: gradientTypeAtShapeInput, makeKernel: { node, _ in
        ClosureKernel { inputs, context in
            let dy = try inputs.required(0)
            let xShape = try inputs.required(1, "shape").integers()
            try Movement.checkShape(xShape, node.label)
            let plan = try slicePlanAxes(starts: try inputs.required(2, "starts").integers(),
                                         ends: try inputs.required(3, "ends").integers(),
                                         axes: try inputs.optional(4)?.integers(),
                                         steps: try inputs.optional(5)?.integers(), rank: xShape.count, node.label)
            let xStrides = Strides.rowMajor(xShape)
            var shape = xShape, strides = xStrides
            var offset = 0
            for (axis, s, e, st) in plan {
                let r = sliceRange(s, e, st, dim: xShape[axis])
                shape[axis] = r.count
                strides[axis] = xStrides[axis] * st
                offset += r.start * xStrides[axis]
            }
            guard shape == dy.shape else {
                throw SegFormerError.invalid("\(node.label): gradient shape \(dy.shape) is not the slice shape \(shape) of \(xShape)")
            }
            if shape == xShape && strides == xStrides { return [dy] }
            let es = try Movement.elementSize(dy.dataType)
            let out = Tensor(uninitialized: dy.dataType, shape: xShape)
            if out.count == 0 { return [out] }
            StridedCopy.zeroBytes(out.storage.pointer, bytes: out.count * es, context: context)
            if dy.count > 0 {
                StridedCopy.scatter(src: UnsafeRawPointer(dy.storage.pointer), dst: out.storage.pointer, elementSize: es,
                                    offset: offset, shape: shape, strides: strides, context: context)
            }
            return [out]
        }
    })

    /// TileGrad(dY, Shape(x)): dY seen as [r0, d0, r1, d1, …] summed over the repeat axes.
    static let tileGradSchema = OpSchema("TileGrad", domain: trainingDomain, inputs: 2...2, shapeInputs: [1],
                                         inferTypes: gradientTypeAtShapeInput, makeKernel: { node, _ in
        ClosureKernel { inputs, context in
            let dy = try inputs.required(0)
            let xShape = try inputs.required(1, "shape").integers()
            guard xShape.count == dy.rank else {
                throw SegFormerError.invalid("\(node.label): gradient shape \(dy.shape) does not tile input shape \(xShape)")
            }
            try Movement.checkShape(xShape, node.label)
            var tiled: [Int] = [], axes: [Int] = []
            for (k, d) in xShape.enumerated() {
                let t = dy.shape[k]
                guard d > 0 ? t % d == 0 : t == 0 else {
                    throw SegFormerError.invalid("\(node.label): gradient shape \(dy.shape) does not tile input shape \(xShape)")
                }
                let r = d > 0 ? t / d : 1
                if r != 1 { axes.append(tiled.count) }
                tiled += [r, d]
            }
            if axes.isEmpty { return [dy.reshaped(xShape)] }
            if dy.count == 0 || Tensor.elementCount(xShape) == 0 { return [Tensor(zeros: dy.dataType, shape: xShape)] }
            let summed = try SingleOp.run(OpType.reduceSum, inputs: [dy.reshaped(tiled), Tensor(axes.map { Int64($0) }, shape: [axes.count])],
                                          attributes: ["keepdims": .int(1)], opset: 13, context: context)[0]
            return [summed.reshaped(xShape)]
        }
    })

    /// PadGrad(dY, Shape(x), pads, axes?; mode): each output element's gradient added to the input element
    /// it was read from (the forward's index maps); padding constants get nothing.
    static let padGradSchema = OpSchema("PadGrad", domain: trainingDomain, inputs: 3...4, shapeInputs: [1, 2, 3], inferTypes: { ctx in
        guard let g = ctx.type(0), let s = ctx.constant(1) else { return [nil] }
        return [TensorType(g.dataType, known: try s.integers())]
    }, makeKernel: { node, _ in
        let mode = try node.string("mode", default: "constant")
        guard ["constant", "reflect", "edge", "wrap"].contains(mode) else {
            throw SegFormerError.unsupported("\(node.label): pad mode '\(mode)'")
        }
        return ClosureKernel { inputs, _ in
            let dy = try inputs.required(0)
            let xShape = try inputs.required(1, "shape").integers()
            try Movement.checkShape(xShape, node.label)
            let (begin, end) = try padAmounts(try inputs.required(2, "pads").integers(), axes: try inputs.optional(3)?.integers(),
                                              rank: xShape.count, node.label)
            let outShape = (0..<xShape.count).map { xShape[$0] + begin[$0] + end[$0] }
            guard outShape == dy.shape else {
                throw SegFormerError.invalid("\(node.label): gradient shape \(dy.shape) is not the padded shape \(outShape)")
            }
            let out = Tensor(zeros: dy.dataType, shape: xShape)
            if out.count == 0 || dy.count == 0 { return [out] }
            let maps = try padMaps(xShape, outShape, begin, mode, node.label)
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
            default: throw SegFormerError.unsupported("\(node.label): Pad gradient of \(dy.dataType) tensors")
            }
            return [out]
        }
    })
}

extension StridedCopy {
    /// memset 0, split across threads when large.
    static func zeroBytes(_ dst: UnsafeMutableRawPointer, bytes: Int, context: ExecutionContext) {
        let block = 1 << 16
        let blocks = (bytes + block - 1) / block
        context.parallelFor(blocks, minimumPerChunk: 16) { s, e in
            let lo = s * block, hi = min(bytes, e * block)
            memset(dst + lo, 0, hi - lo)
        }
    }

    /// The inverse of `copy`: the contiguous `src` of `shape` is written to `dst` at
    /// `offset + Σ m[k]·strides[k]`. The destinations must be distinct (nothing is accumulated).
    /// Mirrors `copy` in StridedCopy.swift (the width switch onto a run specialised per element
    /// width): the inner loops are opposite (strided write vs strided read), so they stay two.
    static func scatter(src: UnsafeRawPointer, dst: UnsafeMutableRawPointer, elementSize es: Int, offset: Int,
                        shape: [Int], strides: [Int], context: ExecutionContext) {
        // coalesce: `.src` is the strided side (here the destination), `.dst` the contiguous one.
        let dims = coalesce(shape: shape, strides: strides)
        switch es {
        case 1: scatterRun(UInt8.self, src, dst, offset, dims, context)
        case 2: scatterRun(UInt16.self, src, dst, offset, dims, context)
        case 4: scatterRun(UInt32.self, src, dst, offset, dims, context)
        default: scatterRun(UInt64.self, src, dst, offset, dims, context)
        }
    }

    private static func scatterRun<T>(_: T.Type, _ srcRaw: UnsafeRawPointer, _ dstRaw: UnsafeMutableRawPointer,
                                      _ offset: Int, _ dims: [Dim3], _ context: ExecutionContext) {
        let s = srcRaw.assumingMemoryBound(to: T.self)
        let d = dstRaw.assumingMemoryBound(to: T.self)
        guard let last = dims.last else { d[offset] = s[0]; return }
        let outer = Array(dims.dropLast())
        let outerCount = outer.reduce(1) { $0 * $1.size }
        let n = last.size, ls = last.src
        let bytes = n * MemoryLayout<T>.stride
        context.parallelFor(outerCount, minimumPerChunk: max(1, 32768 / max(n, 1))) { start, end in
            var w = Walker(outer, start: start, baseSrc: offset)
            for _ in start..<end {
                let dp = d + w.src, sp = s + w.dst
                if ls == 1 {
                    if bytes <= 64 { for i in 0..<n { dp[i] = sp[i] } } else { memcpy(dp, sp, bytes) }
                } else {
                    for i in 0..<n { dp[i * ls] = sp[i] }
                }
                w.advance()
            }
        }
    }
}
