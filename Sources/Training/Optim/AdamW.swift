import Foundation
import GraphIR
import Runtime

/// AdamW with PyTorch's semantics and defaults (torch.optim.AdamW): decoupled weight decay
/// p ← p·(1 − lr·wd), then the Adam step with bias corrections.
///
/// A multi-tensor update: the moments of every parameter live in two flat buffers (parameters in name
/// order), and one update is a single vectorised pass over all elements, split across the context's
/// threads at fixed element boundaries. Each element sees the same float operations in the same order
/// whichever thread takes it, so the result has the same bits at every thread count — and as the
/// parameter-at-a-time loop this replaced.
public final class AdamW: Optimizer {
    public var beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double
    public let groups: ParameterGroups
    public private(set) var step = 0

    /// Where each parameter's moments sit in `expAvg` / `expAvgSq`.
    private var layout: [(name: String, offset: Int, shape: [Int])] = []
    private var expAvg = Tensor(zeros: .float, shape: [0])
    private var expAvgSq = Tensor(zeros: .float, shape: [0])
    /// Moments restored from a checkpoint (or of parameters not in the last update), placed into the
    /// flat buffers when an update first includes their parameter. Either may be missing in a damaged state.
    private var detached: [String: (expAvg: Tensor?, expAvgSq: Tensor?)] = [:]

    // Stored hyper-parameters, like SGD's init: the shape is shared, the parameters are not.
    public init(beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8, weightDecay: Double = 0.01,
                groups: [ParameterGroup] = []) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.groups = ParameterGroups(groups)
    }

    public func update(parameters: [String: Tensor], gradients: [String: Tensor], learningRate lr: Double) throws {
        try update(parameters: parameters, gradients: gradients, learningRate: lr, context: .singleThreaded)
    }

    public func update(parameters: [String: Tensor], gradients: [String: Tensor], learningRate lr: Double,
                       context: ExecutionContext) throws {
        step = try nextStep(after: step)
        let names = parameters.keys.filter { gradients[$0] != nil }.sorted()
        for name in names { try checkSameShape(parameters[name]!, gradients[name]!, name) }
        if names != layout.map(\.name) { try place(names, parameters) }

        let bc1 = 1 - pow(beta1, Double(step))
        let bc2 = 1 - pow(beta2, Double(step))
        let segments = layout.map { entry -> AdamWSegment in
            let (groupLR, wd) = groups.settings(entry.name, learningRate: lr, weightDecay: weightDecay)
            let p = parameters[entry.name]!, g = gradients[entry.name]!
            return AdamWSegment(parameter: p.pointer(Float.self), gradient: g.pointer(Float.self), offset: entry.offset,
                                count: p.count, decay: Float(1 - groupLR * wd), stepSize: Float(groupLR / bc1))
        }
        let constants = AdamWKernel.Constants(beta1: Float(beta1), beta2: Float(beta2),
                                              sqrtBiasCorrection2: Float(bc2.squareRoot()), epsilon: Float(epsilon))
        let m = expAvg.pointer(Float.self), v = expAvgSq.pointer(Float.self)
        context.parallelFor(expAvg.count, minimumPerChunk: 1 << 15) { start, end in
            for s in segments where s.offset < end && s.offset + s.count > start {
                let lo = max(start, s.offset), hi = min(end, s.offset + s.count)
                let i = lo - s.offset
                AdamWKernel.run(parameter: s.parameter + i, gradient: s.gradient + i, expAvg: m + lo, expAvgSq: v + lo,
                                count: hi - lo, decay: s.decay, stepSize: s.stepSize, constants)
            }
        }
    }

    /// Lays the moments of `names` out afresh in flat buffers: each keeps the moments it had (placed or
    /// detached), or starts at zero; moments of parameters no longer updated become detached.
    private func place(_ names: [String], _ parameters: [String: Tensor]) throws {
        var newLayout: [(name: String, offset: Int, shape: [Int])] = []
        var total = 0
        for name in names {
            newLayout.append((name, total, parameters[name]!.shape))
            total += parameters[name]!.count
        }
        var current = detached
        for entry in layout { current[entry.name] = (slice(expAvg, entry), slice(expAvgSq, entry)) }
        let m = Tensor(zeros: .float, shape: [total]), v = Tensor(zeros: .float, shape: [total])
        for entry in newLayout {
            guard let (em, ev) = current.removeValue(forKey: entry.name) else { continue }
            let zero = Tensor(zeros: .float, shape: entry.shape)
            let (mt, vt) = (em ?? zero, ev ?? zero)
            // Restored moments of another shape would be read past their end.
            guard mt.shape == entry.shape, vt.shape == entry.shape, mt.dataType == .float, vt.dataType == .float else {
                throw SegFormerError.invalid("AdamW state for '\(entry.name)' has moments \(mt.dataType)\(mt.shape) and \(vt.dataType)\(vt.shape); the parameter is \(entry.shape)")
            }
            (m.pointer(Float.self) + entry.offset).update(from: mt.pointer(Float.self), count: mt.count)
            (v.pointer(Float.self) + entry.offset).update(from: vt.pointer(Float.self), count: vt.count)
        }
        layout = newLayout
        expAvg = m
        expAvgSq = v
        detached = current
    }

    /// One parameter's part of a flat buffer, as its own tensor (a copy).
    private func slice(_ flat: Tensor, _ entry: (name: String, offset: Int, shape: [Int])) -> Tensor {
        let t = Tensor(uninitialized: .float, shape: entry.shape)
        t.pointer(Float.self).update(from: flat.pointer(Float.self) + entry.offset, count: t.count)
        return t
    }

    public var state: OptimizerState {
        get {
            var slots: [String: [String: Tensor]] = [:]
            // A restored state may lack one of the moments (a damaged checkpoint): such a slot is dropped, not unwrapped.
            for (n, d) in detached { if let m = d.expAvg, let v = d.expAvgSq { slots[n] = ["exp_avg": m.copy(), "exp_avg_sq": v.copy()] } }
            for entry in layout { slots[entry.name] = ["exp_avg": slice(expAvg, entry), "exp_avg_sq": slice(expAvgSq, entry)] }
            return OptimizerState(step: step, slots: slots)
        }
        set {
            step = newValue.step
            layout = []
            expAvg = Tensor(zeros: .float, shape: [0])
            expAvgSq = Tensor(zeros: .float, shape: [0])
            detached = newValue.slots.mapValues { ($0["exp_avg"]?.copy(), $0["exp_avg_sq"]?.copy()) }
                .filter { $0.value.0 != nil || $0.value.1 != nil }
        }
    }
}

