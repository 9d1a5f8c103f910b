import Foundation
import GraphIR

// CPU kernels of the Resize family: the schemas (what each op means) are in Ops/Resize.swift.
/// Taps of one axis: output position o reads `index[o*taps + k]` with `weight[o*taps + k]`.
struct AxisTable {
    var axis: Int
    var inLength: Int
    var outLength: Int
    var taps: Int
    var index: [Int32]
    var weight: [Double]
    /// tf_crop_and_resize positions outside the input: they take the extrapolation value.
    var extrapolated: [Bool]?
}

enum ResizePlan {
    struct Geometry {
        var outShape: [Int]
        var scales: [Double]
        var roi: [Double]?   // starts… then ends…, full rank
    }

    /// Output shape and per-axis scales from `scales` or `sizes` (with `axes` and the aspect policy).
    static func outputGeometry(_ shape: [Int], scales: Tensor?, sizes: Tensor?, _ a: ResizeAttributes,
                               label: String) throws -> Geometry {
        let rank = shape.count
        var axes = Array(0..<rank)
        if let given = a.axes {
            axes = try given.map { try Axes.normalise($0, rank: rank, scalarAsVector: true, label) }
            guard Set(axes).count == axes.count else { throw SegFormerError.invalid("\(label): repeated axes \(given)") }
        }
        var out = shape
        var sc = [Double](repeating: 1, count: rank)
        if let scales, scales.count > 0 {
            if let sizes, sizes.count > 0 { throw SegFormerError.invalid("\(label): only one of scales and sizes may be given") }
            let v = try NormOpsSupport.doubles(scales, label)
            guard v.count == axes.count else {
                throw SegFormerError.invalid("\(label): \(v.count) scales for \(axes.count) axes of input \(shape)")
            }
            for (i, ax) in axes.enumerated() {
                guard v[i] > 0, v[i].isFinite else { throw SegFormerError.invalid("\(label): scale \(v[i]) must be positive") }
                sc[ax] = v[i]
                let o = v[i] * Double(shape[ax])
                guard o < 1e12 else { throw SegFormerError.invalid("\(label): output size \(o) too large") }
                out[ax] = Int(o)
            }
        } else if let sizes, sizes.count > 0 {
            let v = try sizes.integers()
            guard v.count == axes.count else {
                throw SegFormerError.invalid("\(label): \(v.count) sizes for \(axes.count) axes of input \(shape)")
            }
            for (i, ax) in axes.enumerated() {
                guard v[i] >= 0 else { throw SegFormerError.invalid("\(label): negative size \(v[i])") }
                out[ax] = v[i]
                sc[ax] = Double(v[i]) / Double(shape[ax])
            }
            if a.policy != .stretch {
                let ratios = axes.map { sc[$0] }
                let s = a.policy == .notLarger ? ratios.min() ?? 1 : ratios.max() ?? 1
                for ax in axes {
                    sc[ax] = s
                    out[ax] = Int(s * Double(shape[ax]) + 0.5)
                }
            }
        } else {
            throw SegFormerError.invalid("\(label): needs non-empty scales or sizes")
        }
        var total = 1.0
        for d in out { total *= Double(d) }
        guard total <= Double(1 << 31) else { throw SegFormerError.invalid("\(label): output shape \(out) is too large") }
        for (i, d) in shape.enumerated() where d == 0 && out[i] > 0 {
            throw SegFormerError.invalid("\(label): cannot resize an empty axis \(i) of \(shape) to \(out[i])")
        }
        return Geometry(outShape: out, scales: sc, roi: nil)
    }

