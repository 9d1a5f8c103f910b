import CKernels
import Foundation
import GraphIR

// CPU kernels of the Normalization family: the schemas (what each op means) are in Ops/Normalization.swift.
enum Normalization {
    /// Element type of LayerNorm's Mean / InvStdDev outputs.
    static func statType(_ t: DataType) -> DataType { t == .double ? .double : .float }

    /// `t` broadcast (numpy rules, right-aligned) to `target`, as Double values; nil if impossible.
    static func expand(_ t: Tensor, to target: [Int]) throws -> [Double]? {
        let v = try t.doubles()
        if t.shape == target { return v }
        if t.rank > target.count { 
            // leading size-1 dims are harmless
            guard t.shape.prefix(t.rank - target.count).allSatisfy({ $0 == 1 }) else { return nil }
            return try expand(t.reshaped(Array(t.shape.suffix(target.count))), to: target)
        }
        let shape = [Int](repeating: 1, count: target.count - t.rank) + t.shape
        for (a, b) in zip(shape, target) where a != b && a != 1 { return nil }
        let strides = Strides.broadcast(shape, to: target)
        let n = Tensor.elementCount(target)
        var out = [Double](repeating: 0, count: n)
        var idx = [Int](repeating: 0, count: target.count)
        for i in 0..<n {
            var off = 0
            for d in 0..<target.count { off += idx[d] * strides[d] }
            out[i] = v[off]
            var d = target.count - 1
            while d >= 0 { idx[d] += 1; if idx[d] < target[d] { break }; idx[d] = 0; d -= 1 }
        }
        return out
    }

    // MARK: LayerNormalization

    /// How LayerNormalization and its gradient see x: the normalised axis (from the attribute), the
    /// trailing shape normalised over, `rows` of `n` elements each, and Scale broadcast to one row.
    static func layerNormLayout(_ shape: [Int], axis axisAttr: Int, scale scaleT: Tensor, label: String) throws
        -> (axis: Int, normShape: [Int], rows: Int, n: Int, scale: [Double]) {
        let axis = try Axes.normalise(axisAttr, rank: shape.count, scalarAsVector: true, label)
        let normShape = Array(shape[axis...])
        let rows = NormOpsSupport.product(shape, 0..<axis), n = Tensor.elementCount(normShape)
        guard let scale = try expand(scaleT, to: normShape) else {
            throw SegFormerError.invalid("\(label): Scale of shape \(scaleT.shape) does not broadcast to \(normShape)")
        }
        return (axis, normShape, rows, n, scale)
    }

    static func layerNorm(_ inputs: [Tensor?], axis axisAttr: Int, epsilon: Double, outputs: Int, label: String,
                          context: ExecutionContext) throws -> [Tensor] {
        let x0 = try inputs.required(0), scaleT = try inputs.required(1, "Scale")
        let biasT = inputs.optional(2)
        guard x0.dataType.isFloatingPoint else { throw SegFormerError.unsupported("\(label): element type \(x0.dataType)") }
        let shape = x0.shape
        let (axis, normShape, outer, n, scale) = try layerNormLayout(shape, axis: axisAttr, scale: scaleT, label: label)
        var bias: [Double]? = nil
        if let biasT {
            guard let b = try expand(biasT, to: normShape) else {
                throw SegFormerError.invalid("\(label): B of shape \(biasT.shape) does not broadcast to \(normShape)")
            }
            bias = b
        }
        let statShape = Array(shape[..<axis]) + [Int](repeating: 1, count: shape.count - axis)
        let x = x0.dataType == .double ? x0 : NormOpsSupport.widenToFloat(x0)
        let st = statType(x0.dataType)
        let meanT = Tensor(uninitialized: st, shape: statShape), invT = Tensor(uninitialized: st, shape: statShape)
        let y: Tensor
        if x.dataType == .double {
            y = Tensor(uninitialized: .double, shape: shape)
            layerNormRows(x.pointer(Double.self), y.pointer(Double.self), meanT.pointer(Double.self), invT.pointer(Double.self),
                          outer, n, scale.map { $0 }, bias, epsilon, context)
        } else {
            y = Tensor(uninitialized: .float, shape: shape)
            layerNormRows(x.pointer(Float.self), y.pointer(Float.self), meanT.pointer(Float.self), invT.pointer(Float.self),
                          outer, n, scale.map { Float($0) }, bias.map { $0.map { Float($0) } }, epsilon, context)
        }
        let all = [NormOpsSupport.narrow(y, to: x0.dataType), meanT, invT]
        return Array(all.prefix(outputs))
    }

