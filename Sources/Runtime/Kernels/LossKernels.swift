import Foundation
import GraphIR

// CPU kernels of the Loss family: the schemas (what each op means) are in Ops/Loss.swift.
enum CrossEntropy {
    enum Reduction: String { case none, sum, mean }

    struct Params {
        var reduction: Reduction
        var ignoreIndex: Int?
        init(_ node: Node) throws {
            let r = try node.string("reduction", default: "mean")
            guard let red = Reduction(rawValue: r) else { throw SegFormerError.invalid("\(node.label): reduction '\(r)'") }
            reduction = red
            ignoreIndex = try node.int("ignore_index")
        }
    }

    /// Positions per task: a block of the spatial axis, processed class by class.
    static let block = 256

    struct Layout {
        var n: Int, c: Int, d: Int
    }

    static func validate(_ scores: Tensor, _ labels: Tensor, _ weights: Tensor?, _ label: String) throws -> Layout {
        guard scores.rank >= 2 else { throw SegFormerError.invalid("\(label): scores of shape \(scores.shape) need rank ≥ 2") }
        let s = scores.shape
        let want = [s[0]] + Array(s[2...])
        guard labels.shape == want else {
            throw SegFormerError.invalid("\(label): labels of shape \(labels.shape) do not match scores \(s) (want \(want))")
        }
        guard labels.dataType == .int64 || labels.dataType == .int32 else {
            throw SegFormerError.unsupported("\(label): labels of type \(labels.dataType) (int32 or int64)")
        }
        if let weights, weights.shape != [s[1]] {
            throw SegFormerError.invalid("\(label): weights of shape \(weights.shape) for \(s[1]) classes")
        }
        return Layout(n: s[0], c: s[1], d: NormOpsSupport.product(s, 2..<s.count))
    }

    /// Labels as Int (validated: in 0..<C unless ignored) and their weights (0 where ignored).
    static func targets(_ labels: Tensor, _ weights: Tensor?, _ p: Params, classes: Int, label: String) throws -> ([Int32], [Double]) {
        let count = labels.count
        var idx = [Int32](repeating: -1, count: count)
        var w = [Double](repeating: 0, count: count)
        let wv = try weights.map { try NormOpsSupport.doubles($0, label) }
        func fill<I: BinaryInteger>(_ src: UnsafeMutablePointer<I>) throws {
            for i in 0..<count {
                let v = Int(src[i])
                if let ig = p.ignoreIndex, v == ig { continue }
                guard v >= 0 && v < classes else {
                    throw SegFormerError.invalid("\(label): label \(v) at position \(i) is outside 0..<\(classes)")
                }
                idx[i] = Int32(v)
                w[i] = wv?[v] ?? 1
            }
        }
        if labels.dataType == .int64 { try fill(labels.pointer(Int64.self)) } else { try fill(labels.pointer(Int32.self)) }
        return (idx, w)
    }

    static func forward(_ scores0: Tensor, _ labels: Tensor, _ weights: Tensor?, _ p: Params, logProb: Bool,
                        label: String, context: ExecutionContext) throws -> [Tensor] {
        let L = try validate(scores0, labels, weights, label)
        let (idx, w) = try targets(labels, weights, p, classes: L.c, label: label)
        let scores: Tensor
        switch scores0.dataType {
        case .float, .double: scores = scores0
        case .float16, .bfloat16: scores = NormOpsSupport.widenToFloat(scores0)
        default: throw SegFormerError.unsupported("\(label): element type \(scores0.dataType)")
        }
        let perPosition = [Double](repeating: 0, count: L.n * L.d)
        var lossAt = perPosition
        var logP: Tensor? = logProb ? Tensor(uninitialized: scores.dataType, shape: scores.shape) : nil
        if L.c > 0 {
            lossAt.withUnsafeMutableBufferPointer { out in
                if scores.dataType == .double {
                    rows(scores.pointer(Double.self), logP?.pointer(Double.self), L, idx, w, out.baseAddress!, context)
                } else {
                    rows(scores.pointer(Float.self), logP?.pointer(Float.self), L, idx, w, out.baseAddress!, context)
                }
            }
        } else if L.n * L.d > 0 {
            throw SegFormerError.invalid("\(label): scores have no classes")
        }
        let loss: Tensor
        switch p.reduction {
        case .none:
            loss = Tensor(lossAt, shape: labels.shape)
        case .sum, .mean:
            var total = 0.0
            for v in lossAt { total += v }
            if p.reduction == .mean {
                var wsum = 0.0
                for v in w { wsum += v }
                total /= wsum
            }
            loss = Tensor([total], shape: [])
        }
        func cast(_ t: Tensor) -> Tensor {
            switch scores0.dataType {
            case .double: return t
            case .float: return Tensor(t.buffer(Double.self).map { Float($0) }, shape: t.shape)
            default: return NormOpsSupport.narrow(Tensor(t.buffer(Double.self).map { Float($0) }, shape: t.shape), to: scores0.dataType)
            }
        }
        var outs = [cast(loss)]
        if let lp = logP { outs.append(NormOpsSupport.narrow(lp, to: scores0.dataType)) }
        logP = nil
        return outs
    }

