import Foundation
import GraphIR

// Resize (opsets 10–19+) and Upsample (7–9).
// Interpolation is separable: every resized axis gets a table of taps (source indices and weights per
// output position), computed in Double exactly as the ONNX reference does (coordinate transform,
// ratio, neighbour window with edge clamping, exclude_outside, antialias filters), and the axes are
// applied one after another. float32 resizes of only the last two axes (NCHW bilinear, SegFormer)
// run both passes per plane, in parallel over planes. Nearest is a pure gather, so it works for any
// element type.

extension OpRegistry {
    static let resizeOps: [OpSchema] = [
        OpSchema(OpType.resize, opsets: 10...28, inputs: 1...4, shapeInputs: [1, 2, 3],
                 inferTypes: { ctx in
                     guard let t = ctx.type(0) else { return [nil] }
                     guard let shape = t.shape else { return [TensorType(t.dataType, nil)] }
                     let attrs = try ResizeAttributes(ctx.node, ctx.opset)
                     let scalesIndex = ctx.opset < 11 ? 1 : 2
                     let scalesGiven = ctx.node.input(scalesIndex) != nil, sizesGiven = ctx.opset >= 11 && ctx.node.input(3) != nil
                     let scales = ctx.constant(scalesIndex), sizes = ctx.opset < 11 ? nil : ctx.constant(3)
                     if sizesGiven, sizes == nil, attrs.axes == nil, attrs.policy == .stretch,
                        let target = ctx.symbols(3), target.count == shape.count {
                         return [TensorType(t.dataType, target)]   // sizes computed from the input's symbolic dims
                     }
                     if (scalesGiven && scales == nil) || (sizesGiven && sizes == nil) { return [TensorType(t.dataType, nil)] }
                     // Symbolic input dims: stand in 1 for them and keep the symbol where the axis is untouched.
                     let probe = shape.map { $0.value ?? 1 }
                     let g = try ResizePlan.outputGeometry(probe, scales: scales, sizes: sizes, attrs, label: ctx.node.label)
                     var out: [Dim] = []
                     let listed = Set(try (attrs.axes ?? Array(0..<shape.count)).map { try Axes.normalise($0, rank: shape.count, scalarAsVector: true, ctx.node.label) })
                     for (i, d) in shape.enumerated() {
                         if d.value != nil { out.append(.known(g.outShape[i])) }
                         else if sizesGiven && attrs.policy == .stretch && listed.contains(i) { out.append(.known(g.outShape[i])) }
                         else if !listed.contains(i) || (!sizesGiven && g.scales[i] == 1) { out.append(d) }
                         else { return [TensorType(t.dataType, nil)] }
                     }
                     return [TensorType(t.dataType, out)]
                 },
                 makeKernel: { node, opset in
                     let attrs = try ResizeAttributes(node, opset)
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         let x = try inputs.required(0)
                         let roi: Tensor?, scales: Tensor?, sizes: Tensor?
                         if opset < 11 {
                             (roi, scales, sizes) = (nil, try inputs.required(1, "scales"), nil)
                         } else {
                             (roi, scales, sizes) = (inputs.optional(1), inputs.optional(2), inputs.optional(3))
                         }
                         return [try ResizePlan.run(x, roi: roi, scales: scales, sizes: sizes, attrs, label: label, context: context)]
                     }
                 }).withGradient(resizeGradient),
        // The fuse-resize-add pass's op: (Resize(x, roi, scales, sizes) + addend) + bias, then an optional
        // Relu (inference graphs, and a training session's gradient graph after autodiff, so no gradient
        // rule). The pass matched an addend of the resized shape and a constant per-channel bias
        // ([C, 1, 1] or [1, C, 1, 1]).
        OpSchema(OpType.resizeAdd, domain: fusedDomain, inputs: 2...6, shapeInputs: [1, 2, 3],
                 inferTypes: { ctx in [ctx.type(4)] },
                 makeKernel: { node, opset in
                     let attrs = try ResizeAttributes(node, max(opset, 11))
                     let label = node.label
                     let relu = try node.appliesActivation(OpType.relu)
                     return ClosureKernel { inputs, context in
                         [try ResizePlan.run(try inputs.required(0), roi: inputs.optional(1), scales: inputs.optional(2),
                                             sizes: inputs.optional(3), attrs, label: label, context: context,
                                             adding: try inputs.required(4, "addend"), bias: inputs.optional(5),
                                             relu: relu)]
                     }
                 }),
        // The fuse-resize-sum pass's op: inputs (bias, projection weight, projection bias, then per term
        // x, roi, scales, sizes), x an NHWC image resized as Resize resizes its NCHW view; the terms
        // summed in order, then the bias and an optional Relu (inference graphs only, so no gradient
        // rule). Output NHWC, or with a projection (a 1×1 convolution's weight [M, C, 1, 1] or [M, C]
        // and bias [M]) its result, NCHW [B, M, H, W].
        OpSchema(OpType.resizeSum, domain: fusedDomain, inputs: 2...(resizeSumFirstTerm + 4 * resizeSumMaxTerms),
                 shapeInputs: resizeSumShapeInputs,
                 inferTypes: inferResizeSum,
                 makeKernel: { node, opset in
                     let attrs = try ResizeAttributes(node, max(opset, 11))
                     let label = node.label
                     let relu = try node.appliesActivation(OpType.relu)
                     guard try node.string("layout", default: "NHWC") == "NHWC" else {
                         throw SegFormerError.unsupported("\(label): ResizeSum layout '\(try node.string("layout", default: ""))' (NHWC only)")
                     }
                     guard (node.inputs.count - resizeSumFirstTerm) % 4 == 0 else {
                         throw SegFormerError.invalid("\(label): ResizeSum takes a bias, a projection and its bias, then 4 inputs per term; got \(node.inputs.count) inputs")
                     }
                     return ClosureKernel { inputs, context in
                         var terms: [(x: Tensor, roi: Tensor?, scales: Tensor?, sizes: Tensor?)] = []
                         for i in stride(from: resizeSumFirstTerm, to: inputs.count, by: 4) {
                             let x = try inputs.required(i, "term \((i - resizeSumFirstTerm) / 4)")
                             terms.append((x, inputs.optional(i + 1), inputs.optional(i + 2), inputs.optional(i + 3)))
                         }
                         let projection = inputs.optional(1).map { ResizePlan.Projection(weight: $0, bias: inputs.optional(2)) }
                         return [try ResizePlan.resizeSum(terms, bias: inputs.optional(0), relu: relu,
                                                          projection: projection, attrs, label: label, context: context)]
                     }
                 }),
        OpSchema("Upsample", opsets: 7...9, inputs: 1...2,
                 shapeInputs: [1],
                 makeKernel: { node, opset in
                     var attrs = try ResizeAttributes(node, 10)
                     attrs.coordinateMode = .asymmetric
                     let scaleAttr = try node.floats("scales")
                     if opset < 9 && scaleAttr == nil {
                         throw SegFormerError.invalid("\(node.label): missing 'scales' attribute")
                     }
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         let x = try inputs.required(0)
                         let scales = opset < 9 ? Tensor(scaleAttr!, shape: [scaleAttr!.count]) : try inputs.required(1, "scales")
                         return [try ResizePlan.run(x, roi: nil, scales: scales, sizes: nil, attrs, label: label, context: context)]
                     }
                 }).withGradient(upsampleGradient),
    ]
}

