import Foundation
import GraphIR

// CPU kernels of the Reduction family: the schemas (what each op means) are in Ops/Reduction.swift.
enum ReduceKind { case sum, mean, max, min, prod, l1, l2, logSum, logSumExp, sumSquare }

struct ReduceParams {
    var keepdims: Bool
    var noopWithEmptyAxes: Bool
    var axesFromInput: Bool
    var attributeAxes: [Int]?

    init(_ node: Node, _ opset: Int, axesInputSince: Int) throws {
        keepdims = try node.int("keepdims", default: 1) != 0
        axesFromInput = opset >= axesInputSince
        noopWithEmptyAxes = try axesFromInput && node.int("noop_with_empty_axes", default: 0) != 0
        attributeAxes = axesFromInput ? nil : try node.ints("axes")
    }
}

/// Element types the reductions handle, seen through Double for the arithmetic kinds.
protocol ReduceElement: Comparable, TensorElement {
    var reduceDouble: Double { get }
    init(reduceDouble: Double)
    static var reduceLowest: Self { get }
    static var reduceHighest: Self { get }
}

extension Float: ReduceElement {
    var reduceDouble: Double { Double(self) }
    init(reduceDouble d: Double) { self = Float(d) }
    static var reduceLowest: Float { -.infinity }
    static var reduceHighest: Float { .infinity }
}
extension Double: ReduceElement {
    var reduceDouble: Double { self }
    init(reduceDouble d: Double) { self = d }
    static var reduceLowest: Double { -.infinity }
    static var reduceHighest: Double { .infinity }
}
extension Float16: ReduceElement {
    var reduceDouble: Double { Double(self) }
    init(reduceDouble d: Double) { self = Float16(Float(d)) }
    static var reduceLowest: Float16 { -.infinity }
    static var reduceHighest: Float16 { .infinity }
}

/// Integers: the Double result is truncated toward zero and clamped (numpy's astype after mean).
protocol ReduceInteger: ReduceElement, FixedWidthInteger {}
extension ReduceInteger {
    var reduceDouble: Double { Double(self) }
    init(reduceDouble d: Double) {
        if d.isNaN { self = 0 } else if d >= Double(Self.max) { self = Self.max } else if d <= Double(Self.min) { self = Self.min } else { self = Self(d.rounded(.towardZero)) }
    }
    static var reduceLowest: Self { Self.min }
    static var reduceHighest: Self { Self.max }
}
extension Int8: ReduceInteger {}
extension Int16: ReduceInteger {}
extension Int32: ReduceInteger {}
extension Int64: ReduceInteger {}
extension UInt8: ReduceInteger {}
extension UInt16: ReduceInteger {}
extension UInt32: ReduceInteger {}
extension UInt64: ReduceInteger {}

/// How one element enters the running Double accumulator.
protocol ReduceFolder {
    static var initial: Double { get }
    static func fold(_ acc: Double, _ x: Double) -> Double
}
enum SumFolder: ReduceFolder {
    static var initial: Double { 0 }
    @inline(__always) static func fold(_ a: Double, _ x: Double) -> Double { a + x }
}
enum SquareFolder: ReduceFolder {
    static var initial: Double { 0 }
    @inline(__always) static func fold(_ a: Double, _ x: Double) -> Double { a + x * x }
}
enum AbsFolder: ReduceFolder {
    static var initial: Double { 0 }
    @inline(__always) static func fold(_ a: Double, _ x: Double) -> Double { a + Swift.abs(x) }
}
enum ProdFolder: ReduceFolder {
    static var initial: Double { 1 }
    @inline(__always) static func fold(_ a: Double, _ x: Double) -> Double { a * x }
}

