import Foundation
import GraphIR

/// Shape and data-movement ops. The views (Reshape, Flatten, Squeeze, Unsqueeze, Identity, inference
/// Dropout) return the input's storage under a new shape; the copying ops live in Transpose.swift,
/// SliceConcat.swift, Gather.swift and Generators.swift and move bytes by element size, so they work for
/// every element type.
extension OpRegistry {
    static let shapeManipulationOps: [OpSchema] = [
        shapeSchema, sizeSchema, reshapeSchema, flattenSchema, squeezeSchema, unsqueezeSchema,
        identitySchema, dropoutSchema,
        transposeSchema, depthToSpaceSchema, spaceToDepthSchema,
        concatSchema, splitSchema, sliceSchema, expandSchema, tileSchema, padSchema,
        gatherSchema,
        constantSchema, constantOfShapeSchema, rangeSchema,
    ]

    /// Training-domain kernels behind the gradient rules of this family.
    static let shapeGradientOps: [OpSchema] = [
        dropoutGradSchema, concatGradSchema, splitGradSchema, sliceGradSchema, tileGradSchema, padGradSchema,
        gatherGradSchema, depthToSpaceGradSchema,
    ]

    /// Opsets whose semantics these ops implement (Shape, Size, Identity and ConstantOfShape go back to their first
    /// version, unchanged since but for types): versions after 13 only added element types (which
    /// the byte-moving kernels handle alike), and the conformance cases were written at up to 28.
    static let movementOpsets: ClosedRange<Int> = 11...28

    /// `movementOpsets` reaching back to the op's first version whose meaning the schema implements.
    /// Before 11 most of these ops differ only in refusing negative axes/indices (accepted here); where
    /// an input was an attribute before (Slice < 10, Pad < 11, Squeeze/Unsqueeze/Split ≤ 12), the schema
    /// reads the attribute at those opsets.
    static func movementOpsets(since first: Int) -> ClosedRange<Int> { first...movementOpsets.upperBound }

    // MARK: Shape, Size

    static let shapeSchema = OpSchema(OpType.shape, opsets: 1...28, inputs: 1...1, inferTypes: { ctx in
        guard let t = ctx.type(0), let shape = t.shape else { return [nil] }
        let (s, e) = try shapeRange(ctx.node, ctx.opset, rank: shape.count)
        return [TensorType(.int64, known: [e - s])]
    }, makeKernel: { node, opset in
        ClosureKernel { inputs, _ in [try shapeValue(node, opset, try inputs.required(0).shape)] }
    }).notDifferentiable()
        .withValueFromShape(shapeValue)
        .withSymbolicValue { ctx in
            guard let dims = ctx.type(0)?.shape else { return nil }
            let (s, e) = try shapeRange(ctx.node, ctx.opset, rank: dims.count)
            return Array(dims[s..<e])
        }

    static func shapeValue(_ node: Node, _ opset: Int, _ shape: [Int]) throws -> Tensor {
        let (s, e) = try shapeRange(node, opset, rank: shape.count)
        return Tensor(shape[s..<e].map { Int64($0) }, shape: [e - s])
    }