    // rows and gradRows (below) share their blocking and scratch buffers but are separate hot loops
    // (fused log-softmax + NLL here, its gradient there), each specialised for its own work.
    static func rows<T: BinaryFloatingPoint>(_ x: UnsafeMutablePointer<T>, _ logP: UnsafeMutablePointer<T>?, _ L: Layout,
                                             _ idx: [Int32], _ w: [Double], _ out: UnsafeMutablePointer<Double>,
                                             _ context: ExecutionContext) {
        let nb = (L.d + block - 1) / block
        idx.withUnsafeBufferPointer { idx in
        w.withUnsafeBufferPointer { wt in
            context.parallelFor(L.n * nb, minimumPerChunk: max(1, 16384 / max(1, L.c * block))) { a, b in
                let maxv = UnsafeMutablePointer<T>.allocate(capacity: block)
                let tmp = UnsafeMutablePointer<T>.allocate(capacity: block)
                let sum = UnsafeMutablePointer<Double>.allocate(capacity: block)
                defer { maxv.deallocate(); tmp.deallocate(); sum.deallocate() }
                for t in a..<b {
                    let n = t / nb, d0 = (t % nb) * block, bw = min(block, L.d - d0)
                    let base = x + n * L.c * L.d + d0
                    NormOpsSupport.softmaxStatistics(base, rows: L.c, rowStride: L.d, lanes: bw, max: maxv, sum: sum, exps: tmp, expStride: 0)
                    for j in 0..<bw {
                        let pos = n * L.d + d0 + j
                        let k = Int(idx[pos])
                        if k < 0 { out[pos] = 0; continue }
                        let lp = Double(base[k * L.d + j]) - Double(maxv[j]) - Foundation.log(sum[j])
                        out[pos] = -lp * wt[pos]
                    }
                    if let logP {
                        let dst = logP + n * L.c * L.d + d0
                        for j in 0..<bw { tmp[j] = T(Foundation.log(sum[j])) }
                        for k in 0..<L.c {
                            let s = base + k * L.d, o = dst + k * L.d
                            for j in 0..<bw { o[j] = (s[j] - maxv[j]) - tmp[j] }
                        }
                    }
                }
            }
        }}
    }

    // MARK: gradient

    /// dScores[n, c, d] = coef[n, d] · (softmax[n, c, d] − [c == label]), coef = g · w / (Σ w if mean);
    /// ignored positions get exact zeros.
    static func backward(_ dLoss: Tensor, _ scores0: Tensor, _ labels: Tensor, _ weights: Tensor?, _ p: Params,
                         label: String, context: ExecutionContext) throws -> Tensor {
        let L = try validate(scores0, labels, weights, label)
        let (idx, w) = try targets(labels, weights, p, classes: L.c, label: label)
        let g = try dLoss.doubles()
        var coef = w
        switch p.reduction {
        case .none:
            guard g.count == coef.count else {
                throw SegFormerError.invalid("\(label): loss gradient has \(g.count) elements for \(coef.count) positions")
            }
            for i in 0..<coef.count { coef[i] *= g[i] }
        case .sum, .mean:
            guard g.count == 1 else { throw SegFormerError.invalid("\(label): loss gradient of shape \(dLoss.shape) is not a scalar") }
            var scale = g[0]
            if p.reduction == .mean {
                var wsum = 0.0
                for v in w { wsum += v }
                scale /= wsum
            }
            for i in 0..<coef.count { coef[i] *= scale }
        }
        let scores: Tensor
        switch scores0.dataType {
        case .float, .double: scores = scores0
        case .float16, .bfloat16: scores = NormOpsSupport.widenToFloat(scores0)
        default: throw SegFormerError.unsupported("\(label): element type \(scores0.dataType)")
        }
        let dx = Tensor(uninitialized: scores.dataType, shape: scores.shape)
        if scores.count > 0 {
            if scores.dataType == .double {
                gradRows(scores.pointer(Double.self), dx.pointer(Double.self), L, idx, coef, context)
            } else {
                gradRows(scores.pointer(Float.self), dx.pointer(Float.self), L, idx, coef, context)
            }
        }
        return NormOpsSupport.narrow(dx, to: scores0.dataType)
    }

    // Blocked like `rows` above, deliberately not shared: see there.
    static func gradRows<T: BinaryFloatingPoint>(_ x: UnsafeMutablePointer<T>, _ dx: UnsafeMutablePointer<T>, _ L: Layout,
                                                 _ idx: [Int32], _ coef: [Double], _ context: ExecutionContext) {
        let nb = (L.d + block - 1) / block
        idx.withUnsafeBufferPointer { idx in
        coef.withUnsafeBufferPointer { coef in
            context.parallelFor(L.n * nb, minimumPerChunk: max(1, 16384 / max(1, L.c * block))) { a, b in
                let maxv = UnsafeMutablePointer<T>.allocate(capacity: block)
                let tmp = UnsafeMutablePointer<T>.allocate(capacity: block)
                let sum = UnsafeMutablePointer<Double>.allocate(capacity: block)
                let scale = UnsafeMutablePointer<T>.allocate(capacity: block)
                defer { maxv.deallocate(); tmp.deallocate(); sum.deallocate(); scale.deallocate() }
                for t in a..<b {
                    let n = t / nb, d0 = (t % nb) * block, bw = min(block, L.d - d0)
                    let base = x + n * L.c * L.d + d0, out = dx + n * L.c * L.d + d0
                    NormOpsSupport.softmaxStatistics(base, rows: L.c, rowStride: L.d, lanes: bw, max: maxv, sum: sum, exps: tmp, expStride: 0)
                    // scale = coef / Σ exp, so p · coef = exp(x − max) · scale
                    for j in 0..<bw {
                        let pos = n * L.d + d0 + j
                        scale[j] = idx[pos] < 0 ? 0 : T(coef[pos] / sum[j])
                    }
                    for k in 0..<L.c {
                        let o = out + k * L.d
                        NormOpsSupport.expShift(base + k * L.d, maxv, o, bw)
                        for j in 0..<bw { o[j] *= scale[j] }
                    }
                    for j in 0..<bw {
                        let pos = n * L.d + d0 + j
                        let k = Int(idx[pos])
                        if k >= 0 { out[k * L.d + j] -= T(coef[pos]) }
                    }
                }
            }
        }}
    }
}
