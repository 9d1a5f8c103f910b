import GraphIR

// Depthwise convolution (one input channel per group, SegFormer's MixFFN 3×3): direct kernels
// for the forward, dX and dW, parallel over channels.
extension Convolution {
    static func depthwise2D<T: BinaryFloatingPoint>(_ px: UnsafePointer<T>, _ pw: UnsafePointer<T>, _ pb: UnsafePointer<T>?,
                                                    _ py: UnsafeMutablePointer<T>, _ s: ConvShape, _ context: ExecutionContext) {
        let g = s.geometry
        let (H, W) = (g.input[0], g.input[1]), (KH, KW) = (g.kernel[0], g.kernel[1])
        let (OH, OW) = (g.output[0], g.output[1]), (SH, SW) = (g.strides[0], g.strides[1])
        let (DH, DW) = (g.dilations[0], g.dilations[1]), (PH, PW) = (g.padBegin[0], g.padBegin[1])
        let m = s.m, mPerGroup = s.mPerGroup, c = s.c
        let work = OH * OW * KH * KW
        context.parallelFor(s.n * m, minimumPerChunk: max(1, 32768 / max(1, work))) { start, end in
            for idx in start..<end {
                let img = idx / m, oc = idx % m
                let src = px + (img * c + oc / mPerGroup) * H * W
                let wk = pw + oc * KH * KW
                let dst = py + idx * OH * OW
                let bias = pb?[oc] ?? 0
                for j in 0..<(OH * OW) { dst[j] = bias }
                for oh in 0..<OH {
                    let drow = dst + oh * OW
                    let top = oh * SH - PH
                    if SW == 1 && KW == 3 && KH == 3 && top >= 0 && top + 2 * DH < H {
                        // 3×3 with all three input rows inside: the nine taps in one pass over the
                        // interior columns (one store per output), then the edge columns.
                        let b0 = -PW, b1 = DW - PW, b2 = 2 * DW - PW
                        let r0 = validRange(base: b0, stride: 1, size: W, count: OW)
                        let r2 = validRange(base: b2, stride: 1, size: W, count: OW)
                        let lo = max(r0.0, r2.0), hi = max(lo, min(r0.1, r2.1))
                        let u = src + top * W, v = u + DH * W, z = v + DH * W
                        let u0 = u + b0, u1 = u + b1, u2 = u + b2
                        let v0 = v + b0, v1 = v + b1, v2 = v + b2
                        let z0 = z + b0, z1 = z + b1, z2 = z + b2
                        let w00 = wk[0], w01 = wk[1], w02 = wk[2], w10 = wk[3], w11 = wk[4], w12 = wk[5]
                        let w20 = wk[6], w21 = wk[7], w22 = wk[8]
                        for ow in lo..<hi {
                            let a = w00 * u0[ow] + w01 * u1[ow] + w02 * u2[ow]
                            let b = w10 * v0[ow] + w11 * v1[ow] + w12 * v2[ow]
                            let c = w20 * z0[ow] + w21 * z1[ow] + w22 * z2[ow]
                            drow[ow] = bias + (a + b + c)
                        }
                        var ow = 0
                        while ow < OW {
                            if ow == lo { ow = hi; if ow >= OW { break } }
                            var acc = drow[ow]
                            for kr in 0..<3 {
                                let row = u + kr * DH * W
                                for t in 0..<3 {
                                    let iw = ow + t * DW - PW
                                    if iw >= 0 && iw < W { acc += wk[kr * 3 + t] * row[iw] }
                                }
                            }
                            drow[ow] = acc
                            ow += 1
                        }
                        continue
                    }
                    for kh in 0..<KH {
                        let ih = top + kh * DH
                        if ih < 0 || ih >= H { continue }
                        let srow = src + ih * W
                        if SW == 1 && KW == 3 {
                            // The 3-wide row (MixFFN's 3×3): all three taps in one pass over the
                            // interior, where every tap is inside the input; taps one by one at the edges.
                            let w0 = wk[kh * 3], w1 = wk[kh * 3 + 1], w2 = wk[kh * 3 + 2]
                            let b0 = -PW, b1 = DW - PW, b2 = 2 * DW - PW
                            let r0 = validRange(base: b0, stride: 1, size: W, count: OW)
                            let r2 = validRange(base: b2, stride: 1, size: W, count: OW)
                            let lo = max(r0.0, r2.0), hi = max(lo, min(r0.1, r2.1))
                            let s0 = srow + b0, s1 = srow + b1, s2 = srow + b2
                            for ow in lo..<hi { drow[ow] += w0 * s0[ow] + w1 * s1[ow] + w2 * s2[ow] }
                            var ow = 0
                            while ow < OW {
                                if ow == lo { ow = hi; if ow >= OW { break } }
                                var acc = drow[ow]
                                if ow + b0 >= 0 && ow + b0 < W { acc += w0 * s0[ow] }
                                if ow + b1 >= 0 && ow + b1 < W { acc += w1 * s1[ow] }
                                if ow + b2 >= 0 && ow + b2 < W { acc += w2 * s2[ow] }
                                drow[ow] = acc
                                ow += 1
                            }
                            continue
                        }
                        for kw in 0..<KW {
                            let wv = wk[kh * KW + kw]
                            let base = kw * DW - PW
                            let (lo, hi) = validRange(base: base, stride: SW, size: W, count: OW)
                            if lo >= hi { continue }
                            if SW == 1 {
                                let sp = srow + base
                                for ow in lo..<hi { drow[ow] += wv * sp[ow] }
                            } else {
                                for ow in lo..<hi { drow[ow] += wv * srow[ow * SW + base] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Depthwise (one input channel per group) dX. Stride 1 with depth multiplier 1 and pads within
    /// the dilated kernel: the forward depthwise conv of dY with each kernel rotated by 180°.
    /// Otherwise a direct scatter, parallel over (image, input channel) so no two threads share a plane.
    /// (Its window walk mirrors depthwiseGradWeight's; they differ in what they accumulate and where.)
    static func depthwiseGradInput<T: BinaryFloatingPoint>(_: T.Type, _ pdy: UnsafePointer<T>, _ pw: UnsafePointer<T>,
                                                           _ pdx: UnsafeMutablePointer<T>, _ s: ConvShape, _ context: ExecutionContext) {
        let g = s.geometry
        let (H, W) = (g.input[0], g.input[1]), (KH, KW) = (g.kernel[0], g.kernel[1])
        let (OH, OW) = (g.output[0], g.output[1]), (SH, SW) = (g.strides[0], g.strides[1])
        let (DH, DW) = (g.dilations[0], g.dilations[1]), (PH, PW) = (g.padBegin[0], g.padBegin[1])
        let mg = s.mPerGroup, taps = KH * KW
        let spanH = (KH - 1) * DH, spanW = (KW - 1) * DW
        if mg == 1 && SH == 1 && SW == 1 && PH <= spanH && PW <= spanW
            && g.padEnd[0] <= spanH && g.padEnd[1] <= spanW {
            let rotated = [T](unsafeUninitializedCapacity: s.m * taps) { buf, count in
                for ch in 0..<s.m { for t in 0..<taps { buf[ch * taps + t] = pw[ch * taps + taps - 1 - t] } }
                count = s.m * taps
            }
            let back = WindowGeometry(input: [OH, OW], kernel: [KH, KW], strides: [1, 1], dilations: [DH, DW],
                                      padBegin: [spanH - PH, spanW - PW], padEnd: [spanH - g.padEnd[0], spanW - g.padEnd[1]],
                                      output: [H, W])
            let bs = ConvShape(n: s.n, c: s.m, m: s.c, group: s.c, geometry: back)
            rotated.withUnsafeBufferPointer { depthwise2D(pdy, $0.baseAddress!, nil, pdx, bs, context) }
            return
        }
        let c = s.c, m = s.m
        context.parallelFor(s.n * c, minimumPerChunk: max(1, 32768 / max(1, mg * OH * OW * taps))) { start, end in
            for idx in start..<end {
                let img = idx / c, ch = idx % c
                let plane = pdx + idx * H * W
                for j in 0..<(H * W) { plane[j] = 0 }
                for oc in (ch * mg)..<((ch + 1) * mg) {
                    let src = pdy + (img * m + oc) * OH * OW
                    let wk = pw + oc * taps
                    for oh in 0..<OH {
                        let srow = src + oh * OW
                        for kh in 0..<KH {
                            let ih = oh * SH - PH + kh * DH
                            if ih < 0 || ih >= H { continue }
                            let drow = plane + ih * W
                            for kw in 0..<KW {
                                let wv = wk[kh * KW + kw]
                                let base = kw * DW - PW
                                let (lo, hi) = validRange(base: base, stride: SW, size: W, count: OW)
                                if SW == 1 {
                                    let d = drow + base
                                    for ow in lo..<hi { d[ow] += wv * srow[ow] }
                                } else {
                                    for ow in lo..<hi { drow[ow * SW + base] += wv * srow[ow] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    /// Depthwise dW[oc, kh, kw] = Σ_img Σ_(oh,ow) dY[img, oc, oh, ow]·X[img, c, ih, iw]: per output row a
    /// dot product over the valid columns for each tap (SIMD for float32), rows accumulated in
    /// Double. Parallel over output channels. (Its window walk mirrors depthwiseGradInput's.)
    static func depthwiseGradWeight<T: BinaryFloatingPoint>(_: T.Type, _ pdy: UnsafePointer<T>, _ px: UnsafePointer<T>,
                                                            _ pdw: UnsafeMutablePointer<T>, _ s: ConvShape, _ context: ExecutionContext) {
        let g = s.geometry
        let (H, W) = (g.input[0], g.input[1]), (KH, KW) = (g.kernel[0], g.kernel[1])
        let (OH, OW) = (g.output[0], g.output[1]), (SH, SW) = (g.strides[0], g.strides[1])
        let (DH, DW) = (g.dilations[0], g.dilations[1]), (PH, PW) = (g.padBegin[0], g.padBegin[1])
        let m = s.m, c = s.c, mg = s.mPerGroup, taps = KH * KW
        if T.self == Float.self && SW == 1 {
            depthwiseGradWeightFloat(UnsafeRawPointer(pdy).assumingMemoryBound(to: Float.self),
                                     UnsafeRawPointer(px).assumingMemoryBound(to: Float.self),
                                     UnsafeMutableRawPointer(pdw).assumingMemoryBound(to: Float.self), s, context)
            return
        }
        context.parallelFor(m, minimumPerChunk: max(1, 32768 / max(1, s.n * OH * OW * taps))) { start, end in
            var acc = [Double](repeating: 0, count: taps)
            for oc in start..<end {
                for t in 0..<taps { acc[t] = 0 }
                for img in 0..<s.n {
                    let src = px + (img * c + oc / mg) * H * W
                    let grad = pdy + (img * m + oc) * OH * OW
                    for oh in 0..<OH {
                        let grow = grad + oh * OW
                        for kh in 0..<KH {
                            let ih = oh * SH - PH + kh * DH
                            if ih < 0 || ih >= H { continue }
                            let srow = src + ih * W
                            for kw in 0..<KW {
                                let base = kw * DW - PW
                                let (lo, hi) = validRange(base: base, stride: SW, size: W, count: OW)
                                if lo >= hi { continue }
                                acc[kh * KW + kw] += Double(dot(grow + lo, srow + lo * SW + base, hi - lo, bStride: SW))
                            }
                        }
                    }
                }
                for t in 0..<taps { pdw[oc * taps + t] = T(acc[t]) }
            }
        }
    }

    /// Depthwise dW for float32, stride-1 columns: per tap and row a SIMD8 dot product, rows summed
    /// in Double; the ragged column ends in scalars.
    static func depthwiseGradWeightFloat(_ pdy: UnsafePointer<Float>, _ px: UnsafePointer<Float>,
                                         _ pdw: UnsafeMutablePointer<Float>, _ s: ConvShape, _ context: ExecutionContext) {
        let g = s.geometry
        let (H, W) = (g.input[0], g.input[1]), (KH, KW) = (g.kernel[0], g.kernel[1])
        let (OH, OW) = (g.output[0], g.output[1]), SH = g.strides[0]
        let (DH, DW) = (g.dilations[0], g.dilations[1]), (PH, PW) = (g.padBegin[0], g.padBegin[1])
        let m = s.m, c = s.c, mg = s.mPerGroup, taps = KH * KW
        // Valid output columns per kernel column (stride 1).
        let ranges = (0..<KW).map { validRange(base: $0 * DW - PW, stride: 1, size: W, count: OW) }
        context.parallelFor(m, minimumPerChunk: max(1, 32768 / max(1, s.n * OH * OW * taps))) { start, end in
            let acc = UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: taps)
            let edge = UnsafeMutablePointer<Double>.allocate(capacity: taps)
            defer { acc.deallocate(); edge.deallocate() }
            for oc in start..<end {
                for t in 0..<taps { acc[t] = SIMD8<Float>(); edge[t] = 0 }
                for img in 0..<s.n {
                    let src = px + (img * c + oc / mg) * H * W
                    let grad = pdy + (img * m + oc) * OH * OW
                    for oh in 0..<OH {
                        let grow = grad + oh * OW
                        let graw = UnsafeRawPointer(grow)
                        for kh in 0..<KH {
                            let ih = oh * SH - PH + kh * DH
                            if ih < 0 || ih >= H { continue }
                            for kw in 0..<KW {
                                let t = kh * KW + kw
                                let (lo, hi) = ranges[kw]
                                let xrow = src + ih * W + kw * DW - PW
                                let xraw = UnsafeRawPointer(xrow)
                                var a = SIMD8<Float>()
                                var ow = lo
                                while ow + 8 <= hi {
                                    a += graw.loadUnaligned(fromByteOffset: ow * 4, as: SIMD8<Float>.self)
                                        * xraw.loadUnaligned(fromByteOffset: ow * 4, as: SIMD8<Float>.self)
                                    ow += 8
                                }
                                var e: Float = 0
                                while ow < hi { e += grow[ow] * xrow[ow]; ow += 1 }
                                // Each row's partial sum goes into Double: a float accumulator carried
                                // over tens of thousands of products drifts by ~1e-6, enough to flip the
                                // sign of near-zero gradient elements (which AdamW's first step amplifies).
                                edge[t] += Double(a.sum()) + Double(e)
                            }
                        }
                    }
                }
                for t in 0..<taps { pdw[oc * taps + t] = Float(Double(acc[t].sum()) + edge[t]) }
            }
        }
    }
}