    /// Output shape and the tables of the axes that change (the reference skips identity axes).
    static func plan(_ shape: [Int], roi roiT: Tensor?, scales: Tensor?, sizes: Tensor?, _ a: ResizeAttributes,
                     label: String) throws -> (outShape: [Int], tables: [AxisTable]) {
        let rank = shape.count
        var g = try outputGeometry(shape, scales: scales, sizes: sizes, a, label: label)
        if a.coordinateMode == .tfCropAndResize {
            guard let roiT, roiT.count > 0 else { throw SegFormerError.invalid("\(label): tf_crop_and_resize needs roi") }
            let v = try NormOpsSupport.doubles(roiT, label)
            let axes = try (a.axes ?? Array(0..<rank)).map { try Axes.normalise($0, rank: rank, scalarAsVector: true, label) }
            guard v.count == 2 * axes.count else { throw SegFormerError.invalid("\(label): roi has \(v.count) values for \(axes.count) axes") }
            var full = [Double](repeating: 0, count: rank) + [Double](repeating: 1, count: rank)
            for (i, ax) in axes.enumerated() { full[ax] = v[i]; full[rank + ax] = v[axes.count + i] }
            g.roi = full
        }
        var tables: [AxisTable] = []
        for ax in 0..<rank {
            let roiIdentity = g.roi.map { abs($0[ax]) < 1e-9 && abs($0[rank + ax] - 1) < 1e-9 } ?? true
            if abs(g.scales[ax] - 1) < 1e-9 && g.outShape[ax] == shape[ax] && roiIdentity { continue }
            tables.append(table(axis: ax, inLength: shape[ax], outLength: g.outShape[ax], scale: g.scales[ax],
                                roi: g.roi.map { ($0[ax], $0[rank + ax]) }, a))
        }
        return (g.outShape, tables)
    }

    /// (Resize(x) + addend) + bias, then Relu when `relu` (ResizeAdd, float32, NCHW bias per channel):
    /// applied to each interpolated row while it is in cache, after the row is rounded as Resize rounds
    /// it, so the result is the one of the separate Resize, Add, Add and Relu nodes.
    static func run(_ x: Tensor, roi: Tensor?, scales: Tensor?, sizes: Tensor?, _ a: ResizeAttributes,
                    label: String, context: ExecutionContext, adding addend: Tensor, bias: Tensor?, relu: Bool) throws -> Tensor {
        guard x.dataType == .float, addend.dataType == .float, bias?.dataType ?? .float == .float else {
            throw SegFormerError.unsupported("\(label): ResizeAdd of \(x.dataType) and \(addend.dataType) (float32 only)")
        }
        let (outShape, tables) = try plan(x.shape, roi: roi, scales: scales, sizes: sizes, a, label: label)
        guard outShape == addend.shape else {
            throw SegFormerError.invalid("\(label): the resized shape \(outShape) differs from the addend's \(addend.shape)")
        }
        if let bias, outShape.count != 4 || bias.count != outShape[1] {
            throw SegFormerError.invalid("\(label): bias \(bias.shape) is not one value per channel of \(outShape)")
        }
        let epilogue = RowEpilogue(addend: addend.pointer(Float.self), bias: bias.map { UnsafePointer($0.pointer(Float.self)) },
                                   channels: outShape.count > 1 ? outShape[1] : 1,
                                   planeSize: outShape.suffix(2).reduce(1, *), relu: relu)
        if a.mode != .nearest, !tables.isEmpty, x.count > 0, x.rank >= 2, tables.allSatisfy({ $0.axis >= x.rank - 2 }) {
            return interpolateFloat(x, tables, extrapolation: Float(a.extrapolation), context, epilogue: epilogue)
        }
        // Other forms (identity — SegFormer's stage-1 map, already at 1/4 —, nearest, other axes): Resize,
        // then the epilogue, plane by plane over the threads.
        let y = try resize(x, to: outShape, tables, a, label: label, context: context)
        let out = Tensor(uninitialized: .float, shape: outShape)
        let src = y.pointer(Float.self), dst = out.pointer(Float.self)
        let plane = max(epilogue.planeSize, 1)
        let planes = (out.count + plane - 1) / plane
        withExtendedLifetime(y) {
            context.parallelFor(planes, minimumPerChunk: max(1, 65536 / plane)) { first, end in
                for p in first..<end {
                    let start = p * plane, count = min(plane, out.count - start)
                    (dst + start).update(from: src + start, count: count)
                    epilogue.apply(dst + start, offset: start, count: count)
                }
            }
        }
        return out
    }

    static func run(_ x0: Tensor, roi roiT: Tensor?, scales: Tensor?, sizes: Tensor?, _ a: ResizeAttributes,
                    label: String, context: ExecutionContext) throws -> Tensor {
        let (outShape, tables) = try plan(x0.shape, roi: roiT, scales: scales, sizes: sizes, a, label: label)
        return try resize(x0, to: outShape, tables, a, label: label, context: context)
    }