enum Reducer {
    /// The reduced tensor. `axes` are normalised (non-negative, unique) and non-empty unless rank 0.
    static func reduce(_ x: Tensor, _ kind: ReduceKind, axes: Set<Int>, keepdims: Bool, label: String,
                       context: ExecutionContext) throws -> Tensor {
        let shape = x.shape
        var outShape: [Int] = []
        for (i, d) in shape.enumerated() {
            if axes.contains(i) { if keepdims { outShape.append(1) } } else { outShape.append(d) }
        }
        switch x.dataType {
        case .float: return try typed(x, Float.self, kind, axes, outShape, label, context)
        case .double: return try typed(x, Double.self, kind, axes, outShape, label, context)
        case .float16: return try typed(x, Float16.self, kind, axes, outShape, label, context)
        case .bfloat16:
            // computed in float32 (BFloat16 has no arithmetic of its own)
            let r = try typed(NormOpsSupport.widenToFloat(x), Float.self, kind, axes, outShape, label, context)
            return NormOpsSupport.narrow(r, to: .bfloat16)
        case .int8: return try typed(x, Int8.self, kind, axes, outShape, label, context)
        case .int16: return try typed(x, Int16.self, kind, axes, outShape, label, context)
        case .int32: return try typed(x, Int32.self, kind, axes, outShape, label, context)
        case .int64: return try typed(x, Int64.self, kind, axes, outShape, label, context)
        case .uint8: return try typed(x, UInt8.self, kind, axes, outShape, label, context)
        case .uint16: return try typed(x, UInt16.self, kind, axes, outShape, label, context)
        case .uint32: return try typed(x, UInt32.self, kind, axes, outShape, label, context)
        case .uint64: return try typed(x, UInt64.self, kind, axes, outShape, label, context)
        case .bool where kind == .max || kind == .min:
            // bool as bytes 0/1: max = any, min = all; empty max → false, empty min → true
            let bytes = Tensor(dataType: .uint8, shape: shape, storage: x.storage)
            let r = try typed(bytes, UInt8.self, kind, axes, outShape, label, context)
            let out = Tensor(dataType: .bool, shape: r.shape, storage: r.storage)
            if kind == .min {
                let p = out.pointer(UInt8.self)
                for i in 0..<out.count where p[i] > 1 { p[i] = 1 }
            }
            return out
        default:
            throw SegFormerError.unsupported("\(label): element type \(x.dataType)")
        }
    }

    /// Splits the input into [outer, r, inner] when the reduced axes are one contiguous block
    /// (ignoring size-1 dims); otherwise returns nil.
    static func blockLayout(_ shape: [Int], _ axes: Set<Int>) -> (outer: Int, r: Int, inner: Int)? {
        var first = -1, last = -1
        for (i, d) in shape.enumerated() where axes.contains(i) && d != 1 {
            if first < 0 { first = i }
            last = i
        }
        if first < 0 { return (Tensor.elementCount(shape), 1, 1) }   // reducing only size-1 dims
        for i in first...last where !axes.contains(i) && shape[i] != 1 { return nil }
        return (NormOpsSupport.product(shape, 0..<first), NormOpsSupport.product(shape, first..<(last + 1)),
                NormOpsSupport.product(shape, (last + 1)..<shape.count))
    }

    static func typed<T: ReduceElement>(_ x: Tensor, _: T.Type, _ kind: ReduceKind, _ axes: Set<Int>,
                                        _ outShape: [Int], _ label: String, _ context: ExecutionContext) throws -> Tensor {
        let out = Tensor(uninitialized: x.dataType, shape: outShape)
        if out.count == 0 { return out }
        let src: UnsafePointer<T>
        var keepAlive: Tensor? = nil
        let outer: Int, r: Int, inner: Int
        if let b = blockLayout(x.shape, axes) {
            (outer, r, inner) = b
            src = UnsafePointer(x.pointer(T.self))
        } else {
            // Transpose into [kept…, reduced…] so the reduced elements of each output are contiguous.
            let kept = (0..<x.rank).filter { !axes.contains($0) }
            let red = (0..<x.rank).filter { axes.contains($0) }
            let t = try StridedCopy.transposed(x, perm: kept + red, context: context)
            keepAlive = t
            outer = out.count
            r = x.count / max(outer, 1)
            inner = 1
            src = UnsafePointer(t.pointer(T.self))
        }
        let dst = out.pointer(T.self)
        if T.self == Float.self && inner == 1 && (kind == .sum || kind == .mean) {
            // Hot path (LayerNorm decomposed into last-axis ReduceMean): SIMD row sums in Double.
            let s = UnsafeRawPointer(src).assumingMemoryBound(to: Float.self)
            let d = UnsafeMutableRawPointer(dst).assumingMemoryBound(to: Float.self)
            let scale = kind == .mean ? 1.0 / Double(r) : 1.0
            context.parallelFor(outer, minimumPerChunk: max(1, 32768 / max(r, 1))) { a, b in
                for o in a..<b { d[o] = Float(NormOpsSupport.rowSum(s + o * r, r) * scale) }
            }
            withExtendedLifetime(keepAlive) {}
            return out
        }
        switch kind {
        case .sum: fold(src, dst, outer, r, inner, SumFolder.self, context) { $0 }
        case .mean: fold(src, dst, outer, r, inner, SumFolder.self, context) { $0 / Double(r) }
        case .sumSquare: fold(src, dst, outer, r, inner, SquareFolder.self, context) { $0 }
        case .l2: fold(src, dst, outer, r, inner, SquareFolder.self, context) { $0.squareRoot() }
        case .l1: fold(src, dst, outer, r, inner, AbsFolder.self, context) { $0 }
        case .logSum: fold(src, dst, outer, r, inner, SumFolder.self, context) { Foundation.log($0) }
        case .prod: fold(src, dst, outer, r, inner, ProdFolder.self, context) { $0 }
        case .max: extreme(src, dst, outer, r, inner, isMax: true, context)
        case .min: extreme(src, dst, outer, r, inner, isMax: false, context)
        case .logSumExp: logSumExp(src, dst, outer, r, inner, context)
        }
        withExtendedLifetime(keepAlive) {}
        return out
    }

