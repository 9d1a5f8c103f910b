import Foundation
import GraphIR

/// PIL's (Pillow's) `Image.resize` on 8-bit images, reproduced so the image processor matches
/// HuggingFace's PIL-based pipeline.
///
/// Facts of Pillow's algorithm reproduced here:
/// - Filters other than NEAREST: a separable convolution, one pass per axis (the horizontal pass, when
///   first, covers only the rows the vertical pass will read). Each output sample has a window centred at
///   `(i + 0.5) * scale` in input coordinates; when downscaling the filter is stretched by the scale
///   (`support * max(scale, 1)`) so it antialiases. Window weights are normalised to sum 1 in double,
///   converted to fixed point with 22 fractional bits (rounded half away from zero), accumulated in
///   integers starting from one half, shifted back and clamped to 0…255 after each pass.
///   A pass is skipped when its size does not change. Pillow 13 runs the vertical pass first when the
///   height shrinks by more than twice the width's shrink (older Pillow always ran horizontal first;
///   the two orders differ by at most one level).
/// - NEAREST: source index `trunc(x0 + (i + 0.5) * scale)`, with the position accumulated by repeated
///   addition in double as Pillow does (it can differ from the product at exact ties).
public enum PILResample: Int, Sendable, CaseIterable {
    // PIL's Resampling enum values (the `resample` number in HF configs).
    case nearest = 0
    case lanczos = 1
    case bilinear = 2
    case bicubic = 3
    case box = 4
    case hamming = 5

    var support: Double {
        switch self {
        case .nearest: return 0
        case .box: return 0.5
        case .bilinear, .hamming: return 1
        case .bicubic: return 2
        case .lanczos: return 3
        }
    }

    @inline(__always)
    func weight(_ x0: Double) -> Double {
        switch self {
        case .nearest:
            return 0
        case .box:
            return (x0 > -0.5 && x0 <= 0.5) ? 1 : 0
        case .bilinear:
            let x = abs(x0)
            return x < 1 ? 1 - x : 0
        case .hamming:
            let x = abs(x0)
            if x == 0 { return 1 }
            if x >= 1 { return 0 }
            let px = x * Double.pi
            // Pillow writes the window constants as single-precision literals.
            return sin(px) / px * (Double(Float(0.54)) + Double(Float(0.46)) * cos(px))
        case .bicubic:
            let a = -0.5
            let x = abs(x0)
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        case .lanczos:
            if -3 <= x0 && x0 < 3 { return PILResample.sinc(x0) * PILResample.sinc(x0 / 3) }
            return 0
        }
    }

    private static func sinc(_ x: Double) -> Double {
        if x == 0 { return 1 }
        let px = x * Double.pi
        return sin(px) / px
    }

    static let precisionBits = 22

    /// Per output index: first input index, window length, and fixed-point weights (`ksize` per row).
    struct Coefficients {
        var ksize: Int
        var bounds: [(start: Int, count: Int)]
        var weights: [Int32]
    }

    static func coefficients(inSize: Int, outSize: Int, filter: PILResample) -> Coefficients {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = filter.support * filterScale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        var bounds = [(start: Int, count: Int)](repeating: (0, 0), count: outSize)
        var weights = [Int32](repeating: 0, count: outSize * ksize)
        var k = [Double](repeating: 0, count: ksize)
        let ss = 1.0 / filterScale
        for xx in 0..<outSize {
            let center = 0.0 + (Double(xx) + 0.5) * scale
            var xmin = Int(center - support + 0.5)
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            var ww = 0.0
            for x in 0..<ksize { k[x] = 0 }
            if xmax > 0 {
                for x in 0..<xmax {
                    let w = filter.weight((Double(x + xmin) - center + 0.5) * ss)
                    k[x] = w
                    ww += w
                }
                if ww != 0 { for x in 0..<xmax { k[x] /= ww } }
            }
            let one = Double(1 << precisionBits)
            for x in 0..<ksize {
                let v = k[x]
                weights[xx * ksize + x] = v < 0 ? Int32(-0.5 + v * one) : Int32(0.5 + v * one)
            }
            bounds[xx] = (xmin, max(xmax, 0))
        }
        return Coefficients(ksize: ksize, bounds: bounds, weights: weights)
    }

    @inline(__always)
    static func clip8(_ acc: Int32) -> UInt8 {
        let v = acc >> Int32(precisionBits)
        return v < 0 ? 0 : (v > 255 ? 255 : UInt8(v))
    }

    /// Resizes an 8-bit image as PIL's `Image.resize((width, height), resample)` does.
    public static func resize(_ image: Image, width: Int, height: Int, filter: PILResample) throws -> Image {
        try resize(image, width: width, height: height, filter: filter, keeping: (0, 0, width, height))
    }