    /// Shape's start/end (opset 15+), clamped to [0, rank].
    static func shapeRange(_ node: Node, _ opset: Int, rank: Int) throws -> (Int, Int) {
        guard opset >= 15 else { return (0, rank) }
        func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + rank : v, 0), rank) }
        let s = clamp(try node.int("start", default: 0))
        let e = clamp(try node.int("end", default: rank))
        return (s, max(s, e))
    }

    static let sizeSchema = OpSchema("Size", opsets: 1...28, inputs: 1...1, inferTypes: { _ in
        [TensorType(.int64, known: [])]
    }, makeKernel: { _, _ in
        ClosureKernel { inputs, _ in [Tensor(scalar: Int64(try inputs.required(0).count))] }
    }).notDifferentiable()
        .withValueFromShape { _, _, shape in Tensor(scalar: Int64(Tensor.elementCount(shape))) }

    // MARK: Reshape

    static let reshapeSchema = OpSchema(OpType.reshape, opsets: movementOpsets(since: 5), inputs: 2...2, shapeInputs: [1],
                                        inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let target = ctx.symbols(1) else {
            // Shape computed at run time: the rank is still the shape input's length.
            return [TensorType(t.dataType, freshDims(ctx, count: ctx.type(1)?.knownShape?.first))]
        }
        let allowZero = ctx.opset >= 14 ? try ctx.node.int("allowzero", default: 0) != 0 : false
        return [TensorType(t.dataType, try reshapeDims(t.shape, target, allowZero: allowZero, ctx.node.label,
                                                         symbolPrefix: ctx.node.outputs.first ?? "?"))]
    }, makeKernel: { node, opset in
        let allowZero = opset >= 14 ? try node.int("allowzero", default: 0) != 0 : false
        return ClosureKernel { inputs, _ in
            let x = try inputs.required(0)
            let requested = try inputs.required(1, "shape").integers()
            let shape = try reshapeShape(x.shape, requested, allowZero: allowZero, node.label)
            return [x.reshaped(shape)]
        }
    }).withGradient(viewGradient)

    /// `count` fresh symbolic dims named after the node (nil count: unknown rank). A count that is
    /// no rank (negative, or absurdly large, from a broken model's declared shapes) is an unknown rank.
    static func freshDims(_ ctx: TypeInferenceContext, count: Int?) -> [Dim]? {
        guard let n = count, (0...1024).contains(n) else { return nil }
        return (0..<n).map { .symbol("\(ctx.node.outputs.first ?? "?")#\($0)") }
    }

    /// The concrete output shape of Reshape (0 copies the input dim unless allowzero, -1 is inferred).
    static func reshapeShape(_ input: [Int], _ requested: [Int], allowZero: Bool, _ label: String) throws -> [Int] {
        func fail(_ why: String) -> SegFormerError {
            .invalid("\(label): cannot reshape \(input) to \(requested): \(why)")
        }
        var out = requested
        var inferred: Int? = nil
        for (i, v) in requested.enumerated() {
            if v == -1 {
                guard inferred == nil else { throw fail("more than one -1") }
                inferred = i
            } else if v == 0 && !allowZero {
                guard i < input.count else { throw fail("0 at position \(i) copies a dimension the input lacks") }
                out[i] = input[i]
            } else if v < 0 {
                throw fail("negative dimension \(v)")
            }
        }
        if allowZero && inferred != nil && requested.contains(0) { throw fail("allowzero with both 0 and -1") }
        let total = Tensor.elementCount(input)
        guard total != .max else { throw fail("the input's \(input) elements are too many to count") }
        if let i = inferred {
            var rest = 1
            for (k, v) in out.enumerated() where k != i {
                let (m, o) = rest.multipliedReportingOverflow(by: v)
                guard !o else { throw fail("shape overflows") }
                rest = m
            }
            guard rest != 0, total % rest == 0 else { throw fail("\(total) elements do not divide into the given dimensions") }
            out[i] = total / rest
        }
        var n = 1
        for v in out {
            let (m, o) = n.multipliedReportingOverflow(by: v)
            guard !o else { throw fail("shape overflows") }
            n = m
        }
        guard n == total else { throw fail("element counts differ (\(total) vs \(n))") }
        return out
    }

    /// The symbolic output shape of Reshape. The requested shape may itself be symbolic (computed
    /// from the input's dims by shape arithmetic, e.g. `[batch, height*width, 32]`).
    static func reshapeDims(_ input: [Dim]?, _ requested: [Dim], allowZero: Bool, _ label: String,
                            symbolPrefix: String) throws -> [Dim]? {
        if let known = input.flatMap({ TensorType(.float, $0).knownShape }),
           let target = TensorType(.int64, requested).knownShape {
            return Movement.dims(try reshapeShape(known, target, allowZero: allowZero, label))
        }
        var out: [Dim?] = []
        var inferred: Int? = nil
        for (i, d) in requested.enumerated() {
            if d.value == -1 {
                guard inferred == nil else { throw SegFormerError.invalid("\(label): the shape \(requested) has more than one -1") }
                inferred = i
                out.append(nil)
            }
            else if d.value == 0 && !allowZero {
                guard let input, i < input.count else { return input == nil ? nil : [] }
                out.append(input[i])
            } else { out.append(d) }
        }
        if let i = inferred {
            // Cancel the known output factors against the input's: what is left is the -1 dim.
            guard let input else { return nil }
            var knownIn = 1
            var symbolsIn: [String] = []
            for d in input { if let v = d.value { knownIn *= v } else if case .symbol(let s) = d { symbolsIn.append(s) } }
            var knownOut = 1
            var ok = true
            for (k, d) in out.enumerated() where k != i {
                guard let d else { continue }
                if let v = d.value { knownOut *= v }
                else if case .symbol(let s) = d, let j = symbolsIn.firstIndex(of: s) { symbolsIn.remove(at: j) }
                else { ok = false }
            }
            if ok, knownOut != 0, knownIn % knownOut == 0 {
                out[i] = Movement.product([Dim.known(knownIn / knownOut)] + symbolsIn.map { Dim.symbol($0) })
            } else {
                out[i] = .symbol("\(symbolPrefix)#\(i)")
            }
        }
        return out.map { $0! }
    }

    // MARK: Flatten

    static let flattenSchema = OpSchema("Flatten", opsets: movementOpsets(since: 1), inputs: 1...1, inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        guard let shape = t.shape else { return [TensorType(t.dataType, [.symbol("\(ctx.node.outputs.first ?? "?")#0"), .symbol("\(ctx.node.outputs.first ?? "?")#1")])] }
        let a = try flattenAxis(ctx.node, rank: shape.count)
        return [TensorType(t.dataType, [Movement.product(shape[..<a]), Movement.product(shape[a...])])]
    }, makeKernel: { node, _ in
        ClosureKernel { inputs, _ in
            let x = try inputs.required(0)
            let a = try flattenAxis(node, rank: x.rank)
            return [x.reshaped([Tensor.elementCount(Array(x.shape[..<a])), Tensor.elementCount(Array(x.shape[a...]))])]
        }
    }).withGradient(viewGradient)

    static func flattenAxis(_ node: Node, rank: Int) throws -> Int {
        try Axes.normalise(try node.int("axis", default: 1), rank: rank, splitPoint: true, node.label)
    }

    // MARK: Squeeze, Unsqueeze

    /// Squeeze/Unsqueeze axes: the attribute up to opset 12, the optional second input from 13.
    static func axesAttributeOrInput(_ node: Node, _ opset: Int, _ inputs: [Tensor?]) throws -> [Int]? {
        if opset <= 12 { return try node.ints("axes") }
        return try inputs.optional(1)?.integers()
    }

    static let squeezeSchema = OpSchema("Squeeze", opsets: movementOpsets(since: 1), inputs: 1...2, shapeInputs: [1],
                                        inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        let axes: [Int]?
        if ctx.opset <= 12 { axes = try ctx.node.ints("axes") }
        else if ctx.node.input(1) == nil { axes = nil }
        else if let c = ctx.constant(1) { axes = try c.integers() }
        else { return [TensorType(t.dataType, nil)] }
        guard let shape = t.shape else { return [TensorType(t.dataType, nil)] }
        if let axes, !axes.isEmpty {
            let norm = Set(try Axes.normalise(axes, rank: shape.count, ctx.node.label))
            return [TensorType(t.dataType, shape.enumerated().filter { !norm.contains($0.offset) }.map(\.element))]
        }
        // No axes: drop every dim known to be 1; a symbolic dim makes the rank unknown.
        if shape.contains(where: { $0.value == nil }) { return [TensorType(t.dataType, nil)] }
        return [TensorType(t.dataType, shape.filter { $0.value != 1 })]
    }, makeKernel: { node, opset in
        ClosureKernel { inputs, _ in
            let x = try inputs.required(0)
            let axes = try axesAttributeOrInput(node, opset, inputs)
            var out: [Int] = []
            if let axes, !axes.isEmpty {   // an empty axes list squeezes all, as onnxruntime does
                let norm = Set(try Axes.normalise(axes, rank: x.rank, node.label))
                for (i, d) in x.shape.enumerated() {
                    if norm.contains(i) {
                        guard d == 1 else {
                            throw SegFormerError.invalid("\(node.label): cannot squeeze axis \(i) of size \(d) (input shape \(x.shape))")
                        }
                    } else { out.append(d) }
                }
            } else {
                out = x.shape.filter { $0 != 1 }
            }
            return [x.reshaped(out)]
        }
    }).withGradient(viewGradient)
        .withSymbolicValue { ctx in
            // A one-element shape vector squeezed to a scalar keeps its contents.
            guard let v = ctx.symbols(0), v.count == 1 else { return nil }
            return v
        }

    static let unsqueezeSchema = OpSchema("Unsqueeze", opsets: movementOpsets(since: 1), inputs: 1...2, shapeInputs: [1],
                                          inferTypes: { ctx in
        guard let t = ctx.type(0) else { return [nil] }
        let axes: [Int]
        if ctx.opset <= 12 { axes = try ctx.node.ints("axes") ?? [] }
        else if let c = ctx.constant(1) { axes = try c.integers() }
        else {
            let added = ctx.type(1)?.knownShape?.first
            return [TensorType(t.dataType, freshDims(ctx, count: added.flatMap { a in t.shape.map { $0.count + a } }))]
        }
        guard let shape = t.shape else { return [TensorType(t.dataType, nil)] }
        return [TensorType(t.dataType, try unsqueezed(shape, axes, one: .known(1), ctx.node.label))]
    }, makeKernel: { node, opset in
        ClosureKernel { inputs, _ in
            let x = try inputs.required(0)
            guard let axes = try axesAttributeOrInput(node, opset, inputs) else {
                throw SegFormerError.invalid("\(node.label): Unsqueeze needs axes")
            }
            return [x.reshaped(try unsqueezed(x.shape, axes, one: 1, node.label))]
        }
    }).withGradient(viewGradient)
        .withSymbolicValue { ctx in ctx.isScalar(0) ? ctx.symbols(0) : nil }

    static func unsqueezed<D>(_ shape: [D], _ axes: [Int], one: D, _ label: String) throws -> [D] {
        let rank = shape.count + axes.count
        let norm = Set(try Axes.normalise(axes, rank: rank, label))
        var out: [D] = []
        var next = 0
        for i in 0..<rank {
            if norm.contains(i) { out.append(one) } else { out.append(shape[next]); next += 1 }
        }
        return out
    }

    // MARK: Identity, Dropout

    static let identitySchema = OpSchema(OpType.identity, opsets: 1...28, inputs: 1...1, inferTypes: { ctx in
        [ctx.type(0)]
    }, makeKernel: { _, _ in
        ClosureKernel { inputs, _ in [try inputs.required(0)] }
    }).withGradient(identityGradient)
        .withSymbolicValue { ctx in ctx.symbols(0) }

    static let dropoutSchema = OpSchema("Dropout", opsets: movementOpsets(since: 7), inputs: 1...3, outputs: 1...2,
                                        inferTypes: { ctx in
        let n = ctx.node.outputs.count
        guard let t = ctx.type(0) else { return Array(repeating: nil, count: n) }
        return Array([t, TensorType(ctx.opset < 10 ? t.dataType : .bool, t.shape)].prefix(n))
    }, makeKernel: { node, opset in
        let seed = try node.int("seed")
        let attributeRatio = try node.float("ratio", default: 0.5)
        let wantsMask = node.outputs.count > 1 && !node.outputs[1].isEmpty
        let streamKey = node.outputs.first ?? node.name
        return ClosureKernel { inputs, context in
            let x = try inputs.required(0)
            var training = false
            var ratio = Double(attributeRatio)
            if opset >= 12 {
                if let r = inputs.optional(1) {
                    let v = try r.doubles()
                    guard v.count == 1 else { throw SegFormerError.invalid("\(node.label): ratio must be a scalar, has shape \(r.shape)") }
                    ratio = v[0]
                } else { ratio = 0.5 }
                if let t = inputs.optional(2) { training = try Movement.scalarInt(t, "training_mode", node.label) != 0 }
            }
            if !training || ratio == 0 {
                // Inference (or nothing dropped): the output is the input itself.
                var outs = [x]
                if wantsMask {
                    let mask = Tensor(uninitialized: .bool, shape: x.shape)
                    if mask.count > 0 { memset(mask.storage.pointer, 1, mask.count) }
                    // Opsets 7–9 give the mask the data's type.
                    outs.append(opset < 10 ? try castTensor(mask, to: x.dataType, node.label, context) : mask)
                }
                return outs
            }
            guard ratio > 0 && ratio < 1 else {
                throw SegFormerError.invalid("\(node.label): dropout ratio \(ratio) must be in [0, 1)")
            }
            return try DropoutKernels.forward(x, ratio: ratio, seed: seed, stream: (context, streamKey), wantsMask: wantsMask, node.label)
        }
    }).withGradient(dropoutGradient)
        .nondeterministic()
}

