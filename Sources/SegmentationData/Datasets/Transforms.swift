import Foundation
import GraphIR

/// A small seeded generator (SplitMix64) whose whole state is one `UInt64`: save `state`, restore it,
/// and the stream continues exactly. Used for shuffling and augmentation, independent of the system RNG.
public struct SplitMix64: RandomNumberGenerator, Codable, Equatable, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    @inline(__always)
    static func mix(_ z0: UInt64) -> UInt64 {
        var z = z0
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }

    /// A generator for stream `index` of a seed, independent of how many numbers other streams used.
    public static func stream(seed: UInt64, index: UInt64) -> SplitMix64 {
        SplitMix64(seed: mix(seed ^ mix(index &+ 0x632B_E59B_D9B4_E019)))
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform in [low, high).
    public mutating func uniform(_ low: Double, _ high: Double) -> Double { low + (high - low) * nextDouble() }

    /// Uniform integer in 0..<bound (unbiased, by rejection; our own so results never depend on the
    /// standard library's algorithm).
    public mutating func int(below bound: Int) -> Int {
        precondition(bound > 0)
        let b = UInt64(bound)
        let limit = UInt64.max - UInt64.max % b
        while true {
            let v = next()
            if v < limit { return Int(v % b) }
        }
    }

    /// Fisher–Yates shuffle with this generator.
    public mutating func shuffle<T>(_ a: inout [T]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = int(below: i + 1)
            if i != j { a.swapAt(i, j) }
        }
    }
}

/// torchvision's `ColorJitter` on uint8 RGB: brightness, contrast and saturation factors uniform in
/// [max(0, 1 − v), 1 + v], hue shift uniform in [−hue, hue], applied in a random order; the uint8
/// arithmetic follows torchvision's tensor functions (blend, clamp to 0…255, truncate to uint8;
/// grey = 0.2989 R + 0.587 G + 0.114 B truncated; hue through HSV in float).
public struct ColorJitter: Codable, Equatable, Sendable {
    public var brightness: Double
    public var contrast: Double
    public var saturation: Double
    public var hue: Double

    public init(brightness: Double = 0.25, contrast: Double = 0.25, saturation: Double = 0.25, hue: Double = 0.1) {
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
    }

    public func apply(_ image: inout Image, rng: inout SplitMix64) throws {
        guard image.channels == 3 else {
            throw SegFormerError.invalid("colour jitter needs an RGB image, got \(image.channels) channels")
        }
        // Order: a random permutation of the four (as torch.randperm(4)); then the four factors.
        var order = [0, 1, 2, 3]
        rng.shuffle(&order)
        let b = rng.uniform(max(0, 1 - brightness), 1 + brightness)
        let c = rng.uniform(max(0, 1 - contrast), 1 + contrast)
        let s = rng.uniform(max(0, 1 - saturation), 1 + saturation)
        let h = rng.uniform(-hue, hue)
        for op in order {
            switch op {
            case 0 where brightness > 0: ColorJitter.blend(&image, factor: b, with: .zero)
            case 1 where contrast > 0: ColorJitter.blend(&image, factor: c, with: .mean)
            case 2 where saturation > 0: ColorJitter.blend(&image, factor: s, with: .grey)
            case 3 where hue > 0: ColorJitter.shiftHue(&image, by: h)
            default: break
            }
        }
    }

    /// torchvision's rgb_to_grayscale on uint8: 0.2989 R + 0.587 G + 0.114 B in float32, truncated.
    @inline(__always)
    static func grey(_ p: UnsafeMutableBufferPointer<UInt8>, _ i: Int) -> Float {
        let v = 0.2989 * Float(p[3 * i]) + 0.587 * Float(p[3 * i + 1]) + 0.114 * Float(p[3 * i + 2])
        return Float(UInt8(min(255, max(0, v))))
    }

    enum BlendTarget { case zero, mean, grey }

    /// torchvision's `_blend` on uint8: x ← trunc(clamp(f·x + (1 − f)·other, 0, 255)), where other is 0
    /// (brightness), the mean of the truncated grey image (contrast) or the pixel's truncated grey (saturation).
    static func blend(_ image: inout Image, factor: Double, with target: BlendTarget) {
        let f = Float(factor), g = Float(1 - factor)
        let n = image.width * image.height
        image.pixels.withUnsafeMutableBufferPointer { p in
            if target == .grey {
                for i in 0..<n {
                    let o = g * grey(p, i)
                    for ch in 0..<3 {
                        let v = f * Float(p[3 * i + ch]) + o
                        p[3 * i + ch] = UInt8(min(255, max(0, v)))
                    }
                }
                return
            }
            // Brightness and contrast blend every sample with one constant: a function of the sample's
            // value alone, so a 256-entry table of the same float expression gives the same bytes.
            var constant: Float = 0
            if target == .mean {
                var sum = 0.0
                for i in 0..<n { sum += Double(grey(p, i)) }
                constant = Float(sum / Double(max(1, n)))
            }
            let o = g * constant
            let table = (0..<256).map { x in UInt8(min(255, max(0, f * Float(x) + o))) }
            table.withUnsafeBufferPointer { t in
                for i in 0..<3 * n { p[i] = t[Int(p[i])] }
            }
        }
    }