    static func layerNormRows<T: BinaryFloatingPoint>(_ x: UnsafeMutablePointer<T>, _ y: UnsafeMutablePointer<T>,
                                                      _ meanOut: UnsafeMutablePointer<T>, _ invOut: UnsafeMutablePointer<T>,
                                                      _ rows: Int, _ n: Int, _ scale: [T], _ bias: [T]?, _ eps: Double,
                                                      _ context: ExecutionContext) {
        if n == 0 {
            for r in 0..<rows { meanOut[r] = .nan; invOut[r] = .nan }
            return
        }
        scale.withUnsafeBufferPointer { w in
            let b = bias ?? [T](repeating: 0, count: n)
            b.withUnsafeBufferPointer { b in
                context.parallelFor(rows, minimumPerChunk: max(1, 8192 / n)) { start, end in
                    for r in start..<end {
                        let (mean, inv) = layerNormRow(x + r * n, y + r * n, n, w.baseAddress!, b.baseAddress!, eps)
                        meanOut[r] = T(mean); invOut[r] = T(inv)
                    }
                }
            }
        }
    }

    /// One row of LayerNormalization, y = (x − mean)·invStd·w + b (b all zeros when the node has no
    /// bias: adding them is what the kernel has always done), returning the row's statistics. The one
    /// implementation for the LayerNormalization kernel and the producers that normalise the rows they
    /// finish (`RowLayerNorm`), so both give the same bits. `y` may be `x` (each element is read
    /// before it is written, after the statistics).
    @inline(__always)
    static func layerNormRow<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int,
                                                     _ w: UnsafePointer<T>, _ b: UnsafePointer<T>, _ eps: Double)
        -> (mean: Double, inv: Double) {
        let (mean, inv) = layerNormRowStatistics(x, n, eps)
        let m = T(mean), iv = T(inv)
        for k in 0..<n { y[k] = (x[k] - m) * iv * w[k] + b[k] }
        return (mean, inv)
    }

    /// A LayerNormalization over the last axis that the producer of its input applies to each row it
    /// finishes, while the row is in cache (fuse-layer-norm-into-producer: FusedMatMul and the projected
    /// TokenDepthwiseConv carry it as `ProducerLayerNorm` says: Scale and an optional B of the row's
    /// length, epsilon as an attribute, the LayerNorm as their second output). Rows go through
    /// `layerNormRow` with the operands the LayerNormalization kernel would give it (float32 scale,
    /// zeros for a missing bias, epsilon widened from the attribute's float), so the same bits.
    struct RowLayerNorm {
        let scale: [Float]
        let bias: [Float]
        let epsilon: Double

        /// What a producer node says of the LayerNorm it may carry, read once when its kernel is made:
        /// where the Scale is, the epsilon, and whether the product is an output of its own.
        struct Carrier {
            let scaleIndex: Int
            let epsilon: Double
            let keepsProduct: Bool

            init(_ node: Node) throws {
                guard let index = ProducerLayerNorm.scaleIndex(of: node.opType) else {
                    throw SegFormerError.invalid("\(node.label): \(node.opType) carries no LayerNorm")
                }
                scaleIndex = index
                epsilon = Double(try node.float(ProducerLayerNorm.epsilonAttribute, default: 1e-5))
                keepsProduct = node.outputs.first?.isEmpty == false
            }

            /// The node's LayerNorm for rows of `n` values; nil when it carries none.
            func rows(_ inputs: [Tensor?], length n: Int, label: String) throws -> RowLayerNorm? {
                try RowLayerNorm(inputs, scaleIndex: scaleIndex, epsilon: epsilon, rowLength: n, label: label)
            }

            /// Where the normalised rows go: a new tensor beside the product, or the product itself
            /// (normalised in place) when nothing else reads it.
            func destination(for product: Tensor) -> Tensor {
                keepsProduct ? Tensor(uninitialized: .float, shape: product.shape) : product
            }
        }

        /// The LayerNorm of a node whose inputs `scaleIndex` and `scaleIndex + 1` are its Scale and B
        /// (nil when the node carries none), for rows of `n` values.
        init?(_ inputs: [Tensor?], scaleIndex: Int, epsilon: Double, rowLength n: Int, label: String) throws {
            guard let scaleT = inputs.optional(scaleIndex) else {
                if inputs.optional(scaleIndex + 1) != nil { throw SegFormerError.invalid("\(label): LayerNorm bias without a scale") }
                return nil
            }
            let biasT = inputs.optional(scaleIndex + 1)
            for (what, t) in [("scale", scaleT), ("bias", biasT)] {
                if let t, t.dataType != .float || t.shape != [n] {
                    throw SegFormerError.invalid("\(label): LayerNorm \(what) must be float32 [\(n)], got \(t.dataType) \(t.shape)")
                }
            }
            scale = Array(UnsafeBufferPointer(start: scaleT.pointer(Float.self), count: n))
            bias = biasT.map { Array(UnsafeBufferPointer(start: $0.pointer(Float.self), count: n)) } ?? [Float](repeating: 0, count: n)
            self.epsilon = epsilon
        }

        /// Normalises `rows` of `source` (rows of the scale's length, one after the other) into the same
        /// rows of `destination`, which may be `source`.
        func apply(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<Float>, rows: Range<Int>) {
            let n = scale.count
            guard n > 0 else { return }
            scale.withUnsafeBufferPointer { w in
                bias.withUnsafeBufferPointer { b in
                    for r in rows { _ = layerNormRow(source + r * n, destination + r * n, n, w.baseAddress!, b.baseAddress!, epsilon) }
                }
            }
        }
    }

    // MARK: BatchNormalization

    /// `unbiasedRunningVariance`: PyTorch's rule (running_var moves towards the batch variance with
    /// Bessel's correction, see BatchNormTraining.swift); ONNX's own rule uses the biased variance.
    /// `statisticsAcross`: in training, the batch statistics are those of every process's batch together
    /// (SyncBatchNorm; `batchStatistics`).
    static func batchNorm(_ inputs: [Tensor?], epsilon: Double, momentum: Double, training: Bool, outputs: Int,
                          unbiasedRunningVariance: Bool = false, statisticsAcross processes: (any CrossProcessSum)? = nil,
                          label: String, context: ExecutionContext) throws -> [Tensor] {
        let x0 = try inputs.required(0)
        guard x0.dataType.isFloatingPoint else { throw SegFormerError.unsupported("\(label): element type \(x0.dataType)") }
        guard x0.rank >= 2 else { throw SegFormerError.invalid("\(label): input of shape \(x0.shape) needs rank ≥ 2") }
        let shape = x0.shape
        let n = shape[0], c = shape[1], spatial = NormOpsSupport.product(shape, 2..<shape.count)
        var params: [[Double]] = []
        for (i, what) in ["scale", "B", "input_mean", "input_var"].enumerated() {
            let t = try inputs.required(i + 1, what)
            guard t.count == c else { throw SegFormerError.invalid("\(label): \(what) has \(t.count) elements for \(c) channels") }
            params.append(try NormOpsSupport.doubles(t, label))
        }
        let (scale, bias, runMean, runVar) = (params[0], params[1], params[2], params[3])
        var mean = runMean, variance = runVar, count = Double(n * spatial)
        let x = x0.dataType == .double ? x0 : NormOpsSupport.widenToFloat(x0)
        if training { (mean, variance, count) = try batchStatistics(x, label: label, across: processes, context: context) }
        let a = (0..<c).map { scale[$0] / (variance[$0] + epsilon).squareRoot() }
        func apply<T: BinaryFloatingPoint>(_: T.Type) -> Tensor {
            let y = Tensor(uninitialized: x.dataType, shape: shape)
            let s = x.pointer(T.self), d = y.pointer(T.self)
            context.parallelFor(n * c, minimumPerChunk: max(1, 16384 / max(spatial, 1))) { start, end in
                for p in start..<end {
                    let ch = p % c
                    let m = T(mean[ch]), k = T(a[ch]), b = T(bias[ch])
                    let src = s + p * spatial, dst = d + p * spatial
                    for i in 0..<spatial { dst[i] = (src[i] - m) * k + b }
                }
            }
            return y
        }
        let y = NormOpsSupport.narrow(x.dataType == .double ? apply(Double.self) : apply(Float.self), to: x0.dataType)
        if !training { return [y] }
        func stat(_ v: [Double]) -> Tensor {
            switch x0.dataType {
            case .double: return Tensor(v, shape: [c])
            case .float16: return Tensor(v.map { Float16(Float($0)) }, shape: [c])
            case .bfloat16: return Tensor(v.map { BFloat16(Float($0)) }, shape: [c])
            default: return Tensor(v.map { Float($0) }, shape: [c])
            }
        }
        let newMean = (0..<c).map { runMean[$0] * momentum + mean[$0] * (1 - momentum) }
        let correction = unbiasedRunningVariance && count > 1 ? count / (count - 1) : 1
        let newVar = (0..<c).map { runVar[$0] * momentum + variance[$0] * correction * (1 - momentum) }
        // Opsets 9–13 add saved_mean / saved_var: the batch statistics.
        return Array([y, stat(newMean), stat(newVar), stat(mean), stat(variance)].prefix(outputs))
    }

    // MARK: GroupNormalization

    static func groupNorm(_ inputs: [Tensor?], groups: Int, epsilon: Double, perChannel: Bool, label: String,
                          context: ExecutionContext) throws -> Tensor {
        let x0 = try inputs.required(0)
        guard x0.dataType.isFloatingPoint else { throw SegFormerError.unsupported("\(label): element type \(x0.dataType)") }
        guard x0.rank >= 2 else { throw SegFormerError.invalid("\(label): input of shape \(x0.shape) needs rank ≥ 2") }
        let shape = x0.shape
        let n = shape[0], c = shape[1], spatial = NormOpsSupport.product(shape, 2..<shape.count)
        guard c % groups == 0 else { throw SegFormerError.invalid("\(label): \(c) channels not divisible into \(groups) groups") }
        let scale = try NormOpsSupport.doubles(try inputs.required(1, "scale"), label)
        let bias = try NormOpsSupport.doubles(try inputs.required(2, "bias"), label)
        let want = perChannel ? c : groups
        guard scale.count == want, bias.count == want else {
            throw SegFormerError.invalid("\(label): scale/bias need \(want) elements, have \(scale.count)/\(bias.count)")
        }
        let x = x0.dataType == .double ? x0 : NormOpsSupport.widenToFloat(x0)
        let per = c / groups, len = per * spatial
        func run<T: BinaryFloatingPoint>(_: T.Type) -> Tensor {
            let y = Tensor(uninitialized: x.dataType, shape: shape)
            let s = x.pointer(T.self), d = y.pointer(T.self)
            context.parallelFor(n * groups, minimumPerChunk: 1) { start, end in
                for p in start..<end {
                    let src = s + p * len, dst = d + p * len
                    var sum = 0.0
                    for i in 0..<len { sum += Double(src[i]) }
                    let m = len > 0 ? sum / Double(len) : 0
                    var v = 0.0
                    for i in 0..<len { let e = Double(src[i]) - m; v += e * e }
                    let inv = 1 / (v / Double(max(len, 1)) + epsilon).squareRoot()
                    let g = p % groups
                    for ci in 0..<per {
                        let ch = g * per + ci
                        let k = T(inv * scale[perChannel ? ch : g]), b = T(bias[perChannel ? ch : g]), mm = T(m)
                        for i in 0..<spatial { dst[ci * spatial + i] = (src[ci * spatial + i] - mm) * k + b }
                    }
                }
            }
            return y
        }
        return NormOpsSupport.narrow(x.dataType == .double ? run(Double.self) : run(Float.self), to: x0.dataType)
    }

    // MARK: MeanVarianceNormalization

    /// Local response normalisation across channels (AlexNet): y = x / (bias + alpha/size · Σ x²)^beta,
    /// the sum over channels c − ⌊(size−1)/2⌋ … c + ⌈(size−1)/2⌉ that exist, at each position.
    static func lrn(_ x0: Tensor, size: Int, alpha: Double, beta: Double, bias: Double, label: String,
                    context: ExecutionContext) throws -> Tensor {
        guard x0.dataType.isFloatingPoint else { throw SegFormerError.unsupported("\(label): element type \(x0.dataType)") }
        guard x0.rank >= 2 else { throw SegFormerError.invalid("\(label): input of shape \(x0.shape) needs rank ≥ 2") }
        let shape = x0.shape
        let n = shape[0], c = shape[1], spatial = NormOpsSupport.product(shape, 2..<shape.count)
        let below = (size - 1) / 2, above = size - 1 - below
        let x = x0.dataType == .double ? x0 : NormOpsSupport.widenToFloat(x0)
        func run<T: BinaryFloatingPoint>(_: T.Type) -> Tensor {
            let y = Tensor(uninitialized: x.dataType, shape: shape)
            let s = x.pointer(T.self), d = y.pointer(T.self)
            context.parallelFor(n * c, minimumPerChunk: 1) { start, end in
                var sums = [Double](repeating: 0, count: spatial)
                for plane in start..<end {
                    let image = plane / c, ch = plane % c
                    for i in 0..<spatial { sums[i] = 0 }
                    for k in max(0, ch - below)...min(c - 1, ch + above) {
                        let src = s + (image * c + k) * spatial
                        for i in 0..<spatial { let v = Double(src[i]); sums[i] += v * v }
                    }
                    let src = s + plane * spatial, dst = d + plane * spatial
                    for i in 0..<spatial {
                        dst[i] = T(Double(src[i]) / Foundation.pow(bias + alpha / Double(size) * sums[i], beta))
                    }
                }
            }
            return y
        }
        return NormOpsSupport.narrow(x.dataType == .double ? run(Double.self) : run(Float.self), to: x0.dataType)
    }

    /// (X − E[X]) / (sqrt(E[X²] − E[X]²) + 1e-9) over `axes`, as the ONNX function body defines it.
    static func meanVarianceNorm(_ x0: Tensor, axes: [Int], label: String, context: ExecutionContext) throws -> Tensor {
        guard x0.dataType.isFloatingPoint else { throw SegFormerError.unsupported("\(label): element type \(x0.dataType)") }
        let rank = x0.rank
        let set = try Axes.set(axes, rank: rank, label)
        let kept = (0..<rank).filter { !set.contains($0) }, red = (0..<rank).filter { set.contains($0) }
        let perm = kept + red
        let x = x0.dataType == .double ? x0 : NormOpsSupport.widenToFloat(x0)
        let r = NormOpsSupport.product(x.shape, 0..<rank) / max(1, kept.reduce(1) { $0 * x.shape[$1] })
        let rows = kept.reduce(1) { $0 * x.shape[$1] }
        func run<T: BinaryFloatingPoint>(_: T.Type) throws -> Tensor {
            // rows of the reduced elements are contiguous after moving the reduced axes last
            // (a fresh copy either way: it is normalised in place)
            let t = try StridedCopy.transposed(x, perm: perm, context: context)
            let p = t.pointer(T.self)
            if r > 0 {
                context.parallelFor(rows, minimumPerChunk: max(1, 8192 / r)) { a, b in
                    for row in a..<b {
                        let s = p + row * r
                        var sum = 0.0, sq = 0.0
                        for i in 0..<r { let v = Double(s[i]); sum += v; sq += v * v }
                        let mean = sum / Double(r)
                        let std = max(0, sq / Double(r) - mean * mean).squareRoot() + 1e-9
                        for i in 0..<r { s[i] = T((Double(s[i]) - mean) / std) }
                    }
                }
            }
            if perm == Array(0..<rank) { return t }
            var inverse = [Int](repeating: 0, count: rank)
            for (i, a) in perm.enumerated() { inverse[a] = i }
            return try StridedCopy.transposed(t, perm: inverse, context: context)
        }
        return NormOpsSupport.narrow(x.dataType == .double ? try run(Double.self) : try run(Float.self), to: x0.dataType)
    }
}