/// ResizeSum's terms: a limit of the schema, far above the decode heads' four stages.
private let resizeSumMaxTerms = 16
/// The input of ResizeSum's first term (after the bias, the projection weight and its bias).
let resizeSumFirstTerm = 3
/// Each term's roi, scales and sizes (after the term's image).
private let resizeSumShapeInputs: Set<Int> = Set((0..<resizeSumMaxTerms).flatMap { (t: Int) -> [Int] in
    let x = resizeSumFirstTerm + 4 * t
    return [x + 1, x + 2, x + 3]
})

/// ResizeSum's output type: the first resized term's, as Resize's rule gives it for the term's NCHW
/// view, laid out NHWC — or, with a projection, NCHW with the projection's output channels.
private func inferResizeSum(_ ctx: TypeInferenceContext) throws -> [TensorType?] {
    let opset = max(ctx.opset, 11)
    for i in stride(from: resizeSumFirstTerm, to: ctx.inputTypes.count, by: 4) where ctx.type(i + 2) != nil || ctx.type(i + 3) != nil {
        let resize = Node(name: ctx.node.name, opType: OpType.resize, inputs: Array(ctx.node.inputs[i..<min(i + 4, ctx.node.inputs.count)]),
                          outputs: ["y"], attributes: ctx.node.attributes)
        guard let rule = try OpRegistry.schema(for: resize, opset: opset).inferTypes,
              let x = ctx.type(i), let s = x.shape, s.count == 4 else { return [nil] }
        let view = TensorType(x.dataType, [s[0], s[3], s[1], s[2]])
        let terms = Array((i + 1)...(i + 3))
        let term = TypeInferenceContext(node: resize, opset: opset, inputTypes: [view] + terms.map { ctx.type($0) },
                                        constantInputs: [nil] + terms.map { ctx.constant($0) },
                                        symbolicInputs: [nil] + terms.map { $0 < ctx.symbolicInputs.count ? ctx.symbolicInputs[$0] : nil })
        guard let out = try rule(term).first ?? nil, let o = out.shape, o.count == 4 else { return [nil] }
        guard ctx.node.input(1) != nil else { return [TensorType(out.dataType, [o[0], o[2], o[3], o[1]])] }
        guard let m = ctx.type(1)?.shape?.first else { return [TensorType(out.dataType, nil)] }
        return [TensorType(out.dataType, [o[0], m, o[2], o[3]])]
    }
    return [nil]
}

