import GraphIR

/// Concat, Split, Slice, Expand, Tile and Pad: copies of contiguous runs (memcpy) or strided views.
extension OpRegistry {
    // MARK: Concat

    static let concatSchema = OpSchema(OpType.concat, opsets: movementOpsets(since: 4), inputs: 1...Int.max, inferTypes: { ctx in
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
        let label = node.label
        return ClosureKernel { inputs, context in
            [try SliceConcatKernels.concat(inputs.compactMap { $0 }, axis: axisAttr, label: label, context: context)]
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

    static let splitSchema = OpSchema("Split", opsets: movementOpsets(since: 2), inputs: 1...2, outputs: 1...Int.max,
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
            return try SliceConcatKernels.split(x, axis: axis, sizes: sizes, context: context)
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

    static let sliceSchema = OpSchema(OpType.slice, opsets: movementOpsets(since: 1), inputs: 1...5, shapeInputs: [1, 2, 3, 4],
                                      inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let shape = t.shape else { return [TensorType(t.dataType, nil)] }
        func const(_ i: Int) throws -> [Int]?? {
            if ctx.node.input(i) == nil { return .some(nil) }
            guard let c = ctx.constant(i) else { return nil }
            return .some(try c.integers())
        }
        let plan: [(Int, Int, Int, Int)]
        if ctx.opset < 10 {
            plan = try legacySlicePlan(ctx.node, rank: shape.count)
        } else {
            guard let starts = try const(1) ?? nil, let ends = try const(2) ?? nil,
                  let axes = try const(3), let steps = try const(4) else {
                return [TensorType(t.dataType, freshDims(ctx, count: shape.count))]
            }
            plan = try slicePlanAxes(starts: starts, ends: ends, axes: axes, steps: steps, rank: shape.count, ctx.node.label)
        }
        var out = shape
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
    }, makeKernel: { node, opset in
        let label = node.label
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            if opset < 10 { return [try SliceConcatKernels.slice(x, plan: try legacySlicePlan(node, rank: x.rank), context: context)] }
            let plan = try slicePlanAxes(starts: try inputs.required(1, "starts").integers(),
                                         ends: try inputs.required(2, "ends").integers(),
                                         axes: try inputs.optional(3)?.integers(),
                                         steps: try inputs.optional(4)?.integers(), rank: x.rank, label)
            return [try SliceConcatKernels.slice(x, plan: plan, context: context)]
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

    /// Slice before opset 10: `starts`, `ends` and optional `axes` are attributes, every step is 1.
    static func legacySlicePlan(_ node: Node, rank: Int) throws -> [(Int, Int, Int, Int)] {
        guard let starts = try node.ints("starts"), let ends = try node.ints("ends") else {
            throw SegFormerError.invalid("\(node.label): Slice before opset 10 needs the attributes 'starts' and 'ends'")
        }
        return try slicePlanAxes(starts: starts, ends: ends, axes: try node.ints("axes"), steps: nil, rank: rank, node.label)
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

    // Its kernel factory is shaped like Tile's below (one integer input read per run).
    static let expandSchema = OpSchema("Expand", opsets: movementOpsets(since: 8), inputs: 2...2, shapeInputs: [1],
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
        let label = node.label
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            let target = try inputs.required(1, "shape").integers()
            return [try SliceConcatKernels.expand(x, to: target, label: label, context: context)]
        }
    }).withGradient(expandGradient)

    // MARK: Tile

    // Tile's kernel factory has the shape of Expand's above (one integer input read per run): the same
    // schema pattern, different ops.
    static let tileSchema = OpSchema("Tile", opsets: movementOpsets(since: 6), inputs: 2...2, shapeInputs: [1],
                                     inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let c = ctx.constant(1), let shape = t.shape else { return [TensorType(t.dataType, t.shape.map { s in s.enumerated().map { .symbol("\(ctx.node.outputs.first ?? "?")#\($0.offset)") } })] }
        let reps = try c.integers()
        guard reps.count == shape.count else { throw SegFormerError.invalid("\(ctx.node.label): repeats \(reps) do not match rank \(shape.count)") }
        return [TensorType(t.dataType, zip(shape, reps).map { d, r in
            r == 1 ? d : (d.value.map { .known($0 * r) } ?? Movement.product([.known(r), d]))
        })]
    }, makeKernel: { node, _ in
        let label = node.label
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            let reps = try inputs.required(1, "repeats").integers()
            return [try SliceConcatKernels.tile(x, repeats: reps, label: label, context: context)]
        }
    }).withGradient(tileGradient)

    // MARK: Pad

    static let padSchema = OpSchema("Pad", opsets: movementOpsets(since: 2), inputs: 1...4, shapeInputs: [1, 3], inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let shape = t.shape else { return [TensorType(t.dataType, nil)] }
        let pads: [Int]
        if ctx.opset < 11 { pads = try legacyPads(ctx.node) }
        else if let p = ctx.constant(1) { pads = try p.integers() }
        else { return [TensorType(t.dataType, nil)] }
        if ctx.node.input(3) != nil && ctx.constant(3) == nil { return [TensorType(t.dataType, nil)] }
        let (begin, end) = try padAmounts(pads, axes: try ctx.constant(3)?.integers(), rank: shape.count, ctx.node.label)
        return [TensorType(t.dataType, shape.enumerated().map { k, d in
            begin[k] == 0 && end[k] == 0 ? d : (d.value.map { .known($0 + begin[k] + end[k]) } ?? .symbol("\(ctx.node.outputs.first ?? "?")#\(k)"))
        })]
    }, makeKernel: { node, opset in
        let mode = try node.string("mode", default: "constant")
        guard ["constant", "reflect", "edge"].contains(mode) || (mode == "wrap" && opset >= 19) else {
            throw SegFormerError.unsupported("\(node.label): pad mode '\(mode)'")
        }
        let label = node.label
        // Before opset 11 the pads and the fill value (a float, whatever the data's type) are attributes.
        let legacyValue = opset < 11 ? try node.float("value", default: 0) : nil
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            if let legacyValue {
                let (begin, end) = try padAmounts(try legacyPads(node), axes: nil, rank: x.rank, label)
                let value = x.dataType == .string ? nil : try castTensor(Tensor(scalar: legacyValue), to: x.dataType, label, context)
                return [try SliceConcatKernels.pad(x, begin: begin, end: end, value: value, mode: mode, label: label)]
            }
            let (begin, end) = try padAmounts(try inputs.required(1, "pads").integers(),
                                              axes: opset >= 18 ? try inputs.optional(3)?.integers() : nil,
                                              rank: x.rank, label)
            return [try SliceConcatKernels.pad(x, begin: begin, end: end, value: inputs.optional(2), mode: mode, label: label)]
        }
    }).withGradient(padGradient)