    /// Resize with its plan made: `tables` for the axes that change, the output shape `outShape`.
    private static func resize(_ x0: Tensor, to outShape: [Int], _ tables: [AxisTable], _ a: ResizeAttributes,
                               label: String, context: ExecutionContext) throws -> Tensor {
        let shape = x0.shape
        if tables.isEmpty || x0.count == 0 || Tensor.elementCount(outShape) == 0 {
            if tables.isEmpty { return x0 }
            return Tensor(uninitialized: x0.dataType, shape: outShape)
        }
        if a.mode == .nearest {
            guard let size = x0.dataType.byteSize, x0.dataType != .string else {
                throw SegFormerError.unsupported("\(label): element type \(x0.dataType)")
            }
            var cur = x0
            for t in tables { cur = gatherPass(cur, t, elementSize: size, extrapolation: a.extrapolation, context) }
            return cur
        }
        switch x0.dataType {
        case .float:
            return interpolateFloat(x0, tables, extrapolation: Float(a.extrapolation), context)
        case .float16, .bfloat16:
            return NormOpsSupport.narrow(interpolateFloat(NormOpsSupport.widenToFloat(x0), tables,
                                                          extrapolation: Float(a.extrapolation), context), to: x0.dataType)
        case .double:
            var cur = x0
            for t in tables { cur = interpolatePass(cur, Double.self, t, extrapolation: a.extrapolation, context) }
            return cur
        case .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64:
            // computed in Double, then rounded half-to-even and saturated (numpy round + clip)
            var cur = Tensor(try x0.doubles(), shape: shape)
            for t in tables { cur = interpolatePass(cur, Double.self, t, extrapolation: a.extrapolation, context) }
            return saturate(cur, to: x0.dataType)
        default:
            throw SegFormerError.unsupported("\(label): element type \(x0.dataType) for \(a.mode.rawValue) mode")
        }
    }

    // MARK: tables

    /// Source coordinate of output position `y` (the ONNX reference's transform, in Double).
    @inline(__always)
    static func sourceCoordinate(_ y: Double, _ mode: CoordinateMode, scale: Double, inLength: Int, outLength: Int,
                                 roi: (Double, Double)?) -> Double {
        let inW = Double(inLength)
        let outW = scale * inW      // fractional output width, as the reference uses it
        switch mode {
        case .alignCorners:
            return outW == 1 ? 0 : y * (inW - 1) / (outW - 1)
        case .asymmetric:
            return y / scale
        case .tfCropAndResize:
            let (s, e) = roi ?? (0, 1)
            let x = outW == 1 ? (e - s) * (inW - 1) / 2 : y * (e - s) * (inW - 1) / (outW - 1)
            return x + s * (inW - 1)
        case .pytorchHalfPixel:
            return outW == 1 ? -0.5 : (y + 0.5) / scale - 0.5
        case .halfPixel, .tfHalfPixelForNN:
            return (y + 0.5) / scale - 0.5
        case .halfPixelSymmetric:
            let adjustment = Double(outLength) / outW
            let offset = inW / 2 * (1 - adjustment)
            return offset + (y + 0.5) / scale - 0.5
        }
    }

    static func cubicWeight(_ xIn: Double, _ A: Double) -> Double {
        let x = abs(xIn)
        if x <= 1 { return ((A + 2) * x - (A + 3)) * x * x + 1 }
        if x < 2 { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A }
        return 0
    }