    /// torchvision's `adjust_hue`: RGB → HSV in float, hue shifted (modulo 1), back to RGB, truncated to
    /// uint8. Eight pixels at a time (`shiftedHue`); the last group's missing lanes are computed on zeros
    /// and dropped.
    static func shiftHue(_ image: inout Image, by shift: Double) {
        let hs = Float(shift)
        let n = image.width * image.height
        image.pixels.withUnsafeMutableBufferPointer { p in
            var i = 0
            while i < n {
                let lanes = min(8, n - i)
                var r = SIMD8<Float>(), g = r, b = r
                for l in 0..<lanes {
                    r[l] = Float(p[3 * (i + l)]); g[l] = Float(p[3 * (i + l) + 1]); b[l] = Float(p[3 * (i + l) + 2])
                }
                let (ro, go, bo) = shiftedHue(r / 255, g / 255, b / 255, by: hs)
                let (rb, gb, bb) = (eightBits(ro), eightBits(go), eightBits(bo))
                for l in 0..<lanes {
                    p[3 * (i + l)] = UInt8(rb[l]); p[3 * (i + l) + 1] = UInt8(gb[l]); p[3 * (i + l) + 2] = UInt8(bb[l])
                }
                i += lanes
            }
        }
    }

    /// A value in 0…1 as torchvision's uint8 conversion: × 255 and clamped here, truncated by `UInt8(_:)`.
    @inline(__always)
    static func eightBits(_ x: SIMD8<Float>) -> SIMD8<Float> {
        lanewiseMin(SIMD8(repeating: 255), lanewiseMax(SIMD8(repeating: 0), x * 255))
    }

    // The standard library's pointwiseMin/Max (and SIMD8<Int32>(_:rounding:)) are generic lane loops
    // that are not inlined: they made this code slower than the scalar one. A compare and a select are
    // vector instructions; for the values here (no NaN, no −0) they give the same lanes.
    @inline(__always)
    static func lanewiseMax(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a.replacing(with: b, where: a .< b) }
    @inline(__always)
    static func lanewiseMin(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a.replacing(with: b, where: b .< a) }

    /// torchvision's `_rgb2hsv`, hue shift and `_hsv2rgb` on RGB values in 0…1, lane by lane in the same
    /// float operations as its element-wise tensor code.
    @inline(__always)
    static func shiftedHue(_ r: SIMD8<Float>, _ g: SIMD8<Float>, _ b: SIMD8<Float>,
                           by shift: Float) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        let zero = SIMD8<Float>(repeating: 0), one = SIMD8<Float>(repeating: 1)
        let maxc = lanewiseMax(lanewiseMax(r, g), b), minc = lanewiseMin(lanewiseMin(r, g), b)
        let grey = maxc .== minc
        let cr = maxc - minc
        let s = cr / one.replacing(with: maxc, where: .!grey)
        let d = cr.replacing(with: 1, where: grey)
        let rc = (maxc - r) / d, gc = (maxc - g) / d, bc = (maxc - b) / d
        // The first true of: max is red, max is green, else (blue).
        var h = 4 + gc - rc
        h.replace(with: 2 + rc - bc, where: maxc .== g)
        h.replace(with: bc - gc, where: maxc .== r)
        // fmod(h / 6 + 1, 1): the argument lies in [5/6, 11/6], where x − ⌊x⌋ is that remainder exactly.
        h = h / 6 + 1
        h = h - h.rounded(.down)
        h = h + shift
        h = h - h.rounded(.down)      // Python-style remainder into [0, 1] (1 when h is a hair below 0)
        let v = maxc
        let i6f = (h * 6).rounded(.down)
        let fr = h * 6 - i6f
        let p = lanewiseMin(one, lanewiseMax(zero, v * (1 - s)))
        let q = lanewiseMin(one, lanewiseMax(zero, v * (1 - s * fr)))
        let t = lanewiseMin(one, lanewiseMax(zero, v * (1 - s * (1 - fr))))
        let k = i6f.replacing(with: i6f - 6, where: i6f .>= 6)   // ⌊6h⌋ mod 6
        // Sector k: (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q).
        var ro = v, go = p, bo = q    // k = 5
        ro.replace(with: t, where: k .== 4); go.replace(with: p, where: k .== 4); bo.replace(with: v, where: k .== 4)
        ro.replace(with: p, where: k .== 3); go.replace(with: q, where: k .== 3); bo.replace(with: v, where: k .== 3)
        ro.replace(with: p, where: k .== 2); go.replace(with: v, where: k .== 2); bo.replace(with: t, where: k .== 2)
        ro.replace(with: q, where: k .== 1); go.replace(with: v, where: k .== 1); bo.replace(with: p, where: k .== 1)
        ro.replace(with: v, where: k .== 0); go.replace(with: t, where: k .== 0); bo.replace(with: p, where: k .== 0)
        return (ro, go, bo)
    }
}

