import CKernels
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

    /// Low-resolution rows per task: 2 images × 8 bands at SegFormer's 128² logits, an even split on
    /// 2 threads; a band hands only its neighbour's first row back (`Task.spill`).
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
        // (bands write all their own gradient rows; with no label pixels there are no bands to run)
        let dLogits: Tensor? = !gradient ? nil : labels.count > 0 ? Tensor(uninitialized: .float, shape: logits.shape)
            : Tensor(zeros: .float, shape: logits.shape)
        guard labels.count > 0 && (kept > 0 || dLogits != nil) else {
            return [Tensor([Float(0)], shape: [])] + (dLogits.map { [$0] } ?? [])
        }
        let g = Geometry(c: c, h: h, w: w, outH: outH, outW: outW,
                         th: axisTable(axis: 2, h, outH, p.resize), tw: axisTable(axis: 3, w, outW, p.resize))
        let bands = (h + bandRows - 1) / bandRows
        let tasks = (0..<(n * bands)).map { Task(image: $0 / bands, band: $0 % bands, g) }
        let coefficient = kept > 0 ? 1 / kept : 0   // mean over kept pixels; 0 when none is kept
        let scratchRows = tasks.map(\.span.count).max() ?? 0
        var partial = [Double](repeating: 0, count: tasks.count)
        var spills = [[Float]](repeating: [], count: tasks.count)
        partial.withUnsafeMutableBufferPointer { partial in
        spills.withUnsafeMutableBufferPointer { spills in
        idx.withUnsafeBufferPointer { idx in
            context.parallelFor(tasks.count) { a, b in
                let scratch = Scratch(g, rows: scratchRows, gradient: dLogits != nil)
                defer { scratch.deallocate() }
                for t in a..<b {
                    let task = tasks[t]
                    partial[t] = task.run(g, logits.pointer(Float.self), idx.baseAddress! + task.image * outH * outW,
                                          coefficient: coefficient, dLogits: dLogits?.pointer(Float.self), scratch)
                    if dLogits != nil { spills[t] = task.spill(g, scratch) }
                }
            }
        }}}
        // A band's gradient for its neighbours' rows, added after every band has written its own:
        // the same order on any number of threads.
        if let dLogits {
            for (task, spill) in zip(tasks, spills) {
                task.addSpill(spill, g, into: dLogits.pointer(Float.self))
            }
        }
        var total = 0.0
        for v in partial { total += v }
        let loss = Tensor([Float(kept > 0 ? total / kept : 0)], shape: [])
        return dLogits.map { [loss, $0] } ?? [loss]
    }

    struct Geometry {
        let c: Int, h: Int, w: Int, outH: Int, outW: Int
        let th: AxisTable, tw: AxisTable
        /// Floats per pixel in channels-last rows: the classes padded to whole 16-float vectors.
        var cp: Int { (c + 15) / 16 * 16 }
        var rowFloats: Int { w * cp }
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

    /// One band of low-resolution rows of one image. It computes the label rows whose first vertical
    /// tap lies in the band (so each label row exactly once), reading and writing the low-resolution
    /// rows `span` (the band and whatever rows those label rows' taps reach).
    struct Task {
        let image: Int
        let band: Range<Int>
        let labelRows: [Int]
        let span: Range<Int>

        init(image: Int, band index: Int, _ g: Geometry) {
            self.image = image
            band = (index * bandRows)..<min(g.h, (index + 1) * bandRows)
            let nh = g.th.taps
            var labelRows = [Int]()
            var span = band
            for y in 0..<g.outH where band.contains(Int(g.th.index[y * nh])) {
                labelRows.append(y)
                for j in 0..<nh {
                    let r = Int(g.th.index[y * nh + j])
                    span = min(span.lowerBound, r)..<max(span.upperBound, r + 1)
                }
            }
            self.labelRows = labelRows
            self.span = span
        }

        /// The band's loss sum; writes the band's rows of `dLogits` and leaves the gradient of the
        /// span's other rows in `s.gradient` for `spill`.
        func run(_ g: Geometry, _ logits: UnsafePointer<Float>, _ labelIndex: UnsafePointer<Int32>, coefficient: Double,
                 dLogits: UnsafeMutablePointer<Float>?, _ s: Scratch) -> Double {
            let (c, w, cp, plane, rowFloats) = (g.c, g.w, g.cp, g.h * g.w, g.rowFloats)
            let source = logits + image * c * plane
            for r in span {
                ck_planes_to_channels_last(source + r * w, plane, c, w, cp, s.source + (r - span.lowerBound) * rowFloats)
            }
            if dLogits != nil { s.gradient.update(repeating: 0, count: span.count * rowFloats) }
            let nh = g.th.taps
            var loss = 0.0
            for y in labelRows {
                for j in 0..<nh {
                    let r = Int(s.ih[y * nh + j]) - span.lowerBound
                    s.sourceRows[j] = UnsafePointer(s.source + r * rowFloats)
                    s.gradientRows[j] = s.gradient + r * rowFloats
                }
                loss += ck_upsampled_cross_entropy_row(s.sourceRows, s.wh + y * nh, nh, w, c, cp,
                                                       s.iw, s.ww, g.tw.taps, g.outW, labelIndex + y * g.outW, coefficient,
                                                       s.mixed, s.pixel, dLogits == nil ? nil : s.back,
                                                       dLogits == nil ? nil : s.gradientRows)
            }
            if let dLogits {
                let target = dLogits + image * c * plane
                for r in band {
                    ck_channels_last_to_planes(s.gradient + (r - span.lowerBound) * rowFloats, c, w, cp, target + r * w, plane, 0)
                }
            }
            return loss
        }

        /// The gradient rows of the span outside the band, in span order.
        func spill(_ g: Geometry, _ s: Scratch) -> [Float] {
            var out = [Float]()
            for r in span where !band.contains(r) {
                out.append(contentsOf: UnsafeBufferPointer(start: s.gradient + (r - span.lowerBound) * g.rowFloats, count: g.rowFloats))
            }
            return out
        }

        func addSpill(_ spill: [Float], _ g: Geometry, into dLogits: UnsafeMutablePointer<Float>) {
            let plane = g.h * g.w
            let target = dLogits + image * g.c * plane
            spill.withUnsafeBufferPointer { spill in
                for (k, r) in span.filter({ !band.contains($0) }).enumerated() {
                    ck_channels_last_to_planes(spill.baseAddress! + k * g.rowFloats, g.c, g.w, g.cp, target + r * g.w, plane, 1)
                }
            }
        }
    }

    /// Per-thread buffers: the span's channels-last logits and gradient rows, one label row's working
    /// rows, and the tap tables as plain arrays for the C kernel.
    struct Scratch {
        let source: UnsafeMutablePointer<Float>     // rows × w × cp
        let gradient: UnsafeMutablePointer<Float>   // rows × w × cp (when the gradient is asked for)
        let mixed: UnsafeMutablePointer<Float>      // w × cp: the vertically mixed row
        let back: UnsafeMutablePointer<Float>       // w × cp: a label row's gradient, horizontally sent back
        let pixel: UnsafeMutablePointer<Float>      // cp
        let sourceRows: UnsafeMutablePointer<UnsafePointer<Float>?>
        let gradientRows: UnsafeMutablePointer<UnsafeMutablePointer<Float>?>
        let ih: UnsafeMutablePointer<Int32>, wh: UnsafeMutablePointer<Float>   // outH × vertical taps
        let iw: UnsafeMutablePointer<Int32>, ww: UnsafeMutablePointer<Float>   // outW × horizontal taps

        init(_ g: Geometry, rows: Int, gradient wanted: Bool) {
            source = .allocate(capacity: max(1, rows * g.rowFloats))
            gradient = .allocate(capacity: wanted ? max(1, rows * g.rowFloats) : 1)
            mixed = .allocate(capacity: max(1, g.rowFloats))
            back = .allocate(capacity: max(1, g.rowFloats))
            pixel = .allocate(capacity: max(1, g.cp))
            sourceRows = .allocate(capacity: max(1, g.th.taps))
            gradientRows = .allocate(capacity: max(1, g.th.taps))
            func copy<T>(_ a: [T]) -> UnsafeMutablePointer<T> {
                let p = UnsafeMutablePointer<T>.allocate(capacity: max(1, a.count))
                p.initialize(from: a, count: a.count)
                return p
            }
            ih = copy(g.th.index); wh = copy(g.th.weight.map { Float($0) })
            iw = copy(g.tw.index); ww = copy(g.tw.weight.map { Float($0) })
        }

        func deallocate() {
            for p in [source, gradient, mixed, back, pixel, wh, ww] { p.deallocate() }
            sourceRows.deallocate(); gradientRows.deallocate(); ih.deallocate(); iw.deallocate()
        }
    }
}
