import Foundation
import GraphIR
import Runtime

/// Finite-difference check of gradient rules: builds a one-node graph, a scalar loss
/// L = Σₖ Σ yₖ·wₖ with fixed random weights wₖ over the node's float outputs, differentiates it with
/// `Autodiff` and compares the analytic gradients with central differences of L computed in Double.
public enum GradientCheck {
    public struct Mismatch: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    public struct Report {
        /// Worst |analytic − numeric| / (atol + rtol·|numeric|) over all sampled elements (≤ 1 passes).
        public var worstRatio: Double
        public var checkedElements: Int
    }

    /// - Parameters:
    ///   - inputs: the op's inputs (nil for absent optional ones).
    ///   - differentiable: indices of inputs to check; the others become constants of the graph.
    ///   - epsilon: finite-difference step, relative to max(1, |x|).
    ///   - tolerance: relative tolerance; the absolute one is tolerance × the largest numeric gradient seen.
    @discardableResult
    public static func check(_ opType: String, domain: String = "", inputs: [Tensor?],
                             attributes: [String: Attribute] = [:], opset: Int = 17, outputCount: Int = 1,
                             differentiable: [Int], epsilon: Double = 1e-2, tolerance: Double = 2e-2,
                             samples: Int = 24, seed: UInt64 = 7) throws -> Report {
        let probe = try Probe(opType, domain: domain, inputs: inputs, attributes: attributes, opset: opset,
                              outputCount: outputCount, differentiable: differentiable)
        var rng = seed
        var weights: [String: [Double]] = [:]
        for o in probe.outputs where probe.y[o]!.dataType.isFloatingPoint {
            weights[o] = (0..<probe.y[o]!.count).map { _ -> Double in
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
                return Double(rng % 2001) / 1000 - 1
            }
        }
        guard !weights.isEmpty else { throw Mismatch(message: "\(opType): no float output to differentiate") }
        let analytic = try probe.autodiffGradients(weights: weights.mapValues { $0.map { Float($0) } })

        var report = Report(worstRatio: 0, checkedElements: 0)
        for (k, i) in differentiable.enumerated() {
            let x = inputs[i]!
            let grad = try analytic[k].doubles()
            guard grad.count == x.count else {
                throw Mismatch(message: "\(opType): gradient of input \(i) has \(grad.count) elements, input has \(x.count)")
            }
            var picks = Set([0, x.count - 1])
            while picks.count < min(samples, x.count) {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
                picks.insert(Int(rng % UInt64(x.count)))
            }
            let numeric = try probe.numericGradient(input: i, at: picks.sorted(), weights: weights, epsilon: epsilon)
            try compare(opType, input: i, analytic: grad, numeric: numeric, tolerance: tolerance,
                        errorScale: .largestNumeric, report: &report)
        }
        return report
    }

    /// How `checkRule` sizes the allowed error |analytic − numeric|.
    public enum ErrorScale {
        /// tolerance · (max(largest |numeric| of the input, 1e-3) + |numeric|), as `check` does.
        case largestNumeric
        /// tolerance · (1 + |numeric|): for linear ops, whose error is rounding only.
        case unit
    }