    static func table(axis: Int, inLength: Int, outLength: Int, scale: Double, roi: (Double, Double)?,
                      _ a: ResizeAttributes) -> AxisTable {
        let taps: Int
        // antialias widens the filter by 1/scale when downsampling
        let s = min(scale, 1)
        switch a.mode {
        case .nearest: taps = 1
        case .linear: taps = a.antialias ? 2 - 2 * (Int((-1 / s).rounded(.down)) + 1) : 2
        case .cubic: taps = a.antialias ? 2 - 2 * (Int((-2 / s).rounded(.down)) + 1) : 4
        }
        var index = [Int32](repeating: 0, count: outLength * taps)
        var weight = [Double](repeating: 0, count: outLength * taps)
        var extrapolated: [Bool]? = a.coordinateMode == .tfCropAndResize ? [Bool](repeating: false, count: outLength) : nil
        var w = [Double](repeating: 0, count: taps)
        let last = inLength - 1
        for o in 0..<outLength {
            let x = sourceCoordinate(Double(o), a.coordinateMode, scale: scale, inLength: inLength, outLength: outLength, roi: roi)
            if extrapolated != nil && (x < 0 || x > Double(last)) { extrapolated![o] = true }
            // the window's "left" pixel and the ratio in (0, 1] (an integer x counts as ratio 1)
            let fl = x.rounded(.down)
            let integral = fl == x
            let base = integral ? Int(fl) - 1 : Int(fl)
            let ratio = integral ? 1.0 : x - fl
            if a.mode == .nearest {
                var pick: Int
                if integral { pick = Int(x) } else {
                    switch a.nearestMode {
                    case .roundPreferFloor: pick = ratio <= 0.5 ? base : base + 1
                    case .roundPreferCeil: pick = ratio < 0.5 ? base : base + 1
                    case .floor: pick = base
                    case .ceil: pick = base + 1
                    case .simple: pick = scale < 1 ? base + 1 : base
                    }
                }
                index[o] = Int32(min(max(pick, 0), max(last, 0)))
                weight[o] = 1
                continue
            }
            let start = base - taps / 2 + 1
            switch a.mode {
            case .linear:
                if a.antialias {
                    for k in 0..<taps { w[k] = max(0, min(1, 1 - abs((Double(start - base + k) - ratio) * s))) }
                } else {
                    w[0] = 1 - ratio; w[1] = ratio
                }
            case .cubic:
                if a.antialias {
                    for k in 0..<taps { w[k] = cubicWeight(s * (Double(start - base + k) - ratio), a.cubicA) }
                } else {
                    let A = a.cubicA
                    // the reference's four coefficients for offsets -1, 0, 1, 2
                    w[0] = ((A * (ratio + 1) - 5 * A) * (ratio + 1) + 8 * A) * (ratio + 1) - 4 * A
                    w[1] = ((A + 2) * ratio - (A + 3)) * ratio * ratio + 1
                    w[2] = ((A + 2) * (1 - ratio) - (A + 3)) * (1 - ratio) * (1 - ratio) + 1
                    w[3] = ((A * ((1 - ratio) + 1) - 5 * A) * ((1 - ratio) + 1) + 8 * A) * ((1 - ratio) + 1) - 4 * A
                }
            case .nearest: break
            }
            if a.antialias {
                let total = w.reduce(0, +)
                if total != 0 { for k in 0..<taps { w[k] /= total } }
            }
            if a.excludeOutside {
                for k in 0..<taps where start + k < 0 || start + k > last { w[k] = 0 }
                var total = w.reduce(0, +)
                if total == 0 { total = 1 }
                for k in 0..<taps { w[k] /= total }
            }
            for k in 0..<taps {
                index[o * taps + k] = Int32(min(max(start + k, 0), last))
                weight[o * taps + k] = w[k]
            }
        }
        return AxisTable(axis: axis, inLength: inLength, outLength: outLength, taps: taps, index: index,
                         weight: weight, extrapolated: extrapolated)
    }

    // MARK: passes

    /// Nearest: copy whole inner blocks (any element type, as bytes).
    static func gatherPass(_ x: Tensor, _ t: AxisTable, elementSize: Int, extrapolation: Double,
                           _ context: ExecutionContext) -> Tensor {
        var outShape = x.shape
        outShape[t.axis] = t.outLength
        let out = Tensor(uninitialized: x.dataType, shape: outShape)
        let outer = NormOpsSupport.product(x.shape, 0..<t.axis)
        let inner = NormOpsSupport.product(x.shape, (t.axis + 1)..<x.rank)
        let block = inner * elementSize
        let src = UnsafeRawPointer(x.storage.pointer), dst = out.storage.pointer
        // extrapolated positions (tf_crop_and_resize): the value cast to the element type
        let fill: [UInt8] = t.extrapolated == nil ? [] : castScalar(extrapolation, to: x.dataType)
        fill.withUnsafeBytes { fill in
        t.index.withUnsafeBufferPointer { idx in
            context.parallelFor(outer * t.outLength, minimumPerChunk: max(1, 65536 / max(block, 1))) { a, b in
                for p in a..<b {
                    let o = p / t.outLength, y = p % t.outLength
                    let d = dst + p * block
                    if let e = t.extrapolated, e[y] {
                        for j in 0..<inner { (d + j * elementSize).copyMemory(from: fill.baseAddress!, byteCount: elementSize) }
                    } else {
                        d.copyMemory(from: src + (o * t.inLength + Int(idx[y])) * block, byteCount: block)
                    }
                }
            }
        }}
        return out
    }