/// The training augmentation of the SegFormer ADE20K recipe (MMSegmentation's pipeline), applied on the
/// fly with an explicit RNG so a seed reproduces it exactly:
/// 1. random resize: ratio r uniform in `ratioRange`, target scale (⌊long·r⌋, ⌊short·r⌋), keep aspect
///    (scale factor min(long'/max(h,w), short'/min(h,w)), size ⌊w·f + 0.5⌋ × ⌊h·f + 0.5⌋); the image
///    with PIL bilinear, the label nearest;
/// 2. random crop to `cropHeight`×`cropWidth` (smaller images keep their size), retried up to 10 times
///    while one class covers ≥ `catMaxRatio` of the crop's non-ignored pixels (as mmseg: accepted when
///    more than one class is present and the largest has ratio < catMaxRatio; else the last crop is kept);
/// 3. horizontal flip with probability `flipProbability`;
/// 4. photometric distortion (`ColorJitter`, torchvision semantics), image only;
/// 5. pad bottom/right to the crop size, image with 0, label with `ignoreIndex`.
/// Labels stay aligned with the image: every geometric step is applied to both (nearest for labels).
public struct SegmentationAugmentation: Codable, Equatable, Sendable {
    public var scaleLong: Int = 2048
    public var scaleShort: Int = 512
    public var ratioRange: ClosedRange<Double>? = 0.5...2.0
    public var cropHeight: Int = 512
    public var cropWidth: Int = 512
    public var catMaxRatio: Double = 0.75
    public var flipProbability: Double = 0.5
    public var colorJitter: ColorJitter? = ColorJitter()
    public var ignoreIndex: UInt8 = 255

    public init() {}

    /// The recipe with a given crop size and resize scale.
    public init(cropSize: Int, scale: (long: Int, short: Int) = (2048, 512), ratioRange: ClosedRange<Double>? = 0.5...2.0,
                catMaxRatio: Double = 0.75, flipProbability: Double = 0.5, colorJitter: ColorJitter? = ColorJitter()) {
        self.cropHeight = cropSize
        self.cropWidth = cropSize
        self.scaleLong = scale.long
        self.scaleShort = scale.short
        self.ratioRange = ratioRange
        self.catMaxRatio = catMaxRatio
        self.flipProbability = flipProbability
        self.colorJitter = colorJitter
    }

    func validate() throws {
        guard cropHeight > 0, cropWidth > 0, cropHeight <= 16384, cropWidth <= 16384 else {
            throw SegFormerError.invalid("augmentation: crop size \(cropHeight)x\(cropWidth) must be in 1…16384")
        }
        if let r = ratioRange {
            guard r.lowerBound > 0, r.upperBound <= 16, scaleLong > 0, scaleShort > 0,
                  Double(max(scaleLong, scaleShort)) * r.upperBound <= 65536 else {
                throw SegFormerError.invalid("augmentation: resize scale (\(scaleLong), \(scaleShort)) with ratio \(r) is out of range")
            }
        }
        guard (0...1).contains(flipProbability) else {
            throw SegFormerError.invalid("augmentation: flip probability \(flipProbability) must be in 0…1")
        }
        // An image and its label (4 bytes a pixel) at the crop size, and at the largest random resize.
        try MemoryBudget.require(Tensor.checkedByteCount([cropHeight, cropWidth, 4], .uint8),
                                 for: "augmentation: a \(cropHeight)×\(cropWidth) crop")
        if let r = ratioRange {
            let long = Int(Double(scaleLong) * r.upperBound), short = Int(Double(scaleShort) * r.upperBound)
            try MemoryBudget.require(Tensor.checkedByteCount([long, short, 4], .uint8), for: "augmentation: a \(long)×\(short) random resize")
        }
    }