// MARK: - Gradients

extension OpRegistry {

    /// Reshape, Flatten, Squeeze, Unsqueeze: dX = Reshape(dY, Shape(x)). Shape(x) folds to a constant
    /// at plan time, so x itself is not kept alive for the backward pass. The other inputs (shape, axes)
    /// are integer tensors: no gradient.
    static let viewGradient: GradientRule = { ctx in
        var grads: [String?] = Array(repeating: nil, count: ctx.node.inputs.count)
        guard ctx.needs(0) else { return grads }
        // allowzero: a 0 in Shape(x) is a real empty dim, not "copy dY's dim".
        let attributes: [String: Attribute] = ctx.opset >= 14 ? ["allowzero": .int(1)] : [:]
        grads[0] = ctx.builder.add1(OpType.reshape, [try ctx.gradient(), ctx.shape(of: ctx.input(0))], attributes: attributes)
        return grads
    }

    static let identityGradient: GradientRule = { ctx in [try ctx.gradient()] }

    /// Dropout: identity in inference mode. With a training_mode input (opset ≥ 12) the mode is a run-time
    /// value, so DropoutGrad decides: dY when not training, else dY·mask/(1−ratio) with the forward's mask
    /// output (or, without one, the mask regenerated from the `seed` attribute).
    static let dropoutGradient: GradientRule = { ctx in
        var grads: [String?] = Array(repeating: nil, count: ctx.node.inputs.count)
        guard ctx.needs(0), let dy = ctx.outputGradients.first ?? nil else { return grads }
        let n = ctx.node.inputs
        guard ctx.opset >= 12, n.count > 2, !n[2].isEmpty else {
            grads[0] = dy
            return grads
        }
        var attributes: [String: Attribute] = [:]
        if let seed = try ctx.node.int("seed") { attributes["seed"] = .int(seed) }
        let mask = ctx.node.outputs.count > 1 ? ctx.node.outputs[1] : ""
        grads[0] = ctx.builder.add1("DropoutGrad", domain: trainingDomain, [dy, mask, n[1], n[2]], attributes: attributes)
        return grads
    }