    static func castScalar(_ v: Double, to type: DataType) -> [UInt8] {
        let t: Tensor
        switch type {
        case .float: t = Tensor([Float(v)], shape: [1])
        case .double: t = Tensor([v], shape: [1])
        case .float16: t = Tensor([Float16(Float(v))], shape: [1])
        case .bfloat16: t = Tensor([BFloat16(Float(v))], shape: [1])
        default:
            t = saturate(Tensor([v], shape: [1]), to: type)
        }
        let n = type.byteSize ?? 1
        return (0..<n).map { t.storage.pointer.load(fromByteOffset: $0, as: UInt8.self) }
    }

    /// One axis of linear / cubic interpolation on [outer, L, inner] → [outer, O, inner].
    /// Its setup repeats in `scatterPass` (its transpose); the hot loops differ (gather here, scatter-add
    /// there), so the two stay separate functions.
    static func interpolatePass<T: BinaryFloatingPoint>(_ x: Tensor, _: T.Type, _ t: AxisTable, extrapolation: Double,
                                                        _ context: ExecutionContext) -> Tensor {
        var outShape = x.shape
        outShape[t.axis] = t.outLength
        let out = Tensor(uninitialized: x.dataType, shape: outShape)
        let outer = NormOpsSupport.product(x.shape, 0..<t.axis)
        let inner = NormOpsSupport.product(x.shape, (t.axis + 1)..<x.rank)
        let src = x.pointer(T.self), dst = out.pointer(T.self)
        let wT = t.weight.map { T($0) }
        let fill = T(extrapolation)
        let taps = t.taps
        t.index.withUnsafeBufferPointer { idx in
            wT.withUnsafeBufferPointer { w in
                context.parallelFor(outer * t.outLength, minimumPerChunk: max(1, 16384 / max(inner * taps, 1))) { a, b in
                    for p in a..<b {
                        let o = p / t.outLength, y = p % t.outLength
                        let d = dst + p * inner
                        if let e = t.extrapolated, e[y] {
                            for j in 0..<inner { d[j] = fill }
                            continue
                        }
                        let s = src + o * t.inLength * inner
                        let w0 = w[y * taps], r0 = s + Int(idx[y * taps]) * inner
                        for j in 0..<inner { d[j] = w0 * r0[j] }
                        for k in 1..<taps {
                            let wk = w[y * taps + k], rk = s + Int(idx[y * taps + k]) * inner
                            for j in 0..<inner { d[j] += wk * rk[j] }
                        }
                    }
                }
            }
        }
        return out
    }

    /// float32 linear / cubic. When only the last two axes change, both passes run per plane
    /// (vertical into a scratch block, then horizontal), in parallel over planes.
    /// What ResizeAdd does to each finished output row (`count` elements at `offset` of an NCHW output
    /// within one plane of `planeSize`): add the addend's row, then the channel's bias, then Relu.
    struct RowEpilogue {
        let addend: UnsafePointer<Float>
        let bias: UnsafePointer<Float>?
        let channels: Int, planeSize: Int
        let relu: Bool

        @inline(__always)
        func apply(_ row: UnsafeMutablePointer<Float>, offset: Int, count: Int) {
            let a = addend + offset
            for j in 0..<count { row[j] += a[j] }
            if let bias {
                let b = bias[(offset / planeSize) % channels]
                for j in 0..<count { row[j] += b }
            }
            // Relu's select (NaN stays NaN) vectorises to a blend, where a conditional store would not.
            if relu { for j in 0..<count { row[j] = ReluFn().f(row[j]) } }
        }
    }

