import GraphIR

// im2col (forward and dW) and its adjoint col2im (dX and ConvTranspose): the re-layouts between
// an image and the column matrix one GEMM multiplies.
extension Convolution {
    /// The columns of one tile (output positions p0..<p1) of `channels` input planes at `x`: the 2-D
    /// im2col for 2-D geometries, the generic N-D one (whole images) otherwise.
    @inline(__always)
    static func im2colTile<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, _ col: UnsafeMutablePointer<T>, _ g: WindowGeometry,
                                                   channels: Int, p0: Int, p1: Int, _ context: ExecutionContext) {
        if g.rank == 2 {
            im2col2D(x, col, g, channels: channels, p0: p0, p1: p1, context)
        } else {
            im2colND(x, col, g, channels: channels, context)
        }
    }

    /// Splits flat output positions p0..<p1 (p = oh·width + ow) at output-row ends:
    /// `body(oh, ow0, ow1, rowStart)` for each piece ow0..<ow1 of row oh, whose position 0 is rowStart.
    @inline(__always)
    static func forEachRowSegment(_ p0: Int, _ p1: Int, width: Int, _ body: (_ oh: Int, _ ow0: Int, _ ow1: Int, _ rowStart: Int) -> Void) {
        var p = p0
        while p < p1 {
            let oh = p / width, ow0 = p - oh * width
            let ow1 = min(width, ow0 + (p1 - p))
            let rowStart = p - ow0
            body(oh, ow0, ow1, rowStart)
            p = rowStart + ow1
        }
    }

    /// col[r, p - p0] = x[c, oh·sh − ph + kh·dh, ow·sw − pw + kw·dw] (0 outside), r = (c, kh, kw),
    /// for flat output positions p = oh·OW + ow in p0..<p1. Parallel over rows.
    static func im2col2D<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, _ col: UnsafeMutablePointer<T>, _ g: WindowGeometry,
                                                 channels: Int, p0: Int, p1: Int, _ context: ExecutionContext) {
        let (H, W) = (g.input[0], g.input[1]), (KH, KW) = (g.kernel[0], g.kernel[1])
        let OW = g.output[1], (SH, SW) = (g.strides[0], g.strides[1])
        let (DH, DW) = (g.dilations[0], g.dilations[1]), (PH, PW) = (g.padBegin[0], g.padBegin[1])
        let width = p1 - p0
        let rows = channels * KH * KW
        context.parallelFor(rows, minimumPerChunk: max(1, 65536 / max(1, width))) { r0, r1 in
            for r in r0..<r1 {
                let cc = r / (KH * KW), kh = (r / KW) % KH, kw = r % KW
                let src = x + cc * H * W
                let dst = col + r * width - p0
                let base = kw * DW - PW
                let (vlo, vhi) = validRange(base: base, stride: SW, size: W, count: OW)
                forEachRowSegment(p0, p1, width: OW) { oh, ow0, ow1, rowStart in
                    let ih = oh * SH - PH + kh * DH
                    if ih < 0 || ih >= H {
                        for ow in ow0..<ow1 { dst[rowStart + ow] = 0 }
                    } else {
                        let srow = src + ih * W + base
                        let lo = max(ow0, min(vlo, ow1)), hi = max(lo, min(vhi, ow1))
                        for ow in ow0..<lo { dst[rowStart + ow] = 0 }
                        if SW == 1 {
                            for ow in lo..<hi { dst[rowStart + ow] = srow[ow] }
                        } else {
                            for ow in lo..<hi { dst[rowStart + ow] = srow[ow * SW] }
                        }
                        for ow in hi..<ow1 { dst[rowStart + ow] = 0 }
                    }
                }
            }
        }
    }

    /// Generic N-D im2col over whole images: col[r, p] with r = (c, kernel offset), p = output position.
    /// Mirror image of `col2im` (gather here, scatter-add there); kept as two hot loops.
    static func im2colND<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, _ col: UnsafeMutablePointer<T>, _ g: WindowGeometry,
                                                 channels: Int, _ context: ExecutionContext) {
        let rank = g.rank
        let taps = g.kernel.reduce(1, *), outSpatial = g.output.reduce(1, *), inSpatial = g.input.reduce(1, *)
        let inStrides = Strides.rowMajor(g.input)
        context.parallelFor(channels * taps, minimumPerChunk: max(1, 65536 / max(1, outSpatial))) { r0, r1 in
            var koff = [Int](repeating: 0, count: rank), o = [Int](repeating: 0, count: rank)
            for r in r0..<r1 {
                let cc = r / taps
                var t = r % taps
                for i in stride(from: rank - 1, through: 0, by: -1) { koff[i] = t % g.kernel[i]; t /= g.kernel[i] }
                let src = x + cc * inSpatial
                let dst = col + r * outSpatial
                for i in 0..<rank { o[i] = 0 }
                for p in 0..<outSpatial {
                    var offset = 0, inside = true
                    for i in 0..<rank {
                        let v = o[i] * g.strides[i] - g.padBegin[i] + koff[i] * g.dilations[i]
                        if v < 0 || v >= g.input[i] { inside = false; break }
                        offset += v * inStrides[i]
                    }
                    dst[p] = inside ? src[offset] : 0
                    var d = rank - 1
                    while d >= 0 { o[d] += 1; if o[d] < g.output[d] { break }; o[d] = 0; d -= 1 }
                }
            }
        }
    }

    /// dx[c, oh·sh − ph + kh·dh, ow·sw − pw + kw·dw] += col[r, p − p0], r = (c, kh, kw), for output
    /// positions p = oh·OW + ow in p0..<p1 (the adjoint of `im2col2D`). Parallel over channels.
    static func col2im2D<T: BinaryFloatingPoint>(_ col: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>, _ g: WindowGeometry,
                                                 channels: Int, p0: Int, p1: Int, _ context: ExecutionContext) {
        let (H, W) = (g.input[0], g.input[1]), (KH, KW) = (g.kernel[0], g.kernel[1])
        let OW = g.output[1], (SH, SW) = (g.strides[0], g.strides[1])
        let (DH, DW) = (g.dilations[0], g.dilations[1]), (PH, PW) = (g.padBegin[0], g.padBegin[1])
        let width = p1 - p0
        context.parallelFor(channels, minimumPerChunk: max(1, 65536 / max(1, width * KH * KW))) { c0, c1 in
            for cc in c0..<c1 {
                let plane = dx + cc * H * W
                for kh in 0..<KH {
                    for kw in 0..<KW {
                        let r = (cc * KH + kh) * KW + kw
                        let src = col + r * width - p0
                        let base = kw * DW - PW
                        let (vlo, vhi) = validRange(base: base, stride: SW, size: W, count: OW)
                        forEachRowSegment(p0, p1, width: OW) { oh, ow0, ow1, rowStart in
                            let ih = oh * SH - PH + kh * DH
                            if ih >= 0 && ih < H {
                                let drow = plane + ih * W + base
                                let srow = src + rowStart
                                let lo = max(ow0, min(vlo, ow1)), hi = max(lo, min(vhi, ow1))
                                if SW == 1 {
                                    for ow in lo..<hi { drow[ow] += srow[ow] }
                                } else {
                                    for ow in lo..<hi { drow[ow * SW] += srow[ow] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// y[c, o] += col[(c, k), i] where o = i·stride − padBegin + k·dilation lies inside the output.
    /// The last spatial dim runs as a contiguous range; the outer ones through an odometer.
    /// Mirror image of `im2colND` (its window walk, with the accumulation reversed); kept as two hot loops.
    static func col2im<T: BinaryFloatingPoint>(_ col: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ g: WindowGeometry,
                                               channels: Int, _ context: ExecutionContext) {
        let rank = g.rank, last = rank - 1
        let taps = g.taps, inSpatial = g.inputSpatial, outSpatial = g.outputSpatial
        let outStrides = Strides.rowMajor(g.output)
        let inLast = g.input[last], outer = inSpatial / max(1, inLast)
        context.parallelFor(channels, minimumPerChunk: max(1, 32768 / max(1, taps * inSpatial))) { c0, c1 in
            var k = [Int](repeating: 0, count: rank), idx = [Int](repeating: 0, count: rank)
            for c in c0..<c1 {
                let dst = y + c * outSpatial
                for t in 0..<taps {
                    var rem = t
                    for d in stride(from: last, through: 0, by: -1) { k[d] = rem % g.kernel[d]; rem /= g.kernel[d] }
                    let src = col + (c * taps + t) * inSpatial
                    let base = k[last] * g.dilations[last] - g.padBegin[last]
                    // Input positions i whose output i·s + base lies in 0..<out (validRange in reverse).
                    let sLast = g.strides[last], outLast = g.output[last]
                    let lo = base >= 0 ? 0 : (-base + sLast - 1) / sLast
                    let hi = outLast - 1 - base < 0 ? 0 : min(inLast, (outLast - 1 - base) / sLast + 1)
                    for d in 0..<rank { idx[d] = 0 }
                    for row in 0..<outer {
                        var off = 0, inside = true
                        for d in 0..<last {
                            let o = idx[d] * g.strides[d] - g.padBegin[d] + k[d] * g.dilations[d]
                            if o < 0 || o >= g.output[d] { inside = false; break }
                            off += o * outStrides[d]
                        }
                        if inside && lo < hi {
                            let s = src + row * inLast, drow = dst + off + base
                            if sLast == 1 { for i in lo..<hi { drow[i] += s[i] } } else { for i in lo..<hi { drow[i * sLast] += s[i] } }
                        }
                        var d = last - 1
                        while d >= 0 { idx[d] += 1; if idx[d] < g.input[d] { break }; idx[d] = 0; d -= 1 }
                    }
                }
            }
        }
    }
}
