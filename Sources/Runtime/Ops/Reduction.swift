import Foundation
import GraphIR

// Reduce* and ArgMax / ArgMin.
// Axes are an attribute before opset 13 (ReduceSum) / 18 (the others) and an optional input after;
// with the input form, `noop_with_empty_axes` = 1 turns an empty axes list into identity.
// Reductions are computed on a [outer, r, inner] view of the input (reduced axes contiguous after
// dropping size-1 dims); any other axes set is first transposed into [kept…, reduced…].
// Floating sums accumulate in Double.

extension OpRegistry {
    static let reductionOps: [OpSchema] = [
        reduceSchema("ReduceSum", .sum, axesInputSince: 13),
        reduceSchema("ReduceMean", .mean, axesInputSince: 18),
        reduceSchema("ReduceMax", .max, axesInputSince: 18),
        reduceSchema("ReduceMin", .min, axesInputSince: 18),
        reduceSchema("ReduceProd", .prod, axesInputSince: 18),
        reduceSchema("ReduceL1", .l1, axesInputSince: 18),
        reduceSchema("ReduceL2", .l2, axesInputSince: 18),
        reduceSchema("ReduceLogSum", .logSum, axesInputSince: 18),
        reduceSchema("ReduceLogSumExp", .logSumExp, axesInputSince: 18),
        reduceSchema("ReduceSumSquare", .sumSquare, axesInputSince: 18),
        argSchema("ArgMax", isMax: true),
        argSchema("ArgMin", isMax: false),
    ]

    private static func reduceSchema(_ op: String, _ kind: ReduceKind, axesInputSince: Int) -> OpSchema {
        OpSchema(op, opsets: 1...28, inputs: 1...2, shapeInputs: [1],
                 inferTypes: { ctx in
                     guard let t = ctx.type(0) else { return [nil] }
                     let p = try ReduceParams(ctx.node, ctx.opset, axesInputSince: axesInputSince)
                     guard let shape = t.shape else { return [TensorType(t.dataType, nil)] }
                     var axes: [Int]? = p.attributeAxes
                     if p.axesFromInput {
                         if ctx.node.input(1) == nil { axes = [] }
                         else if let c = ctx.constant(1) { axes = try c.integers() }
                     }
                     guard let axes else {
                         // unknown axes: rank known only when keepdims
                         return [TensorType(t.dataType, nil)]
                     }
                     if axes.isEmpty && p.noopWithEmptyAxes { return [t] }
                     let set = try ReduceParams.normalise(axes, rank: shape.count, ctx.node.label)
                     var out: [Dim] = []
                     for (i, d) in shape.enumerated() {
                         if set.contains(i) { if p.keepdims { out.append(.known(1)) } } else { out.append(d) }
                     }
                     return [TensorType(t.dataType, out)]
                 },
                 makeKernel: { node, opset in
                     let p = try ReduceParams(node, opset, axesInputSince: axesInputSince)
                     if !p.axesFromInput && node.input(1) != nil {
                         throw SegFormerError.invalid("\(node.label): axes is an attribute at opset \(opset), not an input")
                     }
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         let x = try inputs.required(0)
                         var axes: [Int]
                         if p.axesFromInput {
                             axes = try inputs.optional(1)?.integers() ?? []
                         } else {
                             axes = p.attributeAxes ?? []
                         }
                         if axes.isEmpty && p.noopWithEmptyAxes { return [x] }
                         if axes.isEmpty { axes = Array(0..<x.rank) }
                         let set = try ReduceParams.normalise(axes, rank: x.rank, label)
                         return [try Reducer.reduce(x, kind, axes: set, keepdims: p.keepdims, label: label, context: context)]
                     }
                 })
    }

    private static func argSchema(_ op: String, isMax: Bool) -> OpSchema {
        OpSchema(op, opsets: 1...28, inputs: 1...1,
                 inferTypes: { ctx in
                     guard let t = ctx.type(0), let shape = t.shape else { return [TensorType(.int64, nil)] }
                     let axis = try NormOpsSupport.axis(try ctx.node.int("axis", default: 0), rank: shape.count, ctx.node.label)
                     let keep = try ctx.node.int("keepdims", default: 1) != 0
                     var out = shape
                     if keep { out[axis] = .known(1) } else { out.remove(at: axis) }
                     return [TensorType(.int64, out)]
                 },
                 makeKernel: { node, opset in
                     let axisAttr = try node.int("axis", default: 0)
                     let keep = try node.int("keepdims", default: 1) != 0
                     let last = try node.int("select_last_index", default: 0) != 0
                     let label = node.label
                     return ClosureKernel { inputs, context in
                         let x = try inputs.required(0)
                         return [try Reducer.arg(x, isMax: isMax, axis: axisAttr, keepdims: keep, selectLast: last,
                                                 label: label, context: context)]
                     }
                 })
    }
}

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

    static func normalise(_ axes: [Int], rank: Int, _ label: String) throws -> Set<Int> {
        var set = Set<Int>()
        for a in axes {
            guard a >= -rank && a < rank else {
                throw SegFormerError.invalid("\(label): axis \(a) out of range for rank \(rank)")
            }
            set.insert(a < 0 ? a + rank : a)
        }
        return set
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
            let t = transposed(x, T.self, perm: kept + red)
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

    /// A transposed copy (out dim i = in dim perm[i]).
    static func transposed<T>(_ x: Tensor, _: T.Type, perm: [Int]) -> Tensor {
        let shape = x.shape
        let rank = shape.count
        var inStrides = [Int](repeating: 1, count: rank)
        var s = 1
        for i in stride(from: rank - 1, through: 0, by: -1) { inStrides[i] = s; s *= shape[i] }
        let outShape = perm.map { shape[$0] }
        let strides = perm.map { inStrides[$0] }
        let out = Tensor(uninitialized: x.dataType, shape: outShape)
        let n = x.count
        if n == 0 { return out }
        let src = x.pointer(T.self), dst = out.pointer(T.self)
        var idx = [Int](repeating: 0, count: rank)
        var off = 0
        let lastLen = outShape[rank - 1], lastStride = strides[rank - 1]
        var i = 0
        while i < n {
            for k in 0..<lastLen { dst[i + k] = src[off + k * lastStride] }
            i += lastLen
            var d = rank - 2
            while d >= 0 {
                idx[d] += 1
                off += strides[d]
                if idx[d] < outShape[d] { break }
                off -= strides[d] * outShape[d]
                idx[d] = 0
                d -= 1
            }
        }
        return out
    }

    // MARK: ArgMax / ArgMin

    static func arg(_ x: Tensor, isMax: Bool, axis axisAttr: Int, keepdims: Bool, selectLast: Bool,
                    label: String, context: ExecutionContext) throws -> Tensor {
        let shape = x.shape
        let axis = try NormOpsSupport.axis(axisAttr, rank: shape.count, label)
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