/// One parameter's share of a multi-tensor AdamW pass.
private struct AdamWSegment: @unchecked Sendable {
    let parameter: UnsafeMutablePointer<Float>
    let gradient: UnsafeMutablePointer<Float>
    /// Its first element in the flat moment buffers.
    let offset: Int
    let count: Int
    let decay: Float
    let stepSize: Float
}

/// The AdamW element update over one contiguous run: 16 lanes at a time, then the tail. Every element
/// goes through exactly the scalar formula's operations, in its order (Swift contracts no multiply-add),
/// so lanes and tail agree bit for bit.
enum AdamWKernel {
    struct Constants {
        let beta1: Float, beta2: Float, sqrtBiasCorrection2: Float, epsilon: Float
    }

    static func run(parameter p: UnsafeMutablePointer<Float>, gradient g: UnsafeMutablePointer<Float>,
                    expAvg m: UnsafeMutablePointer<Float>, expAvgSq v: UnsafeMutablePointer<Float>,
                    count n: Int, decay: Float, stepSize: Float, _ c: Constants) {
        typealias Lanes = SIMD16<Float>
        let b1 = c.beta1, b2 = c.beta2, sqrtBC2 = c.sqrtBiasCorrection2, eps = c.epsilon
        var i = 0
        while i + Lanes.scalarCount <= n {
            let gi = UnsafeRawPointer(g + i).loadUnaligned(as: Lanes.self)
            var x = UnsafeRawPointer(p + i).loadUnaligned(as: Lanes.self) * decay
            let mi = UnsafeRawPointer(m + i).loadUnaligned(as: Lanes.self) * b1 + (1 - b1) * gi
            let vi = UnsafeRawPointer(v + i).loadUnaligned(as: Lanes.self) * b2 + (1 - b2) * gi * gi
            x -= stepSize * mi / (vi.squareRoot() / sqrtBC2 + eps)
            UnsafeMutableRawPointer(m + i).storeBytes(of: mi, as: Lanes.self)
            UnsafeMutableRawPointer(v + i).storeBytes(of: vi, as: Lanes.self)
            UnsafeMutableRawPointer(p + i).storeBytes(of: x, as: Lanes.self)
            i += Lanes.scalarCount
        }
        while i < n {
            let gi = g[i]
            var x = p[i] * decay
            let mi = m[i] * b1 + (1 - b1) * gi
            let vi = v[i] * b2 + (1 - b2) * gi * gi
            m[i] = mi
            v[i] = vi
            x -= stepSize * mi / (vi.squareRoot() / sqrtBC2 + eps)
            p[i] = x
            i += 1
        }
    }
}
