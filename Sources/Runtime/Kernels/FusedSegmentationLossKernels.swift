import Foundation
import GraphIR

// CPU kernels of FusedSegmentationLoss: the schemas are in Ops/FusedSegmentationLoss.swift.
enum UpsampledCrossEntropy {
    struct Params {
        var resize: ResizeAttributes
        var entropy: CrossEntropy.Params
        init(_ node: Node) throws {
            resize = try ResizeAttributes(node, 13)
            guard resize.mode == .linear, resize.coordinateMode != .tfCropAndResize, !resize.excludeOutside else {
                throw SegFormerError.unsupported("\(node.label): only linear upsampling without crop or exclude_outside")
            }
            entropy = try CrossEntropy.Params(node)
            guard entropy.reduction == .mean else {
                throw SegFormerError.unsupported("\(node.label): reduction '\(entropy.reduction.rawValue)' (only mean)")
            }
        }
    }

    /// Low-resolution rows per task: a band recomputes about one label row per `upsampling factor`
    /// of its own, so a 16-row band costs ~6 % extra at 4× upsampling.
    static let bandRows = 16

    static func run(_ logits: Tensor, _ labels: Tensor, _ p: Params, gradient: Bool, label: String,
                    context: ExecutionContext) throws -> [Tensor] {
        guard logits.dataType == .float else { throw SegFormerError.unsupported("\(label): logits of type \(logits.dataType) (float32)") }
        guard logits.rank == 4 else { throw SegFormerError.invalid("\(label): logits of shape \(logits.shape) (want N×C×h×w)") }
        let (n, c, h, w) = (logits.shape[0], logits.shape[1], logits.shape[2], logits.shape[3])
        guard labels.rank == 3, labels.shape[0] == n else {
            throw SegFormerError.invalid("\(label): labels of shape \(labels.shape) for logits \(logits.shape) (want \(n)×H×W)")
        }
        let (outH, outW) = (labels.shape[1], labels.shape[2])
        guard (h > 0 || outH == 0) && (w > 0 || outW == 0) else {
            throw SegFormerError.invalid("\(label): cannot upsample logits \(logits.shape) to \(outH)×\(outW)")
        }
        guard c > 0 || labels.count == 0 else { throw SegFormerError.invalid("\(label): logits have no classes") }
        // Labels validated (0..<C unless ignored) as SoftmaxCrossEntropyLoss does; `kept` counts the rest.
        let (idx, weight) = try CrossEntropy.targets(labels, nil, p.entropy, classes: c, label: label)
        var kept = 0.0
        for v in weight { kept += v }
        let th = axisTable(axis: 2, h, outH, p.resize), tw = axisTable(axis: 3, w, outW, p.resize)
        // (bands zero their own gradient rows; with no label pixels there are no bands to run)
        let dLogits: Tensor? = !gradient ? nil : labels.count > 0 ? Tensor(uninitialized: .float, shape: logits.shape)
            : Tensor(zeros: .float, shape: logits.shape)
        let bands = (h + bandRows - 1) / bandRows
        var partial = [Double](repeating: 0, count: n * bands)
        if labels.count > 0 && (kept > 0 || dLogits != nil) {
            let geometry = Geometry(c: c, h: h, w: w, outH: outH, outW: outW, th: th, tw: tw)
            let coefficient = kept > 0 ? 1 / kept : 0   // mean over kept pixels; 0 when none is kept
            partial.withUnsafeMutableBufferPointer { partial in
            idx.withUnsafeBufferPointer { idx in
                context.parallelFor(n * bands) { a, b in
                    let scratch = Scratch(geometry)
                    defer { scratch.deallocate() }
                    for task in a..<b {
                        let image = task / bands, band = task % bands
                        let rows = (band * bandRows)..<min(h, (band + 1) * bandRows)
                        partial[task] = bandLoss(image: image, rows: rows, geometry, logits.pointer(Float.self),
                                                 idx.baseAddress! + image * outH * outW, coefficient: coefficient,
                                                 dLogits: dLogits?.pointer(Float.self), scratch)
                    }
                }
            }}
        }
        var total = 0.0
        for v in partial { total += v }
        let loss = Tensor([Float(kept > 0 ? total / kept : 0)], shape: [])
        return dLogits.map { [loss, $0] } ?? [loss]
    }

    struct Geometry {
        let c: Int, h: Int, w: Int, outH: Int, outW: Int
        let th: AxisTable, tw: AxisTable
    }

    /// Resize's tap table for one axis (an identity table where the size does not change, as Resize
    /// skips such axes).
    static func axisTable(axis: Int, _ inLength: Int, _ outLength: Int, _ a: ResizeAttributes) -> AxisTable {
        if inLength == outLength {
            return AxisTable(axis: axis, inLength: inLength, outLength: outLength, taps: 1, index: (0..<inLength).map { Int32($0) },
                             weight: [Double](repeating: 1, count: inLength), extrapolated: nil)
        }
        return ResizePlan.table(axis: axis, inLength: inLength, outLength: outLength,
                                scale: Double(outLength) / Double(inLength), roi: nil, a)
    }