    static func interpolateFloat(_ x: Tensor, _ tables: [AxisTable], extrapolation: Float,
                                 _ context: ExecutionContext, epilogue: RowEpilogue? = nil) -> Tensor {
        let rank = x.rank
        guard rank >= 2, tables.allSatisfy({ $0.axis >= rank - 2 }) else {
            var cur = x
            for t in tables { cur = interpolatePass(cur, Float.self, t, extrapolation: Double(extrapolation), context) }
            return cur
        }
        let inH = x.shape[rank - 2], inW = x.shape[rank - 1]
        let th = tables.first { $0.axis == rank - 2 } ?? identityTable(axis: rank - 2, inH)
        let tw = tables.first { $0.axis == rank - 1 } ?? identityTable(axis: rank - 1, inW)
        let outH = th.outLength, outW = tw.outLength
        var outShape = x.shape
        outShape[rank - 2] = outH
        outShape[rank - 1] = outW
        let out = Tensor(uninitialized: .float, shape: outShape)
        let planes = NormOpsSupport.product(x.shape, 0..<(rank - 2))
        let src = x.pointer(Float.self), dst = out.pointer(Float.self)
        let whF = th.weight.map { Float($0) }, wwF = tw.weight.map { Float($0) }
        let nh = th.taps, nw = tw.taps
        // If W is a plain 2-tap table, its inner loop is specialised.
        th.index.withUnsafeBufferPointer { ih in
        tw.index.withUnsafeBufferPointer { iw in
        whF.withUnsafeBufferPointer { wh in
        wwF.withUnsafeBufferPointer { ww in
            let work = outH * (inW + outW)
            let perChunk = max(1, 65536 / max(work, 1))
            context.parallelFor(planes, minimumPerChunk: perChunk) { start, end in
                let tmp = UnsafeMutablePointer<Float>.allocate(capacity: max(inW, 1))
                defer { tmp.deallocate() }
                for p in start..<end {
                    let s = src + p * inH * inW, d = dst + p * outH * outW
                    for y in 0..<outH {
                        let drow = d + y * outW
                        if let e = th.extrapolated, e[y] {
                            for j in 0..<outW { drow[j] = extrapolation }
                        } else {
                            interpolateRow(s, inW: inW, ih: ih.baseAddress! + y * nh, wh: wh.baseAddress! + y * nh, nh: nh,
                                           iw: iw.baseAddress!, ww: ww.baseAddress!, nw: nw, outW: outW, tmp: tmp, out: drow)
                            if let e = tw.extrapolated {
                                for xo in 0..<outW where e[xo] { drow[xo] = extrapolation }
                            }
                        }
                        epilogue?.apply(drow, offset: (p * outH + y) * outW, count: outW)
                    }
                }
            }
        }}}}
        return out
    }

    /// One output row of a float32 plane: the `nh` vertical taps (`ih`, `wh`, this row's) mix input rows
    /// into `tmp`, then `nw` horizontal taps per output column (`iw`, `ww`) make `out`.
    @inline(__always)
    static func interpolateRow(_ plane: UnsafePointer<Float>, inW: Int, ih: UnsafePointer<Int32>, wh: UnsafePointer<Float>, nh: Int,
                               iw: UnsafePointer<Int32>, ww: UnsafePointer<Float>, nw: Int, outW: Int,
                               tmp: UnsafeMutablePointer<Float>, out drow: UnsafeMutablePointer<Float>) {
        // vertical: tmp = Σ_k wh · row(ih)
        let r0 = plane + Int(ih[0]) * inW, w0 = wh[0]
        if nh == 2 {
            let r1 = plane + Int(ih[1]) * inW, w1 = wh[1]
            for j in 0..<inW { tmp[j] = w0 * r0[j] + w1 * r1[j] }
        } else {
            for j in 0..<inW { tmp[j] = w0 * r0[j] }
            for k in 1..<max(nh, 1) {
                let rk = plane + Int(ih[k]) * inW, wk = wh[k]
                for j in 0..<inW { tmp[j] += wk * rk[j] }
            }
        }
        // horizontal: out = Σ_k ww · tmp(iw)
        if nw == 2 {
            for xo in 0..<outW {
                drow[xo] = ww[2 * xo] * tmp[Int(iw[2 * xo])] + ww[2 * xo + 1] * tmp[Int(iw[2 * xo + 1])]
            }
        } else {
            for xo in 0..<outW {
                var acc: Float = 0
                for k in 0..<nw { acc += ww[xo * nw + k] * tmp[Int(iw[xo * nw + k])] }
                drow[xo] = acc
            }
        }
    }