extension Normalization {
    static func layerNormGrad(_ dy0: Tensor, _ x0: Tensor, _ scaleT: Tensor, axis axisAttr: Int, epsilon: Double,
                              label: String, context: ExecutionContext) throws -> [Tensor] {
        guard x0.dataType.isFloatingPoint else { throw SegFormerError.unsupported("\(label): element type \(x0.dataType)") }
        guard dy0.shape == x0.shape else {
            throw SegFormerError.invalid("\(label): gradient shape \(dy0.shape) differs from input shape \(x0.shape)")
        }
        let shape = x0.shape
        let (_, normShape, rows, n, scale) = try layerNormLayout(shape, axis: axisAttr, scale: scaleT, label: label)
        let wide = x0.dataType == .double ? .double : DataType.float
        let x = x0.dataType == .double ? x0 : NormOpsSupport.widenToFloat(x0)
        let dy = dy0.dataType == .double ? dy0 : NormOpsSupport.widenToFloat(dy0)
        let dx = Tensor(uninitialized: wide, shape: shape)
        var dScale = [Double](repeating: 0, count: n), dBias = [Double](repeating: 0, count: n)
        if rows > 0 && n > 0 {
            if wide == .double {
                layerNormGradRows(x.pointer(Double.self), dy.pointer(Double.self), dx.pointer(Double.self), rows, n, scale,
                                  epsilon, &dScale, &dBias, context)
            } else {
                layerNormGradRows(x.pointer(Float.self), dy.pointer(Float.self), dx.pointer(Float.self), rows, n,
                                  scale.map { Float($0) }, epsilon, &dScale, &dBias, context)
            }
        } else if n == 0 {
            // nothing to normalise over
        }
        func vec(_ v: [Double]) -> Tensor {
            let t = wide == .double ? Tensor(v, shape: normShape) : Tensor(v.map { Float($0) }, shape: normShape)
            return NormOpsSupport.narrow(t, to: x0.dataType)
        }
        return [NormOpsSupport.narrow(dx, to: x0.dataType), vec(dScale), vec(dBias)]
    }