enum ResizeMode: String { case nearest, linear, cubic }
enum CoordinateMode: String {
    case halfPixel = "half_pixel", halfPixelSymmetric = "half_pixel_symmetric"
    case pytorchHalfPixel = "pytorch_half_pixel", alignCorners = "align_corners", asymmetric
    case tfCropAndResize = "tf_crop_and_resize", tfHalfPixelForNN = "tf_half_pixel_for_nn"
}
/// `simple` is the pre-opset-11 rule: floor when upsampling, ceil when downsampling.
enum NearestMode: String { case roundPreferFloor = "round_prefer_floor", roundPreferCeil = "round_prefer_ceil", floor, ceil, simple }
enum AspectPolicy: String { case stretch, notLarger = "not_larger", notSmaller = "not_smaller" }

struct ResizeAttributes {
    var mode: ResizeMode
    var coordinateMode: CoordinateMode
    var nearestMode: NearestMode
    var cubicA: Double
    var excludeOutside: Bool
    var extrapolation: Double
    var antialias: Bool
    var axes: [Int]?
    var policy: AspectPolicy

    init(_ node: Node, _ opset: Int) throws {
        let label = node.label
        let m = try node.string("mode", default: "nearest")
        guard let mode = ResizeMode(rawValue: m == "bilinear" ? "linear" : m) else {
            throw SegFormerError.unsupported("\(label): mode '\(m)'")
        }
        self.mode = mode
        if opset < 11 {
            coordinateMode = .asymmetric
            nearestMode = .simple
        } else {
            let c = try node.string("coordinate_transformation_mode", default: "half_pixel")
            guard let cm = CoordinateMode(rawValue: c) else { throw SegFormerError.unsupported("\(label): coordinate_transformation_mode '\(c)'") }
            coordinateMode = cm
            let n = try node.string("nearest_mode", default: "round_prefer_floor")
            guard let nm = NearestMode(rawValue: n), nm != .simple else { throw SegFormerError.unsupported("\(label): nearest_mode '\(n)'") }
            nearestMode = nm
        }
        cubicA = Double(try node.float("cubic_coeff_a", default: -0.75))
        excludeOutside = try node.int("exclude_outside", default: 0) != 0
        extrapolation = Double(try node.float("extrapolation_value", default: 0))
        antialias = try opset >= 18 && node.int("antialias", default: 0) != 0
        axes = opset >= 18 ? try node.ints("axes") : nil
        let p = opset >= 18 ? try node.string("keep_aspect_ratio_policy", default: "stretch") : "stretch"
        guard let policy = AspectPolicy(rawValue: p) else { throw SegFormerError.unsupported("\(label): keep_aspect_ratio_policy '\(p)'") }
        self.policy = policy
        if antialias && mode == .nearest { throw SegFormerError.invalid("\(label): antialias is not defined for nearest mode") }
        if coordinateMode == .tfHalfPixelForNN { throw SegFormerError.unsupported("\(label): coordinate_transformation_mode 'tf_half_pixel_for_nn'") }
    }
}