    /// Applies the augmentation to an RGB image and its single-channel label (same size).
    public func apply(image: Image, label: Image, rng: inout SplitMix64) throws -> (image: Image, label: Image) {
        try validate()
        guard image.channels == 3, label.channels == 1, image.width == label.width, image.height == label.height,
              image.width > 0, image.height > 0 else {
            throw SegFormerError.invalid("augmentation: need an RGB image and a 1-channel label of the same size, got \(image.width)x\(image.height)x\(image.channels) and \(label.width)x\(label.height)x\(label.channels)")
        }
        // 1. Random resize: the size is drawn and the label resized (nearest, cheap) here; the image is
        //    resized in step 2, only inside the crop. Same bytes as resizing it whole first: the crop box
        //    is chosen from the RNG and the label alone, the image's resize draws nothing, and a crop of
        //    the resize equals the resize of that region (`PILResample.resize(_:width:height:filter:keeping:)`).
        var size = (width: image.width, height: image.height)
        if let r = ratioRange {
            let ratio = rng.uniform(r.lowerBound, r.upperBound)
            let long = Double(Int(Double(scaleLong) * ratio)), short = Double(Int(Double(scaleShort) * ratio))
            let (w, h) = (Double(image.width), Double(image.height))
            let f = min(max(long, short) / max(w, h), min(long, short) / min(w, h))
            size = (max(1, Int(w * f + 0.5)), max(1, Int(h * f + 0.5)))
        }
        var lab = try label.resized(width: size.width, height: size.height, filter: .nearest)
        // 2. Random crop with cat_max_ratio.
        var box = randomBox(width: size.width, height: size.height, rng: &rng)
        if catMaxRatio < 1 {
            for _ in 0..<10 {
                if classRatioAcceptable(lab, box) { break }
                box = randomBox(width: size.width, height: size.height, rng: &rng)
            }
        }
        var img = try PILResample.resize(image, width: size.width, height: size.height, filter: .bilinear, keeping: box)
        lab = lab.cropped(columns: box.x ..< box.x + box.width, rows: box.y ..< box.y + box.height)
        // 3. Flip.
        if flipProbability > 0, rng.nextDouble() < flipProbability {
            img = SegmentationAugmentation.flipped(img)
            lab = SegmentationAugmentation.flipped(lab)
        }
        // 4. Photometric distortion (on the crop, as the recipe orders it: the contrast blend's mean is
        //    the crop's).
        if let jitter = colorJitter { try jitter.apply(&img, rng: &rng) }
        // 5. Pad.
        img = SegmentationAugmentation.padded(img, width: cropWidth, height: cropHeight, value: 0)
        lab = SegmentationAugmentation.padded(lab, width: cropWidth, height: cropHeight, value: ignoreIndex)
        return (img, lab)
    }

    typealias Box = (x: Int, y: Int, width: Int, height: Int)

    func randomBox(width: Int, height: Int, rng: inout SplitMix64) -> Box {
        let mh = max(height - cropHeight, 0), mw = max(width - cropWidth, 0)
        let oy = rng.int(below: mh + 1), ox = rng.int(below: mw + 1)
        return (ox, oy, min(cropWidth, width), min(cropHeight, height))
    }

    /// mmseg: more than one (non-ignored) class and the largest covers < catMaxRatio of them.
    func classRatioAcceptable(_ label: Image, _ b: Box) -> Bool {
        var counts = [Int](repeating: 0, count: 256)
        label.pixels.withUnsafeBufferPointer { p in
            for y in b.y..<(b.y + b.height) {
                let row = y * label.width
                for x in b.x..<(b.x + b.width) { counts[Int(p[row + x])] += 1 }
            }
        }
        counts[Int(ignoreIndex)] = 0
        let present = counts.filter { $0 > 0 }
        let total = present.reduce(0, +)
        guard present.count > 1, total > 0 else { return false }
        return Double(present.max()!) / Double(total) < catMaxRatio
    }

    static func flipped(_ image: Image) -> Image {
        var out = image
        let c = image.channels, w = image.width
        image.pixels.withUnsafeBufferPointer { p in
            out.pixels.withUnsafeMutableBufferPointer { o in
                for y in 0..<image.height {
                    let row = y * w * c
                    for x in 0..<w {
                        for ch in 0..<c { o[row + x * c + ch] = p[row + (w - 1 - x) * c + ch] }
                    }
                }
            }
        }
        return out
    }

    static func padded(_ image: Image, width: Int, height: Int, value: UInt8) -> Image {
        if image.width >= width, image.height >= height { return image }
        let c = image.channels
        let nw = max(width, image.width), nh = max(height, image.height)
        var out = [UInt8](repeating: value, count: nw * nh * c)
        image.pixels.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                for y in 0..<image.height {
                    (o.baseAddress! + y * nw * c).update(from: p.baseAddress! + y * image.width * c, count: image.width * c)
                }
            }
        }
        return Image(width: nw, height: nh, channels: c, pixels: out)
    }
}