    /// Rows per block of LayerNormGrad's parameter sums: each block is summed in the element type,
    /// then the blocks are added in double, in order — the same bits at any thread count.
    static let layerNormGradBlockRows = 64

    static func layerNormGradRows<T: BinaryFloatingPoint>(_ x: UnsafeMutablePointer<T>, _ dy: UnsafeMutablePointer<T>,
                                                          _ dx: UnsafeMutablePointer<T>, _ rows: Int, _ n: Int, _ scale: [T],
                                                          _ eps: Double, _ dScale: inout [Double], _ dBias: inout [Double],
                                                          _ context: ExecutionContext) {
        let blockRows = layerNormGradBlockRows, blocks = (rows + blockRows - 1) / blockRows
        // per block: Σ dY·x̂ then Σ dY, n each
        var partial = [Double](repeating: 0, count: blocks * 2 * n)
        scale.withUnsafeBufferPointer { w in
        partial.withUnsafeMutableBufferPointer { part in
            let partBase = part.baseAddress!
            context.parallelFor(blocks, minimumPerChunk: max(1, 16384 / (blockRows * n))) { b0, b1 in
                let xh = UnsafeMutablePointer<T>.allocate(capacity: n)
                let accS = UnsafeMutablePointer<T>.allocate(capacity: n)
                let accB = UnsafeMutablePointer<T>.allocate(capacity: n)
                defer { xh.deallocate(); accS.deallocate(); accB.deallocate() }
                for block in b0..<b1 {
                    accS.initialize(repeating: 0, count: n)
                    accB.initialize(repeating: 0, count: n)
                    for r in block * blockRows..<min(rows, (block + 1) * blockRows) {
                        let s = x + r * n
                        // statistics exactly as the forward
                        let (mean, inv) = layerNormRowStatistics(s, n, eps)
                        layerNormGradRow(s, dy + r * n, w.baseAddress!, dx + r * n, n, T(mean), T(inv), xh, accS, accB)
                    }
                    let dS = partBase + block * 2 * n, dB = dS + n
                    for k in 0..<n { dS[k] = Double(accS[k]); dB[k] = Double(accB[k]) }
                }
            }
        }}
        for block in 0..<blocks {
            for k in 0..<n {
                dScale[k] += partial[block * 2 * n + k]
                dBias[k] += partial[block * 2 * n + n + k]
            }
        }
    }