    /// DropoutGrad(dY, mask?, ratio?, training_mode): the backward of training-capable Dropout.
    static let dropoutGradSchema = OpSchema("DropoutGrad", domain: trainingDomain, inputs: 2...4, inferTypes: { ctx in
        [ctx.type(0)]
    }, makeKernel: { node, _ in
        let seed = try node.int("seed")
        return ClosureKernel { inputs, context in
            let dy = try inputs.required(0)
            var ratio = 0.5
            if let r = inputs.optional(2) {
                let v = try r.doubles()
                guard v.count == 1 else { throw SegFormerError.invalid("\(node.label): ratio must be a scalar, has shape \(r.shape)") }
                ratio = v[0]
            }
            let training = try Movement.scalarInt(try inputs.required(3, "training_mode"), "training_mode", node.label) != 0
            if !training || ratio == 0 { return [dy] }
            guard ratio > 0 && ratio < 1 else {
                throw SegFormerError.invalid("\(node.label): dropout ratio \(ratio) must be in [0, 1)")
            }
            let mask: Tensor
            if let m = inputs.optional(1) {
                guard m.dataType == .bool, m.shape == dy.shape else {
                    throw SegFormerError.invalid("\(node.label): mask \(m.dataType) \(m.shape) does not match gradient \(dy.shape)")
                }
                mask = m
            } else if let seed {
                // The forward reseeds its generator on every run: the same draws give the same mask.
                mask = DropoutKernels.seededMask(seed: seed, ratio: ratio, shape: dy.shape)
            } else {
                throw SegFormerError.unsupported("\(node.label): gradient of training-mode Dropout without a mask output or seed")
            }
            return [try DropoutKernels.backward(dy, mask: mask, ratio: ratio, node.label, context: context)]
        }
    })
}