    /// Work split for [outer, r, inner]: tasks are (outer index, block of ≤ 1024 inner positions).
    @inline(__always)
    static func forEachTask(_ outer: Int, _ r: Int, _ inner: Int, _ context: ExecutionContext,
                            _ body: (_ o: Int, _ j0: Int, _ j1: Int) -> Void) {
        let blk = 1024
        let nb = (inner + blk - 1) / blk
        context.parallelFor(outer * nb, minimumPerChunk: max(1, 32768 / max(1, r * min(inner, blk)))) { a, b in
            for t in a..<b {
                let o = t / nb, j0 = (t % nb) * blk
                body(o, j0, min(inner, j0 + blk))
            }
        }
    }

    static func fold<T: ReduceElement, F: ReduceFolder>(_ src: UnsafePointer<T>, _ dst: UnsafeMutablePointer<T>,
                                                        _ outer: Int, _ r: Int, _ inner: Int, _: F.Type,
                                                        _ context: ExecutionContext, _ finish: (Double) -> Double) {
        forEachTask(outer, r, inner, context) { o, j0, j1 in
            if inner == 1 {
                var acc = F.initial
                let s = src + o * r
                for k in 0..<r { acc = F.fold(acc, s[k].reduceDouble) }
                dst[o] = T(reduceDouble: finish(acc))
                return
            }
            let w = j1 - j0
            withUnsafeTemporaryAllocation(of: Double.self, capacity: w) { acc in
                for j in 0..<w { acc[j] = F.initial }
                for k in 0..<r {
                    let s = src + (o * r + k) * inner + j0
                    for j in 0..<w { acc[j] = F.fold(acc[j], s[j].reduceDouble) }
                }
                let d = dst + o * inner + j0
                for j in 0..<w { d[j] = T(reduceDouble: finish(acc[j])) }
            }
        }
    }

    static func extreme<T: ReduceElement>(_ src: UnsafePointer<T>, _ dst: UnsafeMutablePointer<T>,
                                          _ outer: Int, _ r: Int, _ inner: Int, isMax: Bool, _ context: ExecutionContext) {
        forEachTask(outer, r, inner, context) { o, j0, j1 in
            let d = dst + o * inner
            for j in j0..<j1 { d[j] = isMax ? T.reduceLowest : T.reduceHighest }
            for k in 0..<r {
                let s = src + (o * r + k) * inner
                if isMax {
                    for j in j0..<j1 where s[j] > d[j] || s[j] != s[j] { d[j] = s[j] }
                } else {
                    for j in j0..<j1 where s[j] < d[j] || s[j] != s[j] { d[j] = s[j] }
                }
            }
        }
    }

    static func logSumExp<T: ReduceElement>(_ src: UnsafePointer<T>, _ dst: UnsafeMutablePointer<T>,
                                            _ outer: Int, _ r: Int, _ inner: Int, _ context: ExecutionContext) {
        forEachTask(outer, r, inner, context) { o, j0, j1 in
            for j in j0..<j1 {
                var m = -Double.infinity
                for k in 0..<r { m = Swift.max(m, src[(o * r + k) * inner + j].reduceDouble) }
                let shift = m.isFinite ? m : 0
                var s = 0.0
                for k in 0..<r { s += Foundation.exp(src[(o * r + k) * inner + j].reduceDouble - shift) }
                dst[o * inner + j] = T(reduceDouble: Foundation.log(s) + shift)
            }
        }
    }

    // MARK: ArgMax / ArgMin