    /// One row of LayerNormGrad (`ck_layer_norm_grad_row` in float32, which says what it computes).
    @inline(__always)
    static func layerNormGradRow<T: BinaryFloatingPoint>(_ s: UnsafeMutablePointer<T>, _ g: UnsafeMutablePointer<T>,
                                                         _ w: UnsafePointer<T>, _ d: UnsafeMutablePointer<T>, _ n: Int,
                                                         _ m: T, _ iv: T, _ xh: UnsafeMutablePointer<T>,
                                                         _ accS: UnsafeMutablePointer<T>, _ accB: UnsafeMutablePointer<T>) {
        if T.self == Float.self {
            func f(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<Float> { UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self) }
            ck_layer_norm_grad_row(f(s), f(g), UnsafeRawPointer(w).assumingMemoryBound(to: Float.self), f(d), n,
                                   Float(m), Float(iv), f(xh), f(accS), f(accB))
            return
        }
        var sg0: T = 0, sg1: T = 0, sgx0: T = 0, sgx1: T = 0
        var i = 0
        while i + 2 <= n {
            let h0 = (s[i] - m) * iv, h1 = (s[i + 1] - m) * iv
            xh[i] = h0; xh[i + 1] = h1
            let g0 = g[i] * w[i], g1 = g[i + 1] * w[i + 1]
            sg0 += g0; sg1 += g1
            sgx0 += g0 * h0; sgx1 += g1 * h1
            i += 2
        }
        if i < n {
            let h = (s[i] - m) * iv
            xh[i] = h
            let gg = g[i] * w[i]
            sg0 += gg; sgx0 += gg * h
        }
        let mg = T(Double(sg0 + sg1) / Double(n)), mgx = T(Double(sgx0 + sgx1) / Double(n))
        for k in 0..<n {
            d[k] = iv * (g[k] * w[k] - mg - xh[k] * mgx)
            accS[k] += g[k] * xh[k]
            accB[k] += g[k]
        }
    }