    /// The part `region` (x, y, width, height, inside the output) of PIL's resize to `width`×`height`,
    /// byte for byte what cropping the whole resize gives; only that part is computed. Every output
    /// sample of a pass depends on its own window of the pass's input alone, so the second pass needs
    /// the first pass's output only for the windows of the region's samples, and the first pass
    /// computes just those (the same integer arithmetic, hence the same bytes).
    static func resize(_ image: Image, width: Int, height: Int, filter: PILResample,
                       keeping region: (x: Int, y: Int, width: Int, height: Int)) throws -> Image {
        guard width > 0, height > 0 else {
            throw SegFormerError.invalid("resize: target size \(width)x\(height) must be positive")
        }
        guard image.width > 0, image.height > 0 else {
            throw SegFormerError.invalid("resize: cannot resize an empty \(image.width)x\(image.height) image")
        }
        guard Double(width) * Double(height) * Double(image.channels) <= 1e9 else {
            throw SegFormerError.invalid("resize: target size \(width)x\(height) is too large")
        }
        guard region.width > 0, region.height > 0, region.x >= 0, region.y >= 0,
              region.x + region.width <= width, region.y + region.height <= height else {
            throw SegFormerError.invalid("resize: region \(region) is not inside the \(width)x\(height) output")
        }
        let columns = region.x ..< region.x + region.width, rows = region.y ..< region.y + region.height
        if width == image.width && height == image.height { return image.cropped(columns: columns, rows: rows) }
        if filter == .nearest { return nearest(image, width: width, height: height, columns: columns, rows: rows) }

        let needH = width != image.width
        let needV = height != image.height
        let horizontal = needH ? coefficients(inSize: image.width, outSize: width, filter: filter).window(columns) : nil
        let vertical = needV ? coefficients(inSize: image.height, outSize: height, filter: filter).window(rows) : nil
        // Pillow 13 picks the pass order: vertical first when the picture loses more rows than twice
        // the columns it loses (so the horizontal pass runs on fewer rows); otherwise horizontal first.
        let shrinkRows = image.height - height
        if let h = horizontal, let v = vertical, shrinkRows > 0, shrinkRows > 2 * (image.width - width) {
            // Only the columns the horizontal pass reads are resampled vertically.
            let read = h.inputSpan
            let tmp = verticalPass(image, columns: read, coeffs: v)
            return horizontalPass(tmp, firstRow: 0, rows: tmp.height, coeffs: h.shifted(by: -read.lowerBound))
        }
        // Horizontal first (when needed): over the rows the vertical pass reads, or the region's rows.
        let readRows = vertical?.inputSpan ?? rows
        let src = horizontal.map { horizontalPass(image, firstRow: readRows.lowerBound, rows: readRows.count, coeffs: $0) }
            ?? image.cropped(columns: columns, rows: readRows)
        guard let v = vertical else { return src }
        return verticalPass(src, columns: 0..<src.width, coeffs: v.shifted(by: -readRows.lowerBound))
    }

    /// Horizontal pass over `rows` rows starting at `firstRow`, one output column per window of
    /// `coeffs`, rounding back to 8 bits.
    static func horizontalPass(_ image: Image, firstRow: Int, rows: Int, coeffs: Coefficients) -> Image {
        let c = image.channels, width = coeffs.bounds.count
        var out = [UInt8](repeating: 0, count: width * rows * c)
        let half: Int32 = 1 << Int32(precisionBits - 1)
        image.pixels.withUnsafeBufferPointer { inp in
            coeffs.weights.withUnsafeBufferPointer { kk in
                out.withUnsafeMutableBufferPointer { o in
                    let ks = coeffs.ksize
                    for yy in 0..<rows {
                        let inRow = inp.baseAddress! + (yy + firstRow) * image.width * c
                        let outRow = o.baseAddress! + yy * width * c
                        for xx in 0..<width {
                            let (xmin, xn) = coeffs.bounds[xx]
                            let k = kk.baseAddress! + xx * ks
                            if c == 3 {
                                // RGB, the common case: the three channels in one sweep of the window.
                                var r = half, g = half, b = half
                                var p = inRow + xmin * 3
                                for x in 0..<xn {
                                    let w = k[x]
                                    r &+= Int32(p[0]) &* w; g &+= Int32(p[1]) &* w; b &+= Int32(p[2]) &* w
                                    p += 3
                                }
                                outRow[xx * 3] = clip8(r); outRow[xx * 3 + 1] = clip8(g); outRow[xx * 3 + 2] = clip8(b)
                                continue
                            }
                            for ch in 0..<c {
                                var acc = half
                                for x in 0..<xn {
                                    acc &+= Int32(inRow[(x + xmin) * c + ch]) &* k[x]
                                }
                                outRow[xx * c + ch] = clip8(acc)
                            }
                        }
                    }
                }
            }
        }
        return Image(width: width, height: rows, channels: c, pixels: out)
    }