    static func arg(_ x: Tensor, isMax: Bool, axis axisAttr: Int, keepdims: Bool, selectLast: Bool,
                    label: String, context: ExecutionContext) throws -> Tensor {
        let shape = x.shape
        let axis = try Axes.normalise(axisAttr, rank: shape.count, scalarAsVector: true, label)
        guard !shape.isEmpty else { throw SegFormerError.invalid("\(label): input must have rank ≥ 1") }
        let n = shape[axis]
        var outShape = shape
        if keepdims { outShape[axis] = 1 } else { outShape.remove(at: axis) }
        let out = Tensor(uninitialized: .int64, shape: outShape)
        if out.count == 0 { return out }
        guard n > 0 else { throw SegFormerError.invalid("\(label): cannot take \(isMax ? "ArgMax" : "ArgMin") over empty axis \(axis) of \(shape)") }
        let outer = NormOpsSupport.product(shape, 0..<axis), inner = NormOpsSupport.product(shape, (axis + 1)..<shape.count)
        func run<T: ReduceElement>(_: T.Type) {
            argTyped(x.pointer(T.self), out.pointer(Int64.self), outer, n, inner, isMax, selectLast, context)
        }
        switch x.dataType {
        case .float: run(Float.self)
        case .double: run(Double.self)
        case .float16: run(Float16.self)
        case .bfloat16:
            let w = NormOpsSupport.widenToFloat(x)
            argTyped(w.pointer(Float.self), out.pointer(Int64.self), outer, n, inner, isMax, selectLast, context)
        case .int8: run(Int8.self)
        case .int16: run(Int16.self)
        case .int32: run(Int32.self)
        case .int64: run(Int64.self)
        case .uint8, .bool: run(UInt8.self)
        case .uint16: run(UInt16.self)
        case .uint32: run(UInt32.self)
        case .uint64: run(UInt64.self)
        default: throw SegFormerError.unsupported("\(label): element type \(x.dataType)")
        }
        return out
    }

    static func argTyped<T: ReduceElement>(_ src: UnsafeMutablePointer<T>, _ dst: UnsafeMutablePointer<Int64>,
                                           _ outer: Int, _ n: Int, _ inner: Int, _ isMax: Bool, _ last: Bool,
                                           _ context: ExecutionContext) {
        // Walk k outermost with running best values per inner position (contiguous, cache-friendly).
        forEachTask(outer, n, inner, context) { o, j0, j1 in
            let w = j1 - j0
            withUnsafeTemporaryAllocation(of: T.self, capacity: w) { best in
                let base = src + o * n * inner + j0
                let d = dst + o * inner + j0
                for j in 0..<w { best[j] = base[j]; d[j] = 0 }
                for k in 1..<max(n, 1) {
                    let row = base + k * inner
                    for j in 0..<w {
                        let v = row[j], b = best[j]
                        let better: Bool
                        if isMax { better = last ? v >= b : v > b } else { better = last ? v <= b : v < b }
                        if better { best[j] = v; d[j] = Int64(k) }
                    }
                }
            }
        }
    }
}

enum ReduceGradient {
    static let kinds: [String: ReduceKind] = [
        "sum": .sum, "mean": .mean, "sum_square": .sumSquare, "l2": .l2, "l1": .l1,
        "max": .max, "min": .min, "log_sum_exp": .logSumExp, "log_sum": .logSum,
    ]