// MARK: - Gradient

// ResizeGrad (training domain): (dY, shape of X, roi?, scales?, sizes?) → dX. The forward is linear
// in X with the per-axis tap tables, so the gradient scatters dY through the same tables, axes in
// reverse order (every mode: nearest, linear, cubic, antialias; extrapolated positions send nothing).
// Attributes: the forward node's, plus forward_opset (the tables depend on it). Scales, sizes and
// roi are constants of the forward and get no gradient.

extension OpRegistry {
    static let resizeGradOps: [OpSchema] = [
        OpSchema("ResizeGrad", domain: trainingDomain, inputs: 2...5, shapeInputs: [1, 2, 3, 4],
                 inferTypes: gradientTypeAtShapeInput,
                 makeKernel: { node, _ in
                     let forwardOpset = try node.int("forward_opset", default: 13)
                     let attrs = try ResizeAttributes(node, forwardOpset)
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         let shape = try inputs.required(1).integers()
                         return [try ResizePlan.backward(try inputs.required(0), xShape: shape, roi: inputs.optional(2),
                                                         scales: inputs.optional(3), sizes: inputs.optional(4), attrs,
                                                         label: label, context: context)]
                     }
                 }),
    ]

    static let resizeGradient: GradientRule = { ctx in
        var attrs = ctx.node.attributes
        attrs["forward_opset"] = .int(ctx.opset)
        let n = ctx.node.inputs
        func opt(_ i: Int) -> String { i < n.count ? n[i] : "" }
        let (roi, scales, sizes) = ctx.opset < 11 ? ("", opt(1), "") : (opt(1), opt(2), opt(3))
        var ins = [try ctx.gradient(), ctx.shape(of: ctx.input(0)), roi, scales, sizes]
        while let last = ins.last, last.isEmpty { ins.removeLast() }
        return [ctx.builder.add1("ResizeGrad", domain: trainingDomain, ins, attributes: attrs)] +
            [String?](repeating: nil, count: max(0, n.count - 1))
    }

    /// Upsample (opsets 7–9) is Resize at opset 10 (asymmetric), scales from the input or attribute.
    static let upsampleGradient: GradientRule = { ctx in
        var attrs = ctx.node.attributes
        attrs["forward_opset"] = .int(10)
        attrs["scales"] = nil
        let scales: String
        if ctx.node.inputs.count > 1 && !ctx.input(1).isEmpty {
            scales = ctx.input(1)
        } else {
            guard let s = try ctx.node.floats("scales") else { throw SegFormerError.invalid("\(ctx.node.label): missing scales") }
            scales = ctx.builder.constant(Tensor(s, shape: [s.count]), name: "upsample_scales")
        }
        return [ctx.builder.add1("ResizeGrad", domain: trainingDomain, [try ctx.gradient(), ctx.shape(of: ctx.input(0)), "", scales],
                                 attributes: attrs), nil]
    }
}
