import GraphIR

// ResizeSum (written by the fuse-resize-sum pass; schema in Ops/Resize.swift): channels-last images
// x_i [B, h_i, w_i, C], each resized as Resize resizes its NCHW view [B, C, h_i, w_i] (roi, scales and
// sizes in NCHW axis order), summed in order, then a per-channel bias and an optional Relu. The output
// is NHWC [B, H, W, C]. Each output row of every term is interpolated and added while it is in cache,
// vectorised along the channels, with the very float operations of `ResizePlan.interpolateFloat` (the
// NCHW kernel), so the result has the bits of the separate Resize, Add and Relu nodes.
// With a projection (W [M, C], b [M]: a 1×1 convolution after it), each band of output rows goes
// through it while in cache, written NCHW [B, M, H, W] as the convolution writes it: one GEMM per band.
extension ResizePlan {
    /// One term: an NHWC image and its tap tables for H and W (nil: that axis keeps its size and, in
    /// `copies` mode, the term is read as it is).
    private struct SumTerm {
        let x: Tensor
        let height: Int, width: Int
        let rows: AxisTable?, columns: AxisTable?
        var isIdentity: Bool { rows == nil && columns == nil }
    }

    /// A 1×1 convolution applied to the sum: `weight` [M, C] (any shape of M·C values, row m the
    /// weights of output channel m) and an optional `bias` [M].
    struct Projection {
        let weight: Tensor
        let bias: Tensor?
    }

    /// Output pixels per band that a projection's GEMM takes at once (~512 KB of float32 at C = 256,
    /// within a core's L2).
    static let projectionBandPixels = 512