    static func run(_ dy0: Tensor, shape: [Int], axes: Set<Int>, kind: ReduceKind, x: Tensor?, y: Tensor?,
                    label: String, context: ExecutionContext) throws -> Tensor {
        guard shape.allSatisfy({ $0 >= 0 }) else { throw SegFormerError.invalid("\(label): bad shape \(shape)") }
        let total = Tensor.elementCount(shape)
        // dY seen with keepdims (size 1 along the reduced axes), broadcast back over the input
        let kept = shape.indices.map { axes.contains($0) ? 1 : shape[$0] }
        let strides = Strides.broadcast(kept, to: shape)
        let s = Tensor.elementCount(kept)
        guard dy0.count == s else {
            throw SegFormerError.invalid("\(label): gradient of shape \(dy0.shape) does not fit input \(shape) reduced over \(axes.sorted())")
        }
        for (t, what) in [(x, "X"), (y, "Y")] {
            if let t, t.count != (what == "X" ? total : s) {
                throw SegFormerError.invalid("\(label): \(what) of shape \(t.shape) does not fit input \(shape)")
            }
        }
        let needX: Set<ReduceKind> = [.sumSquare, .l2, .l1, .max, .min, .logSumExp]
        let needY: Set<ReduceKind> = [.l2, .max, .min, .logSumExp, .logSum]
        if needX.contains(kind) && x == nil { throw SegFormerError.invalid("\(label): missing X") }
        if needY.contains(kind) && y == nil { throw SegFormerError.invalid("\(label): missing Y") }
        let wide: DataType = dy0.dataType == .double ? .double : .float
        guard dy0.dataType.isFloatingPoint else { throw SegFormerError.unsupported("\(label): element type \(dy0.dataType)") }
        func w(_ t: Tensor?) -> Tensor? {
            guard let t else { return nil }
            if wide == .double { return t.dataType == .double ? t : Tensor(try! t.doubles(), shape: t.shape) }
            return t.dataType == .float ? t : (t.dataType == .double ? Tensor(try! t.doubles().map { Float($0) }, shape: t.shape) : NormOpsSupport.widenToFloat(t))
        }
        let dy = w(dy0)!, xw = w(x), yw = w(y)
        let out = Tensor(uninitialized: wide, shape: shape)
        if total > 0 {
            if wide == .double {
                typed(Double.self, dy, xw, yw, out, shape, strides, kind, context)
            } else {
                typed(Float.self, dy, xw, yw, out, shape, strides, kind, context)
            }
        }
        return NormOpsSupport.narrow(out, to: dy0.dataType)
    }

    static func typed<T: BinaryFloatingPoint>(_: T.Type, _ dyT: Tensor, _ xT: Tensor?, _ yT: Tensor?, _ out: Tensor,
                                              _ shape: [Int], _ strides: [Int], _ kind: ReduceKind,
                                              _ context: ExecutionContext) {
        let rank = shape.count
        let total = out.count
        let last = rank == 0 ? 1 : shape[rank - 1]
        let lastStride = rank == 0 ? 0 : strides[rank - 1]
        let rows = last == 0 ? 0 : total / last
        let dy = dyT.pointer(T.self), dx = out.pointer(T.self)
        let x = xT?.pointer(T.self), y = yT?.pointer(T.self)
        let reduced = dyT.count == 0 ? 1 : total / dyT.count
        // offset in dY of the first element of row r
        @inline(__always) func rowBase(_ r: Int) -> Int {
            var rem = r, off = 0
            var d = rank - 2
            while d >= 0 { off += (rem % shape[d]) * strides[d]; rem /= shape[d]; d -= 1 }
            return off
        }
        // Max / Min: the number of elements equal to the extreme, per output.
        var ties = [T]()
        if kind == .max || kind == .min {
            ties = [T](repeating: 0, count: dyT.count)
            for r in 0..<rows {
                let b = rowBase(r)
                for j in 0..<last where x![r * last + j] == y![b + j * lastStride] { ties[b + j * lastStride] += 1 }
            }
        }
        let invR = T(1) / T(reduced)
        ties.withUnsafeBufferPointer { ties in
            context.parallelFor(rows, minimumPerChunk: max(1, 16384 / max(last, 1))) { a, b in
                for r in a..<b {
                    let base = rowBase(r)
                    let g = dy + base, d = dx + r * last
                    let xs = x.map { $0 + r * last }, ys = y.map { $0 + base }
                    let st = lastStride
                    switch kind {
                    case .sum: for j in 0..<last { d[j] = g[j * st] }
                    case .mean: for j in 0..<last { d[j] = g[j * st] * invR }
                    case .sumSquare: for j in 0..<last { d[j] = 2 * xs![j] * g[j * st] }
                    case .l2:
                        for j in 0..<last { let n = ys![j * st]; d[j] = n == 0 ? 0 : xs![j] / n * g[j * st] }
                    case .l1:
                        for j in 0..<last { let v = xs![j]; d[j] = v > 0 ? g[j * st] : (v < 0 ? -g[j * st] : 0) }
                    case .max, .min:
                        for j in 0..<last { d[j] = xs![j] == ys![j * st] ? g[j * st] / ties[base + j * st] : 0 }
                    case .logSumExp:
                        for j in 0..<last { d[j] = g[j * st] * T(Foundation.exp(Double(xs![j] - ys![j * st]))) }
                    case .logSum:
                        for j in 0..<last { d[j] = g[j * st] * T(Foundation.exp(-Double(ys![j * st]))) }
                    case .prod:
                        for j in 0..<last { d[j] = 0 }
                    }
                }
            }
        }
    }
}