    /// Double → integer type: round half to even, clamp to the type's range.
    static func saturate(_ t: Tensor, to type: DataType) -> Tensor {
        let v = t.buffer(Double.self)
        func conv<I: FixedWidthInteger & TensorElement>(_: I.Type) -> Tensor {
            let out = Tensor(uninitialized: type, shape: t.shape)
            let d = out.pointer(I.self)
            for i in 0..<v.count {
                let r = v[i].rounded(.toNearestOrEven)
                d[i] = r.isNaN ? 0 : (r >= Double(I.max) ? I.max : (r <= Double(I.min) ? I.min : I(r)))
            }
            return out
        }
        switch type {
        case .int8: return conv(Int8.self)
        case .int16: return conv(Int16.self)
        case .int32: return conv(Int32.self)
        case .int64: return conv(Int64.self)
        case .uint8: return conv(UInt8.self)
        case .uint16: return conv(UInt16.self)
        case .uint32: return conv(UInt32.self)
        case .uint64: return conv(UInt64.self)
        case .bool:
            let out = Tensor(uninitialized: .bool, shape: t.shape)
            for i in 0..<v.count { out.pointer(Bool.self)[i] = v[i] != 0 }
            return out
        default: return t
        }
    }
}

extension ResizePlan {
    static func backward(_ dy0: Tensor, xShape: [Int], roi: Tensor?, scales: Tensor?, sizes: Tensor?, _ a: ResizeAttributes,
                         label: String, context: ExecutionContext) throws -> Tensor {
        guard xShape.allSatisfy({ $0 >= 0 }), Double(Tensor.elementCount(xShape)) <= Double(1 << 31) else {
            throw SegFormerError.invalid("\(label): bad input shape \(xShape)")
        }
        let (outShape, tables) = try plan(xShape, roi: roi, scales: scales, sizes: sizes, a, label: label)
        guard dy0.shape == outShape else {
            throw SegFormerError.invalid("\(label): gradient of shape \(dy0.shape), the forward output has \(outShape)")
        }
        guard dy0.dataType.isFloatingPoint else { throw SegFormerError.unsupported("\(label): element type \(dy0.dataType)") }
        if tables.isEmpty { return dy0 }
        switch dy0.dataType {
        case .double:
            var cur = dy0
            for t in tables.reversed() { cur = scatterPass(cur, Double.self, t, context) }
            return cur
        default:
            let dy = NormOpsSupport.widenToFloat(dy0)
            return NormOpsSupport.narrow(scatterFloat(dy, xShape, tables, context), to: dy0.dataType)
        }
    }

