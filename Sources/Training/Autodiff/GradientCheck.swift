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
        var graph = Graph(name: "gradient-check")
        var names: [String] = []
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
        let outputs = (0..<outputCount).map { "y\($0)" }
        graph.nodes.append(Node(name: "op", opType: opType, domain: domain, inputs: names, outputs: outputs,
                                attributes: attributes))
        graph.outputs = outputs.map { ValueInfo(name: $0, type: TensorType(.undefined, nil)) }

        // Forward once for the output shapes, then fixed weights for the loss.
        let feeds = Dictionary(uniqueKeysWithValues: differentiable.map { (names[$0], inputs[$0]!) })
        let forward = try InferenceSession(model: Model(graph: graph, opsetImports: ["": opset]),
                                           options: SessionOptions(threads: 1, optimize: false))
        let y = try forward.run(feeds)
        var rng = seed
        var weights: [String: [Double]] = [:]
        let builder = GraphBuilder(graph: graph, prefix: "loss")
        var terms: [String] = []
        for o in outputs where y[o]!.dataType.isFloatingPoint {
            let n = y[o]!.count
            let w = (0..<n).map { _ -> Double in
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
                return Double(rng % 2001) / 1000 - 1
            }
            weights[o] = w
            let wName = builder.constant(Tensor(w.map { Float($0) }, shape: y[o]!.shape), name: "w_\(o)")
            // Other float types are cast to float32 first (the loss stays float32; Cast differentiates).
            let value = y[o]!.dataType == .float ? o : builder.add1("Cast", [o], attributes: ["to": .int(Int(DataType.float.rawValue))])
            let prod = builder.add1("Mul", [value, wName])
            terms.append(builder.add1("ReduceSum", [prod], attributes: ["keepdims": .int(0)]))
        }
        guard !terms.isEmpty else { throw Mismatch(message: "\(opType): no float output to differentiate") }
        let loss = terms.count == 1 ? terms[0] : builder.add1("Sum", terms)
        var lossGraph = builder.graph
        lossGraph.outputs = [ValueInfo(name: loss, type: TensorType(.float, []))]

        let params = differentiable.map { names[$0] }
        let gg = try Autodiff.differentiate(lossGraph, opset: opset, loss: loss, parameters: params)
        let training = try InferenceSession(model: Model(graph: gg.graph, opsetImports: ["": opset]),
                                            options: SessionOptions(threads: 1))
        let analytic = try training.run(feeds)

        func lossValue(_ f: [String: Tensor]) throws -> Double {
            let out = try forward.run(f)
            var total = 0.0
            for (o, w) in weights {
                let v = try out[o]!.doubles()
                for i in 0..<v.count { total += v[i] * w[i] }
            }
            return total
        }

        var report = Report(worstRatio: 0, checkedElements: 0)
        for (k, i) in differentiable.enumerated() {
            let x = inputs[i]!
            let grad = try analytic[gg.gradients[k].gradient]!.doubles()
            guard grad.count == x.count else {
                throw Mismatch(message: "\(opType): gradient of input \(i) has \(grad.count) elements, input has \(x.count)")
            }
            var picks = Set([0, x.count - 1])
            while picks.count < min(samples, x.count) {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
                picks.insert(Int(rng % UInt64(x.count)))
            }
            var numeric: [(Int, Double)] = []
            for e in picks.sorted() {
                let original = try x.doubles()[e]
                let h = epsilon * max(1, abs(original))
                var plus = feeds, minus = feeds
                plus[names[i]] = perturbed(x, e, original + h)
                minus[names[i]] = perturbed(x, e, original - h)
                numeric.append((e, (try lossValue(plus) - lossValue(minus)) / (2 * h)))
            }
            let scale = numeric.map { abs($0.1) }.max() ?? 0
            for (e, n) in numeric {
                let allowed = tolerance * max(scale, 1e-3) + tolerance * abs(n)
                let ratio = abs(grad[e] - n) / allowed
                report.worstRatio = max(report.worstRatio, ratio)
                report.checkedElements += 1
                if ratio > 1 {
                    throw Mismatch(message: "\(opType): d loss / d input \(i) element \(e): analytic \(grad[e]), numeric \(n) (allowed error \(allowed))")
                }
            }
        }
        return report
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