    /// Per-task buffers: one label row's C×W tile and its per-pixel statistics, and the tap tables
    /// as plain arrays for the hot loops.
    struct Scratch {
        let tile: UnsafeMutablePointer<Float>       // C × outW: upsampled logits, then exps, then gradient
        let labelLogit: UnsafeMutablePointer<Float> // outW
        let maxv: UnsafeMutablePointer<Float>       // outW
        let sum: UnsafeMutablePointer<Double>       // outW
        let scale: UnsafeMutablePointer<Float>      // outW
        let row: UnsafeMutablePointer<Float>        // w: one vertically mixed (or scattered) low-res row
        let ih: UnsafeMutablePointer<Int32>, wh: UnsafeMutablePointer<Float>   // outH × vertical taps
        let iw: UnsafeMutablePointer<Int32>, ww: UnsafeMutablePointer<Float>   // outW × horizontal taps

        init(_ g: Geometry) {
            tile = .allocate(capacity: max(1, g.c * g.outW))
            labelLogit = .allocate(capacity: max(1, g.outW))
            maxv = .allocate(capacity: max(1, g.outW))
            sum = .allocate(capacity: max(1, g.outW))
            scale = .allocate(capacity: max(1, g.outW))
            row = .allocate(capacity: max(1, g.w))
            func copy<T>(_ a: [T]) -> UnsafeMutablePointer<T> {
                let p = UnsafeMutablePointer<T>.allocate(capacity: max(1, a.count))
                p.initialize(from: a, count: a.count)
                return p
            }
            ih = copy(g.th.index); wh = copy(g.th.weight.map { Float($0) })
            iw = copy(g.tw.index); ww = copy(g.tw.weight.map { Float($0) })
        }

        func deallocate() {
            for p in [tile, labelLogit, maxv, scale, row, wh, ww] { p.deallocate() }
            sum.deallocate(); ih.deallocate(); iw.deallocate()
        }
    }

    /// One band of low-resolution rows of one image: zeroes and fills its gradient rows from every label
    /// row whose taps reach it (in label-row order), and returns the summed loss of the label rows whose
    /// first tap lies in the band (each label row is counted by exactly one band).
    static func bandLoss(image: Int, rows: Range<Int>, _ g: Geometry, _ logits: UnsafePointer<Float>,
                         _ labelIndex: UnsafePointer<Int32>, coefficient: Double, dLogits: UnsafeMutablePointer<Float>?,
                         _ s: Scratch) -> Double {
        let (c, h, w, outW) = (g.c, g.h, g.w, g.outW)
        let nh = g.th.taps, nw = g.tw.taps
        let plane = h * w
        let source = logits + image * c * plane
        let target = dLogits.map { $0 + image * c * plane }
        if let target {
            for k in 0..<c { (target + k * plane + rows.lowerBound * w).update(repeating: 0, count: rows.count * w) }
        }
        let (iw, ww, row) = (s.iw, s.ww, s.row)
        var loss = 0.0
        for y in 0..<g.outH {
            let taps = s.ih + y * nh
            let counts = rows.contains(Int(taps[0]))
            var reaches = counts
            for j in 1..<max(nh, 1) where rows.contains(Int(taps[j])) { reaches = true }
            guard counts || (target != nil && reaches) else { continue }
            let labelsRow = labelIndex + y * outW
            upsampleRow(y, g, source, s)
            for x in 0..<outW {
                let k = Int(labelsRow[x])
                s.labelLogit[x] = k >= 0 ? s.tile[k * outW + x] : 0
            }
            // max and Σ exp over classes per pixel; the tile becomes exp(x − max)
            NormOpsSupport.softmaxStatistics(s.tile, rows: c, rowStride: outW, lanes: outW, max: s.maxv, sum: s.sum,
                                             exps: s.tile, expStride: outW)
            if counts {
                for x in 0..<outW where labelsRow[x] >= 0 {
                    loss -= Double(s.labelLogit[x]) - Double(s.maxv[x]) - Foundation.log(s.sum[x])
                }
            }
            guard let target else { continue }
            // d loss / d upsampled = coefficient · (softmax − one-hot), 0 at ignored pixels
            for x in 0..<outW { s.scale[x] = labelsRow[x] < 0 ? 0 : Float(coefficient / s.sum[x]) }
            for k in 0..<c {
                let t = s.tile + k * outW
                for x in 0..<outW { t[x] *= s.scale[x] }
            }
            for x in 0..<outW where labelsRow[x] >= 0 { s.tile[Int(labelsRow[x]) * outW + x] -= Float(coefficient) }
            // transpose of the interpolation: horizontal scatter into a low-res row, then vertical
            // scatter into the band's own gradient rows
            for k in 0..<c {
                let t = s.tile + k * outW
                row.update(repeating: 0, count: w)
                ResizePlan.scatterRow(t, outW: outW, iw: iw, ww: ww, nw: nw, into: row)
                for j in 0..<nh where rows.contains(Int(taps[j])) {
                    let r = target + k * plane + Int(taps[j]) * w, wk = s.wh[y * nh + j]
                    for i in 0..<w { r[i] += wk * row[i] }
                }
            }
        }
        return loss
    }

    /// Label row `y` of all classes into `s.tile` (C × outW), exactly as Resize computes it.
    static func upsampleRow(_ y: Int, _ g: Geometry, _ source: UnsafePointer<Float>, _ s: Scratch) {
        let nh = g.th.taps, plane = g.h * g.w
        for k in 0..<g.c {
            ResizePlan.interpolateRow(source + k * plane, inW: g.w, ih: s.ih + y * nh, wh: s.wh + y * nh, nh: nh,
                                      iw: s.iw, ww: s.ww, nw: g.tw.taps, outW: g.outW, tmp: s.row, out: s.tile + k * g.outW)
        }
    }
}