    /// Transpose of `interpolatePass`: [outer, O, inner] → [outer, L, inner].
    /// Shares its setup with `interpolatePass` but not its inner loop; see there.
    static func scatterPass<T: BinaryFloatingPoint>(_ g: Tensor, _: T.Type, _ t: AxisTable, _ context: ExecutionContext) -> Tensor {
        var inShape = g.shape
        inShape[t.axis] = t.inLength
        let out = Tensor(uninitialized: g.dataType, shape: inShape)
        let outer = NormOpsSupport.product(g.shape, 0..<t.axis)
        let inner = NormOpsSupport.product(g.shape, (t.axis + 1)..<g.rank)
        let src = g.pointer(T.self), dst = out.pointer(T.self)
        let wT = t.weight.map { T($0) }
        let taps = t.taps
        if out.count == 0 { return out }
        t.index.withUnsafeBufferPointer { idx in
            wT.withUnsafeBufferPointer { w in
                context.parallelFor(outer, minimumPerChunk: max(1, 16384 / max(1, t.outLength * inner * taps))) { a, b in
                    for o in a..<b {
                        let d = dst + o * t.inLength * inner
                        for j in 0..<(t.inLength * inner) { d[j] = 0 }
                        for y in 0..<t.outLength {
                            if let e = t.extrapolated, e[y] { continue }
                            let s = src + (o * t.outLength + y) * inner
                            for k in 0..<taps {
                                let wk = w[y * taps + k], r = d + Int(idx[y * taps + k]) * inner
                                for j in 0..<inner { r[j] += wk * s[j] }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// float32: when only the last two axes change, per plane: each dY row's horizontal transpose into a
    /// scratch row, then the vertical one into dX rows (the transpose of the forward's two passes). The
    /// horizontal pass is a gather (`ReadersTable`: each input column sums the columns that read it), so
    /// no update waits on the previous one to the same element, as a scatter's would; it adds in the
    /// scatter's order (ascending output column, then tap), so dX has the scatter's bits — and training
    /// steps stay where they were (the b0 reference's AdamW check sits on a Relu kink: see
    /// OptimizingPipeline.trainingPasses).
    static func scatterFloat(_ g: Tensor, _ xShape: [Int], _ tables: [AxisTable], _ context: ExecutionContext) -> Tensor {
        let rank = xShape.count
        guard rank >= 2, tables.allSatisfy({ $0.axis >= rank - 2 }) else {
            var cur = g
            for t in tables.reversed() { cur = scatterPass(cur, Float.self, t, context) }
            return cur
        }
        let inH = xShape[rank - 2], inW = xShape[rank - 1]
        let th = tables.first { $0.axis == rank - 2 } ?? identityTable(axis: rank - 2, inH)
        let tw = tables.first { $0.axis == rank - 1 } ?? identityTable(axis: rank - 1, inW)
        let outH = th.outLength, outW = tw.outLength
        let out = Tensor(uninitialized: .float, shape: xShape)
        let planes = NormOpsSupport.product(xShape, 0..<(rank - 2))
        if out.count == 0 { return out }
        let columns = ReadersTable(tw)
        let src = g.pointer(Float.self), dst = out.pointer(Float.self)
        let whF = th.weight.map { Float($0) }, nh = th.taps
        th.index.withUnsafeBufferPointer { ih in
        whF.withUnsafeBufferPointer { wh in
            let work = outH * (inW + outW)
            context.parallelFor(planes, minimumPerChunk: max(1, 65536 / max(work, 1))) { start, end in
                let tmp = UnsafeMutablePointer<Float>.allocate(capacity: max(inW, 1))
                defer { tmp.deallocate() }
                for p in start..<end {
                    let s = src + p * outH * outW, d = dst + p * inH * inW
                    for j in 0..<(inH * inW) { d[j] = 0 }
                    for y in 0..<outH {
                        if let e = th.extrapolated, e[y] { continue }
                        let grow = s + y * outW
                        for j in 0..<inW {
                            var acc: Float = 0
                            for e in columns.start[j]..<columns.start[j + 1] { acc += columns.weight[e] * grow[columns.output[e]] }
                            tmp[j] = acc
                        }
                        for k in 0..<nh {
                            let r = d + Int(ih[y * nh + k]) * inW, wk = wh[y * nh + k]
                            for j in 0..<inW { r[j] += wk * tmp[j] }
                        }
                    }
                }
            }
        }}
        return out
    }
}

/// An axis table turned around, the gather form of its transpose: for each input position, the output
/// positions that read it (ascending, once per tap, taps in order) and the tap weights. Extrapolated
/// outputs (tf_crop_and_resize outside the input) keep their reads with weight 0: they send nothing back.
struct ReadersTable {
    /// Input position i is read by outputs `output[start[i]..<start[i + 1]]`.
    private(set) var start: [Int]
    private(set) var output: [Int]
    private(set) var weight: [Float]

    init(_ t: AxisTable) {
        var start = [Int](repeating: 0, count: t.inLength + 1)
        for i in t.index { start[Int(i) + 1] += 1 }
        for i in 0..<t.inLength { start[i + 1] += start[i] }
        var next = Array(start.dropLast())
        output = [Int](repeating: 0, count: t.index.count)
        weight = [Float](repeating: 0, count: t.index.count)
        for o in 0..<t.outLength {
            let extrapolated = t.extrapolated?[o] ?? false
            for k in 0..<t.taps {
                let i = Int(t.index[o * t.taps + k])
                output[next[i]] = o
                weight[next[i]] = extrapolated ? 0 : Float(t.weight[o * t.taps + k])
                next[i] += 1
            }
        }
        self.start = start
    }
}