    static func batchNormGrad(_ inputs: [Tensor?], epsilon: Double, label: String, context: ExecutionContext) throws -> [Tensor] {
        let dy0 = try inputs.required(0), x0 = try inputs.required(1)
        guard x0.dataType.isFloatingPoint else { throw SegFormerError.unsupported("\(label): element type \(x0.dataType)") }
        guard x0.rank >= 2, dy0.shape == x0.shape else {
            throw SegFormerError.invalid("\(label): gradient shape \(dy0.shape) and input shape \(x0.shape) must agree, rank ≥ 2")
        }
        let shape = x0.shape
        let n = shape[0], c = shape[1], spatial = NormOpsSupport.product(shape, 2..<shape.count)
        var params: [[Double]] = []
        for (i, what) in ["scale", "input_mean", "input_var"].enumerated() {
            let t = try inputs.required(i + 2, what)
            guard t.count == c else { throw SegFormerError.invalid("\(label): \(what) has \(t.count) elements for \(c) channels") }
            params.append(try NormOpsSupport.doubles(t, label))
        }
        let (scale, mean, variance) = (params[0], params[1], params[2])
        let inv = (0..<c).map { 1 / (variance[$0] + epsilon).squareRoot() }
        let wide: DataType = x0.dataType == .double ? .double : .float
        let x = x0.dataType == .double ? x0 : NormOpsSupport.widenToFloat(x0)
        let dy = dy0.dataType == .double ? dy0 : NormOpsSupport.widenToFloat(dy0)
        let dx = Tensor(uninitialized: wide, shape: shape)
        var dS = [Double](repeating: 0, count: c), dB = [Double](repeating: 0, count: c)
        func run<T: BinaryFloatingPoint>(_: T.Type) {
            let xs = x.pointer(T.self), gs = dy.pointer(T.self), ds = dx.pointer(T.self)
            // per (n, c) plane: dX = dY·scale·inv, in the same pass as the channel sums
            let sums = batchNormChannelSums(xs, gs, mean: mean, n: n, c: c, spatial: spatial, context: context) { p in
                let k = T(scale[p % c] * inv[p % c]), g = gs + p * spatial, d = ds + p * spatial
                for i in 0..<spatial { d[i] = g[i] * k }
            }
            dB = sums.dy
            dS = (0..<c).map { sums.dyCentred[$0] * inv[$0] }
        }
        if wide == .double { run(Double.self) } else { run(Float.self) }
        func vec(_ v: [Double]) -> Tensor {
            let t = wide == .double ? Tensor(v, shape: [c]) : Tensor(v.map { Float($0) }, shape: [c])
            return NormOpsSupport.narrow(t, to: inputs[2]!.dataType)
        }
        return [NormOpsSupport.narrow(dx, to: x0.dataType), vec(dS), vec(dB)]
    }
}