    /// Pad before opset 11: the `pads` attribute.
    static func legacyPads(_ node: Node) throws -> [Int] {
        guard let pads = try node.ints("pads") else {
            throw SegFormerError.invalid("\(node.label): Pad before opset 11 needs the attribute 'pads'")
        }
        return pads
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
        if ctx.opset < 10 { throw SegFormerError.unsupported("\(ctx.node.label): gradient of Slice before opset 10") }
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
        if ctx.opset < 11 { throw SegFormerError.unsupported("\(ctx.node.label): gradient of Pad before opset 11") }
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
        let label = node.label
        return ClosureKernel { inputs, context in
            let dy = try inputs.required(0)
            return try SliceConcatKernels.concatBackward(dy, inputShapes: Array(inputs.dropFirst()), axis: axisAttr,
                                                         select: select, label: label, context: context)
        }
    })

    /// SplitGrad(part0, part1, …; axis, zeros): Concat along `axis` where the parts listed in `zeros` are
    /// shape tensors standing for zero blocks of that shape.
    static let splitGradSchema = OpSchema("SplitGrad", domain: trainingDomain, inputs: 1...Int.max, makeKernel: { node, _ in
        let axisAttr = try node.int("axis", default: 0)
        let zeros = Set(try node.ints("zeros") ?? [])
        let label = node.label
        return ClosureKernel { inputs, context in
            [try SliceConcatKernels.splitBackward(inputs, zeros: zeros, axis: axisAttr, label: label, context: context)]
        }
    })

    /// SliceGrad(dY, Shape(x), starts, ends, axes?, steps?): zeros of x's shape with dY written at the
    /// positions Slice read (same clamping as the forward; the positions are distinct, so no sums).
    static let sliceGradSchema = OpSchema("SliceGrad", domain: trainingDomain, inputs: 4...6, shapeInputs: [1, 2, 3, 4, 5],
                                          inferTypes: gradientTypeAtShapeInput, makeKernel: { node, _ in
        let label = node.label
        return ClosureKernel { inputs, context in
            let dy = try inputs.required(0)
            let xShape = try inputs.required(1, "shape").integers()
            try Movement.checkShape(xShape, label)
            let plan = try slicePlanAxes(starts: try inputs.required(2, "starts").integers(),
                                         ends: try inputs.required(3, "ends").integers(),
                                         axes: try inputs.optional(4)?.integers(),
                                         steps: try inputs.optional(5)?.integers(), rank: xShape.count, label)
            return [try SliceConcatKernels.sliceBackward(dy, xShape: xShape, plan: plan, label: label, context: context)]
        }
    })

    /// TileGrad(dY, Shape(x)): dY seen as [r0, d0, r1, d1, …] summed over the repeat axes.
    static let tileGradSchema = OpSchema("TileGrad", domain: trainingDomain, inputs: 2...2, shapeInputs: [1],
                                         inferTypes: gradientTypeAtShapeInput, makeKernel: { node, _ in
        let label = node.label
        return ClosureKernel { inputs, context in
            let dy = try inputs.required(0)
            let xShape = try inputs.required(1, "shape").integers()
            return [try SliceConcatKernels.tileBackward(dy, xShape: xShape, label: label, context: context)]
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
        let label = node.label
        return ClosureKernel { inputs, _ in
            let dy = try inputs.required(0)
            let xShape = try inputs.required(1, "shape").integers()
            try Movement.checkShape(xShape, label)
            let (begin, end) = try padAmounts(try inputs.required(2, "pads").integers(), axes: try inputs.optional(3)?.integers(),
                                              rank: xShape.count, label)
            return [try SliceConcatKernels.padBackward(dy, xShape: xShape, begin: begin, end: end, mode: mode, label: label)]
        }
    })
}