    /// Finite-difference check of one gradient rule called directly (no `Autodiff`, so the loss ops
    /// need no rules): the rule gets fixed upstream gradients dL/dyₖ = wₖ, its backward graph runs, and
    /// the result is compared with central differences of L = Σₖ Σ yₖ·wₖ computed in Double.
    /// - Parameters:
    ///   - withoutGradient: outputs that get no upstream gradient (and no loss term).
    ///   - weightSeed: output k's weights are `uniformValues(seed: weightSeed + k)`.
    ///   - samples: every element of inputs up to this size, else this many spread-out elements.
    ///   - epsilon: finite-difference step relative to max(1, |x|); nil: 1e-2 for float, 1e-5 for double.
    ///   - oneGradientPerInput: also require the rule to return exactly one entry per given input
    ///     (rules may list trailing optional inputs; `Autodiff` ignores entries past the node's inputs).
    @discardableResult
    public static func checkRule(_ opType: String, domain: String = "", inputs: [Tensor?],
                                 attributes: [String: Attribute] = [:], opset: Int = 17, outputCount: Int = 1,
                                 differentiable: [Int], withoutGradient: Set<Int> = [], weightSeed: UInt64 = 100,
                                 samples: Int = 40, epsilon: Double? = nil, tolerance: Double = 2e-2,
                                 errorScale: ErrorScale = .largestNumeric, oneGradientPerInput: Bool = false) throws -> Report {
        let probe = try Probe(opType, domain: domain, inputs: inputs, attributes: attributes, opset: opset,
                              outputCount: outputCount, differentiable: differentiable)
        let builder = GraphBuilder(graph: probe.graph, prefix: "check")
        var weights: [String: [Double]] = [:]
        var outGrads: [String?] = []
        for (k, o) in probe.outputs.enumerated() {
            let t = probe.y[o]!
            guard !withoutGradient.contains(k), t.dataType == .float || t.dataType == .double else {
                outGrads.append(nil); continue
            }
            let w = uniformValues(count: t.count, seed: weightSeed + UInt64(k))
            weights[o] = w
            let wt = t.dataType == .double ? Tensor(w, shape: t.shape) : Tensor(w.map { Float($0) }, shape: t.shape)
            outGrads.append(builder.constant(wt, name: "w_\(o)"))
        }
        let schema = try OpRegistry.schema(for: probe.node, opset: opset)
        guard let rule = schema.gradient else { throw Mismatch(message: "\(opType) has no gradient rule") }
        let needs = probe.names.enumerated().map { differentiable.contains($0.offset) && !$0.element.isEmpty }
        let grads = try rule(GradientContext(node: probe.node, opset: opset, outputGradients: outGrads,
                                             needsInputGradient: needs, builder: builder))
        if oneGradientPerInput, grads.count != inputs.count {
            throw Mismatch(message: "\(opType): rule returned \(grads.count) gradients for \(inputs.count) inputs")
        }
        var outNames: [String] = []
        for i in differentiable {
            guard i < grads.count, let name = grads[i] else { throw Mismatch(message: "\(opType): no gradient for input \(i)") }
            outNames.append(builder.add1(OpType.identity, [name]))
        }
        var g = builder.graph
        g.outputs = outNames.map { ValueInfo(name: $0, type: TensorType(.undefined, nil)) }
        let session = try Session(model: Model(graph: g, opsetImports: ["": opset]),
                                           options: SessionOptions(threads: 2))
        let analytic = try session.run(probe.feeds)

        var report = Report(worstRatio: 0, checkedElements: 0)
        for (k, i) in differentiable.enumerated() {
            let x = inputs[i]!
            let gradTensor = analytic[outNames[k]]!
            guard gradTensor.shape == x.shape, gradTensor.dataType == x.dataType else {
                throw Mismatch(message: "\(opType): gradient of input \(i) is \(gradTensor.dataType) \(gradTensor.shape), input is \(x.dataType) \(x.shape)")
            }
            let picks = x.count <= samples ? Array(0..<x.count)
                                           : Array(Set((0..<samples).map { ($0 * 7919) % x.count })).sorted()
            let h = epsilon ?? (x.dataType == .double ? 1e-5 : 1e-2)
            let numeric = try probe.numericGradient(input: i, at: picks, weights: weights, epsilon: h)
            try compare(opType, input: i, analytic: try gradTensor.doubles(), numeric: numeric, tolerance: tolerance,
                        errorScale: errorScale, report: &report)
        }
        return report
    }

    /// Gradients of L = Σ op(inputs)·dY through `Autodiff`, for the inputs in `differentiable` (the
    /// others are constants): the vector-Jacobian products with dY, in the order of `differentiable`.
    public static func vectorJacobianProducts(_ opType: String, domain: String = "", inputs: [Tensor?],
                                              attributes: [String: Attribute] = [:], opset: Int = 17,
                                              differentiable: [Int], dY: Tensor) throws -> [Tensor] {
        let probe = try Probe(opType, domain: domain, inputs: inputs, attributes: attributes, opset: opset,
                              outputCount: 1, differentiable: differentiable)
        return try probe.autodiffGradients(weights: [probe.outputs[0]: dY])
    }