/// Mean and 1/√(variance + eps) of one row, in Double (two-pass): shared by LayerNormalization and
/// LayerNormGrad so the backward sees exactly the forward's statistics.
@inline(__always)
func layerNormRowStatistics<T: BinaryFloatingPoint>(_ s: UnsafePointer<T>, _ n: Int, _ eps: Double) -> (mean: Double, inv: Double) {
    let mean: Double
    if T.self == Float.self {
        mean = NormOpsSupport.rowSum(UnsafeRawPointer(s).assumingMemoryBound(to: Float.self), n) / Double(n)
    } else {
        var a0 = 0.0, a1 = 0.0
        var i = 0
        while i + 2 <= n { a0 += Double(s[i]); a1 += Double(s[i + 1]); i += 2 }
        if i < n { a0 += Double(s[i]) }
        mean = (a0 + a1) / Double(n)
    }
    var v0 = 0.0, v1 = 0.0, v2 = 0.0, v3 = 0.0
    var i = 0
    while i + 4 <= n {
        let e0 = Double(s[i]) - mean, e1 = Double(s[i + 1]) - mean
        let e2 = Double(s[i + 2]) - mean, e3 = Double(s[i + 3]) - mean
        v0 += e0 * e0; v1 += e1 * e1; v2 += e2 * e2; v3 += e3 * e3
        i += 4
    }
    while i < n { let e = Double(s[i]) - mean; v0 += e * e; i += 1 }
    let variance = (v0 + v1 + v2 + v3) / Double(n)
    return (mean, 1 / (variance + eps).squareRoot())
}