    /// Vertical pass over the pixel columns `columns` of `image`, one output row per window of `coeffs`
    /// (window starts are rows of `image`), rounding back to 8 bits. A row is accumulated as whole
    /// input rows times one weight each (a loop the compiler vectorises); integer sums do not depend
    /// on their order.
    static func verticalPass(_ image: Image, columns: Range<Int>, coeffs: Coefficients) -> Image {
        let c = image.channels, height = coeffs.bounds.count
        let rowLen = columns.count * c, stride = image.width * c
        var out = [UInt8](repeating: 0, count: rowLen * height)
        var acc = [Int32](repeating: 0, count: rowLen)
        let half: Int32 = 1 << Int32(precisionBits - 1)
        image.pixels.withUnsafeBufferPointer { inp in
            coeffs.weights.withUnsafeBufferPointer { kk in
                out.withUnsafeMutableBufferPointer { o in
                    acc.withUnsafeMutableBufferPointer { a in
                        let ks = coeffs.ksize
                        for yy in 0..<height {
                            let (ymin, yn) = coeffs.bounds[yy]
                            let k = kk.baseAddress! + yy * ks
                            for i in 0..<rowLen { a[i] = half }
                            for y in 0..<yn {
                                let w = k[y]
                                let row = inp.baseAddress! + (ymin + y) * stride + columns.lowerBound * c
                                for i in 0..<rowLen { a[i] &+= Int32(row[i]) &* w }
                            }
                            let outRow = o.baseAddress! + yy * rowLen
                            for i in 0..<rowLen { outRow[i] = clip8(a[i]) }
                        }
                    }
                }
            }
        }
        return Image(width: columns.count, height: height, channels: c, pixels: out)
    }

    /// The part (`columns`, `rows`) of PIL's NEAREST resize to `width`×`height` (an affine scale with
    /// nearest sampling). Positions still advance over every row and column before the part, as
    /// Pillow's repeated additions do.
    static func nearest(_ image: Image, width: Int, height: Int, columns: Range<Int>, rows: Range<Int>) -> Image {
        let c = image.channels
        let ax = Double(Float(image.width)) / Double(width)
        let ay = Double(Float(image.height)) / Double(height)
        var xtab = [Int](repeating: -1, count: width)
        var xo = ax * 0.5
        for x in 0..<width {
            let xi = xo < 0 ? -1 : Int(xo)
            xtab[x] = (xi >= 0 && xi < image.width) ? xi : -1
            xo += ax
        }
        let outWidth = columns.count
        var out = [UInt8](repeating: 0, count: outWidth * rows.count * c)
        var yo = ay * 0.5
        image.pixels.withUnsafeBufferPointer { inp in
            out.withUnsafeMutableBufferPointer { o in
                for y in 0..<rows.upperBound {
                    let yi = yo < 0 ? -1 : Int(yo)
                    yo += ay
                    guard y >= rows.lowerBound, yi >= 0 && yi < image.height else { continue }  // Pillow fills 0 outside
                    let inRow = yi * image.width * c
                    let outRow = (y - rows.lowerBound) * outWidth * c
                    for x in 0..<outWidth {
                        let xi = xtab[x + columns.lowerBound]
                        guard xi >= 0 else { continue }
                        for ch in 0..<c { o[outRow + x * c + ch] = inp[inRow + xi * c + ch] }
                    }
                }
            }
        }
        return Image(width: outWidth, height: rows.count, channels: c, pixels: out)
    }
}

extension PILResample.Coefficients {
    /// The windows of the outputs `outputs` only.
    func window(_ outputs: Range<Int>) -> Self {
        Self(ksize: ksize, bounds: Array(bounds[outputs]),
             weights: Array(weights[outputs.lowerBound * ksize ..< outputs.upperBound * ksize]))
    }

    /// The windows with their input positions moved by `offset` (for an input that starts elsewhere).
    func shifted(by offset: Int) -> Self {
        Self(ksize: ksize, bounds: bounds.map { ($0.start + offset, $0.count) }, weights: weights)
    }

    /// The input positions the windows read, first to last.
    var inputSpan: Range<Int> {
        let first = bounds.map(\.start).min() ?? 0
        let end = bounds.map { $0.start + $0.count }.max() ?? first
        return first ..< max(first, end)
    }
}

extension Image {
    /// PIL-exact resize (see `PILResample`).
    public func resized(width: Int, height: Int, filter: PILResample = .bilinear) throws -> Image {
        try PILResample.resize(self, width: width, height: height, filter: filter)
    }

    /// The pixels of `columns` × `rows` (which lie inside the image).
    func cropped(columns: Range<Int>, rows: Range<Int>) -> Image {
        if columns == 0..<width, rows == 0..<height { return self }
        let c = channels, rowLen = columns.count * c
        var out = [UInt8](repeating: 0, count: rowLen * rows.count)
        pixels.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                for (i, y) in rows.enumerated() {
                    (o.baseAddress! + i * rowLen).update(from: p.baseAddress! + (y * width + columns.lowerBound) * c, count: rowLen)
                }
            }
        }
        return Image(width: columns.count, height: rows.count, channels: c, pixels: out)
    }

    /// The same picture as 3-channel RGB (grey replicated, a 4th channel dropped), as PIL's convert("RGB").
    public func rgb() -> Image {
        if channels == 3 { return self }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        let n = width * height
        for i in 0..<n {
            if channels == 1 {
                let v = pixels[i]
                out[3 * i] = v; out[3 * i + 1] = v; out[3 * i + 2] = v
            } else {
                for ch in 0..<3 { out[3 * i + ch] = pixels[i * channels + ch] }
            }
        }
        return Image(width: width, height: height, channels: 3, pixels: out)
    }
}