    static func resizeSum(_ terms: [(x: Tensor, roi: Tensor?, scales: Tensor?, sizes: Tensor?)], bias: Tensor?, relu: Bool,
                          projection: Projection? = nil, _ a: ResizeAttributes, label: String,
                          context: ExecutionContext) throws -> Tensor {
        guard a.coordinateMode != .tfCropAndResize else {
            throw SegFormerError.unsupported("\(label): ResizeSum with coordinate_transformation_mode 'tf_crop_and_resize'")
        }
        var planned: [SumTerm] = []
        var outNCHW: [Int]?
        for (i, term) in terms.enumerated() {
            let x = term.x
            guard x.dataType == .float, x.rank == 4 else {
                throw SegFormerError.invalid("\(label): ResizeSum term \(i) must be a float32 NHWC image, got \(x.dataType) \(x.shape)")
            }
            let nchw = [x.shape[0], x.shape[3], x.shape[1], x.shape[2]]
            var shape = nchw, tables: [AxisTable] = []
            if term.scales.map({ $0.count > 0 }) ?? false || term.sizes.map({ $0.count > 0 }) ?? false {
                (shape, tables) = try plan(nchw, roi: term.roi, scales: term.scales, sizes: term.sizes, a, label: label)
            }
            guard tables.allSatisfy({ $0.axis >= 2 }) else {
                throw SegFormerError.invalid("\(label): ResizeSum term \(i) resizes its batch or channels (\(nchw) → \(shape))")
            }
            if let outNCHW, outNCHW != shape {
                throw SegFormerError.invalid("\(label): ResizeSum term \(i) resizes to \(shape), an earlier term to \(outNCHW)")
            }
            outNCHW = shape
            var rows = tables.first { $0.axis == 2 }, columns = tables.first { $0.axis == 3 }
            // As the NCHW kernel: an axis that keeps its size gets the identity table when the other changes.
            if a.mode != .nearest && !tables.isEmpty {
                rows = rows ?? identityTable(axis: 2, nchw[2])
                columns = columns ?? identityTable(axis: 3, nchw[3])
            }
            planned.append(SumTerm(x: x, height: nchw[2], width: nchw[3], rows: rows, columns: columns))
        }
        guard let outNCHW, !planned.isEmpty else { throw SegFormerError.invalid("\(label): ResizeSum needs at least one term") }
        let (batch, channels, height, width) = (outNCHW[0], outNCHW[1], outNCHW[2], outNCHW[3])
        if let bias, bias.dataType != .float || bias.count != channels {
            throw SegFormerError.invalid("\(label): ResizeSum bias \(bias.dataType) \(bias.shape) is not one float per channel of \(channels)")
        }
        let biasValues = bias.map { UnsafePointer($0.pointer(Float.self)) }
        let widest = planned.map(\.width).max()! * channels
        let nearest = a.mode == .nearest
        /// Output row `outRow` (of B·H) of the sum, bias and Relu into `d` (W·C floats).
        func sumRow(_ outRow: Int, into d: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
            let (b, y) = (outRow / height, outRow % height)
            for (i, term) in planned.enumerated() {
                let rowLength = term.width * channels
                let image = term.x.pointer(Float.self) + b * term.height * rowLength
                let source = term.rows.map {
                    interpolateRows(image, rowLength: rowLength, $0, y, nearest: nearest, into: scratch)
                } ?? UnsafePointer(image + y * rowLength)
                addColumns(source, term.columns, nearest: nearest, width: width, channels: channels, into: d, accumulate: i > 0)
            }
            finish(d, count: width * channels, channels: channels, bias: biasValues, relu: relu)
        }
        if let projection {
            return try withExtendedLifetime((planned, bias)) {
                try project(projection, batch: batch, height: height, width: width, channels: channels, widest: widest,
                            label: label, context: context, sumRow)
            }
        }
        let out = Tensor(uninitialized: .float, shape: [batch, height, width, channels])
        if out.count == 0 { return out }
        let dst = out.pointer(Float.self)
        withExtendedLifetime((planned, bias)) {
            context.parallelFor(batch * height, minimumPerChunk: max(1, 16384 / max(width * channels, 1))) { first, end in
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: widest)
                defer { scratch.deallocate() }
                for outRow in first..<end { sumRow(outRow, into: dst + outRow * width * channels, scratch: scratch) }
            }
        }
        return out
    }

    /// The projection of the sum, NCHW [B, M, H, W]: per band of whole output rows, the rows of the sum
    /// are made into a buffer and multiplied by Wᵀ in one single-threaded GEMM writing the band's
    /// columns of every output channel, then the bias. Bands are split over the threads.
    private static func project(_ p: Projection, batch: Int, height: Int, width: Int, channels: Int, widest: Int,
                                label: String, context: ExecutionContext,
                                _ sumRow: (Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) throws -> Tensor {
        guard p.weight.dataType == .float, p.weight.count % max(channels, 1) == 0, p.bias?.dataType ?? .float == .float else {
            throw SegFormerError.invalid("\(label): ResizeSum projection \(p.weight.dataType) \(p.weight.shape) is not float32 [M, \(channels)]")
        }
        let m = p.weight.count / max(channels, 1)
        if let bias = p.bias, bias.count != m {
            throw SegFormerError.invalid("\(label): ResizeSum projection bias \(bias.shape) is not one value per output channel of \(m)")
        }
        let out = Tensor(uninitialized: .float, shape: [batch, m, height, width])
        if out.count == 0 { return out }
        let plane = height * width
        try BLAS.checkSizes(m, plane, channels, channels, channels, plane)
        let bands = RowBands(images: batch, height: height, width: width, pixels: projectionBandPixels)
        let (w, dst) = (UnsafePointer(p.weight.pointer(Float.self)), out.pointer(Float.self))
        let bias = p.bias.map { UnsafePointer($0.pointer(Float.self)) }
        let serial = BLAS.callsFromParallelChunks()
        withExtendedLifetime(p) {
            context.parallelFor(bands.count) { first, end in
                let rows = UnsafeMutablePointer<Float>.allocate(capacity: bands.rowsPerBand * width * channels)
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: widest)
                defer { rows.deallocate(); scratch.deallocate() }
                for i in first..<end {
                    let (b, band) = bands.band(i)
                    let pixels = band.count * width
                    for (r, y) in band.enumerated() { sumRow(b * height + y, rows + r * width * channels, scratch) }
                    let c = dst + b * m * plane + band.lowerBound * width
                    BLAS.gemm(Float.self, serial, transB: true, m: m, n: pixels, k: channels, a: w, lda: channels,
                              b: rows, ldb: channels, c: c, ldc: plane)
                    if let bias { for o in 0..<m { let v = bias[o], row = c + o * plane; for j in 0..<pixels { row[j] += v } } }
                }
            }
        }
        return out
    }

    static func identityTable(axis: Int, _ n: Int) -> AxisTable {
        AxisTable(axis: axis, inLength: n, outLength: n, taps: 1, index: (0..<n).map { Int32($0) },
                  weight: [Double](repeating: 1, count: n), extrapolated: nil)
    }

    /// Output row `y` of the vertical pass: the table's taps mix whole input rows (`rowLength` floats
    /// each) into `scratch`, as `interpolateRow` mixes them (nearest: the row itself).
    @inline(__always)
    private static func interpolateRows(_ image: UnsafeMutablePointer<Float>, rowLength n: Int, _ t: AxisTable, _ y: Int,
                                        nearest: Bool, into tmp: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        let taps = t.taps
        let r0 = image + Int(t.index[y * taps]) * n
        if nearest { return UnsafePointer(r0) }
        let w0 = Float(t.weight[y * taps])
        if taps == 2 {
            let r1 = image + Int(t.index[y * taps + 1]) * n, w1 = Float(t.weight[y * taps + 1])
            for j in 0..<n { tmp[j] = w0 * r0[j] + w1 * r1[j] }
        } else {
            for j in 0..<n { tmp[j] = w0 * r0[j] }
            for k in 1..<max(taps, 1) {
                let rk = image + Int(t.index[y * taps + k]) * n, wk = Float(t.weight[y * taps + k])
                for j in 0..<n { tmp[j] += wk * rk[j] }
            }
        }
        return UnsafePointer(tmp)
    }

    /// The horizontal pass of one row (`source`: the input row's pixels, `channels` floats each) into
    /// the output row `d`, written (first term) or added (later terms) pixel by pixel.
    @inline(__always)
    private static func addColumns(_ source: UnsafePointer<Float>, _ t: AxisTable?, nearest: Bool, width: Int, channels c: Int,
                                   into d: UnsafeMutablePointer<Float>, accumulate: Bool) {
        for x in 0..<width {
            let o = d + x * c
            guard let t else {
                let s = source + x * c
                if accumulate { for j in 0..<c { o[j] += s[j] } } else { for j in 0..<c { o[j] = s[j] } }
                continue
            }
            let taps = t.taps
            let s0 = source + Int(t.index[x * taps]) * c
            if nearest {
                if accumulate { for j in 0..<c { o[j] += s0[j] } } else { for j in 0..<c { o[j] = s0[j] } }
            } else if taps == 2 {
                let s1 = source + Int(t.index[x * taps + 1]) * c
                let w0 = Float(t.weight[x * taps]), w1 = Float(t.weight[x * taps + 1])
                if accumulate { for j in 0..<c { o[j] += w0 * s0[j] + w1 * s1[j] } } else { for j in 0..<c { o[j] = w0 * s0[j] + w1 * s1[j] } }
            } else {
                // acc = 0, then each tap added in order, as `interpolateRow`'s general case.
                for j in 0..<c {
                    var acc: Float = 0
                    for k in 0..<taps { acc += Float(t.weight[x * taps + k]) * source[Int(t.index[x * taps + k]) * c + j] }
                    if accumulate { o[j] += acc } else { o[j] = acc }
                }
            }
        }
    }

    /// The bias (one value per channel) and Relu on a finished NHWC row of `count` floats.
    @inline(__always)
    private static func finish(_ d: UnsafeMutablePointer<Float>, count: Int, channels c: Int,
                               bias: UnsafePointer<Float>?, relu: Bool) {
        // Relu's select (NaN stays NaN) vectorises to a blend, where a conditional store would not.
        if let bias {
            for p in stride(from: 0, to: count, by: c) {
                let row = d + p
                if relu {
                    for j in 0..<c { row[j] = ReluFn().f(row[j] + bias[j]) }
                } else {
                    for j in 0..<c { row[j] += bias[j] }
                }
            }
        } else if relu {
            for j in 0..<count { d[j] = ReluFn().f(d[j]) }
        }
    }
}
