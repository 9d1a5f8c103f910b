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
        guard width > 0, height > 0 else {
            throw SegFormerError.invalid("resize: target size \(width)x\(height) must be positive")
        }
        guard image.width > 0, image.height > 0 else {
            throw SegFormerError.invalid("resize: cannot resize an empty \(image.width)x\(image.height) image")
        }
        guard Double(width) * Double(height) * Double(image.channels) <= 1e9 else {
            throw SegFormerError.invalid("resize: target size \(width)x\(height) is too large")
        }
        if width == image.width && height == image.height { return image }
        if filter == .nearest { return nearest(image, width: width, height: height) }

        let needH = width != image.width
        let needV = height != image.height
        // Pillow 13 picks the pass order: vertical first when the picture loses more rows than twice
        // the columns it loses (so the horizontal pass runs on fewer rows); otherwise horizontal first.
        let shrinkRows = image.height - height
        let verticalFirst = needH && needV && shrinkRows > 0 && shrinkRows > 2 * (image.width - width)
        if verticalFirst {
            let v = coefficients(inSize: image.height, outSize: height, filter: filter)
            let tmp = verticalPass(image, rowOffset: 0, height: height, coeffs: v)
            let h = coefficients(inSize: image.width, outSize: width, filter: filter)
            return horizontalPass(tmp, firstRow: 0, rows: height, width: width, coeffs: h)
        }
        var src = image
        var vert = needV ? coefficients(inSize: image.height, outSize: height, filter: filter) : nil
        if needH {
            // Only the rows the vertical pass reads are resampled horizontally.
            var firstRow = 0, rows = image.height
            if var v = vert {
                firstRow = v.bounds[0].start
                rows = v.bounds[height - 1].start + v.bounds[height - 1].count - firstRow
                for i in 0..<height { v.bounds[i].start -= firstRow }
                vert = v
            }
            let h = coefficients(inSize: image.width, outSize: width, filter: filter)
            src = horizontalPass(image, firstRow: firstRow, rows: rows, width: width, coeffs: h)
        }
        guard let v = vert else { return src }
        return verticalPass(src, rowOffset: 0, height: height, coeffs: v)
    }

    /// Horizontal pass over `rows` rows starting at `firstRow`, rounding back to 8 bits.
    static func horizontalPass(_ image: Image, firstRow: Int, rows: Int, width: Int, coeffs: Coefficients) -> Image {
        let c = image.channels
        var out = [UInt8](repeating: 0, count: width * rows * c)
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
                            for ch in 0..<c {
                                var acc: Int32 = 1 << Int32(precisionBits - 1)
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

    /// Vertical pass (window starts in `coeffs.bounds` are relative to `rowOffset`), rounding back to 8 bits.
    static func verticalPass(_ image: Image, rowOffset: Int, height: Int, coeffs: Coefficients) -> Image {
        let c = image.channels
        var out = [UInt8](repeating: 0, count: image.width * height * c)
        let rowLen = image.width * c
        image.pixels.withUnsafeBufferPointer { inp in
            coeffs.weights.withUnsafeBufferPointer { kk in
                out.withUnsafeMutableBufferPointer { o in
                    let ks = coeffs.ksize
                    for yy in 0..<height {
                        let (ymin, yn) = coeffs.bounds[yy]
                        let k = kk.baseAddress! + yy * ks
                        let outRow = o.baseAddress! + yy * rowLen
                        let base = inp.baseAddress! + (ymin + rowOffset) * rowLen
                        for i in 0..<rowLen {
                            var acc: Int32 = 1 << Int32(precisionBits - 1)
                            for y in 0..<yn {
                                acc &+= Int32(base[y * rowLen + i]) &* k[y]
                            }
                            outRow[i] = clip8(acc)
                        }
                    }
                }
            }
        }
        return Image(width: image.width, height: height, channels: c, pixels: out)
    }

    /// PIL's NEAREST resize (an affine scale with nearest sampling).
    static func nearest(_ image: Image, width: Int, height: Int) -> Image {
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
        var out = [UInt8](repeating: 0, count: width * height * c)
        var yo = ay * 0.5
        image.pixels.withUnsafeBufferPointer { inp in
            out.withUnsafeMutableBufferPointer { o in
                for y in 0..<height {
                    let yi = yo < 0 ? -1 : Int(yo)
                    yo += ay
                    guard yi >= 0 && yi < image.height else { continue }  // Pillow fills 0 outside
                    let inRow = yi * image.width * c
                    let outRow = y * width * c
                    for x in 0..<width {
                        let xi = xtab[x]
                        guard xi >= 0 else { continue }
                        for ch in 0..<c { o[outRow + x * c + ch] = inp[inRow + xi * c + ch] }
                    }
                }
            }
        }
        return Image(width: width, height: height, channels: c, pixels: out)
    }
}

extension Image {
    /// PIL-exact resize (see `PILResample`).
    public func resized(width: Int, height: Int, filter: PILResample = .bilinear) throws -> Image {
        try PILResample.resize(self, width: width, height: height, filter: filter)
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