    /// Deterministic values in [-1, 1] (float32-representable), seeded.
    public static func uniformValues(count: Int, seed: UInt64) -> [Double] {
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<count).map { _ in
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            return Double(Float(s % 20001) / 10000 - 1)
        }
    }

    /// The graph of one node whose differentiable inputs are graph inputs (the others initializers),
    /// run forward once.
    struct Probe {
        let opset: Int
        var graph = Graph(name: "gradient-check")
        var names: [String] = []
        let node: Node
        let outputs: [String]
        let inputs: [Tensor?]
        let feeds: [String: Tensor]
        /// Names of the differentiable inputs, in the order of `differentiable`.
        let parameters: [String]
        let forward: Session
        let y: [String: Tensor]

        init(_ opType: String, domain: String, inputs: [Tensor?], attributes: [String: Attribute], opset: Int,
             outputCount: Int, differentiable: [Int]) throws {
            self.opset = opset
            self.inputs = inputs
            for (i, t) in inputs.enumerated() {
                guard let t else { names.append(""); continue }
                let name = "x\(i)"
                names.append(name)
                if differentiable.contains(i) {
                    graph.inputs.append(ValueInfo(name: name, type: TensorType(t.dataType, known: t.shape)))
                } else {
                    graph.setInitializer(name, t)
                }
            }
            outputs = (0..<outputCount).map { "y\($0)" }
            node = Node(name: "op", opType: opType, domain: domain, inputs: names, outputs: outputs, attributes: attributes)
            graph.nodes.append(node)
            graph.outputs = outputs.map { ValueInfo(name: $0, type: TensorType(.undefined, nil)) }
            let names = names
            parameters = differentiable.map { names[$0] }
            feeds = Dictionary(uniqueKeysWithValues: differentiable.map { (names[$0], inputs[$0]!) })
            forward = try Session(model: Model(graph: graph, opsetImports: ["": opset]),
                                           options: SessionOptions(threads: 1, optimize: false))
            y = try forward.run(feeds)
        }

        /// Analytic gradients of L = Σₖ Σ yₖ·wₖ via `Autodiff`, in the order of `differentiable`; a
        /// weight is a float32 tensor (any shape broadcasting to yₖ's) or the values of one of yₖ's shape.
        func autodiffGradients(weights: [String: [Float]]) throws -> [Tensor] {
            try autodiffGradients(weights: weights.reduce(into: [String: Tensor]()) { d, kv in
                d[kv.key] = Tensor(kv.value, shape: y[kv.key]!.shape)
            })
        }

        func autodiffGradients(weights: [String: Tensor]) throws -> [Tensor] {
            let builder = GraphBuilder(graph: graph, prefix: "loss")
            var terms: [String] = []
            for o in outputs {
                guard let w = weights[o] else { continue }
                let wName = builder.constant(w, name: "w_\(o)")
                // Other float types are cast to float32 first (the loss stays float32; Cast differentiates).
                let value = y[o]!.dataType == .float ? o : builder.add1(OpType.cast, [o], attributes: ["to": .int(Int(DataType.float.rawValue))])
                let prod = builder.add1(OpType.mul, [value, wName])
                terms.append(builder.add1(OpType.reduceSum, [prod], attributes: ["keepdims": .int(0)]))
            }
            let loss = terms.count == 1 ? terms[0] : builder.add1(OpType.sum, terms)
            var lossGraph = builder.graph
            lossGraph.outputs = [ValueInfo(name: loss, type: TensorType(.float, []))]
            let gg = try Autodiff.differentiate(lossGraph, opset: opset, loss: loss, parameters: parameters)
            let training = try Session(model: Model(graph: gg.graph, opsetImports: ["": opset]),
                                                options: SessionOptions(threads: 1))
            let out = try training.run(feeds)
            return gg.gradients.map { out[$0.gradient]! }
        }

        /// Central differences of L = Σₖ Σ yₖ·wₖ with respect to elements `picks` of input `i`, with
        /// step epsilon · max(1, |x|).
        func numericGradient(input i: Int, at picks: [Int], weights: [String: [Double]],
                             epsilon: Double) throws -> [(Int, Double)] {
            let x = inputs[i]!
            let values = try x.doubles()
            func loss(_ f: [String: Tensor]) throws -> Double {
                let out = try forward.run(f)
                var total = 0.0
                for (o, w) in weights {
                    let v = try out[o]!.doubles()
                    for j in 0..<v.count { total += v[j] * w[j] }
                }
                return total
            }
            return try picks.map { e in
                let h = epsilon * max(1, abs(values[e]))
                var plus = feeds, minus = feeds
                plus[names[i]] = perturbed(x, e, values[e] + h)
                minus[names[i]] = perturbed(x, e, values[e] - h)
                return (e, (try loss(plus) - loss(minus)) / (2 * h))
            }
        }
    }

    private static func compare(_ opType: String, input i: Int, analytic grad: [Double], numeric: [(Int, Double)],
                                tolerance: Double, errorScale: ErrorScale, report: inout Report) throws {
        let scale: Double
        switch errorScale {
        case .largestNumeric: scale = max(numeric.map { abs($0.1) }.max() ?? 0, 1e-3)
        case .unit: scale = 1
        }
        for (e, n) in numeric {
            let allowed = tolerance * scale + tolerance * abs(n)
            let ratio = abs(grad[e] - n) / allowed
            report.worstRatio = max(report.worstRatio, ratio)
            report.checkedElements += 1
            if !(ratio <= 1) {   // also catches a NaN gradient
                throw Mismatch(message: "\(opType): d loss / d input \(i) element \(e): analytic \(grad[e]), numeric \(n) (allowed error \(allowed))")
            }
        }
    }

    private static func perturbed(_ x: Tensor, _ index: Int, _ value: Double) -> Tensor {
        let c = x.copy()
        switch c.dataType {
        case .double: c.pointer(Double.self)[index] = value
        default: c.pointer(Float.self)[index] = Float(value)
        }
        return c
    }
}
