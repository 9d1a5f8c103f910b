import XCTest
import GraphIR
@testable import SegmentationData

/// The augmentation and the image processor are computed in a cheaper order than the recipe states
/// (the image resized only inside the crop; tables instead of per-sample float arithmetic). These tests
/// hold them byte for byte to the straightforward order, kept here as the reference: the whole image
/// resized (`PILResample.resize`, checked against PIL by ImageTests), cropped, flipped, jittered with
/// per-sample float arithmetic (torchvision's), padded; then rescaled and normalised per sample.
final class AugmentationEquivalenceTests: XCTestCase {
    /// A picture with edges and gradients in every channel (so resampling windows see varied values),
    /// and a label of a few classes in irregular regions.
    static func scene(width: Int, height: Int, seed: UInt64) -> (Image, Image) {
        var rng = SplitMix64(seed: seed)
        var img = [UInt8](repeating: 0, count: width * height * 3), lab = [UInt8](repeating: 0, count: width * height)
        let cx = rng.int(below: width), cy = rng.int(below: height)
        for y in 0..<height {
            for x in 0..<width {
                let i = y * width + x
                img[3 * i] = UInt8(truncatingIfNeeded: x * 7 + y)
                img[3 * i + 1] = UInt8(truncatingIfNeeded: (x - cx) * (y - cy) / 3)
                img[3 * i + 2] = UInt8(truncatingIfNeeded: rng.int(below: 256))
                lab[i] = rng.int(below: 50) == 0 ? 255 : UInt8(1 + ((x / 5 + y / 7) % 4))
            }
        }
        return (Image(width: width, height: height, channels: 3, pixels: img), Image(width: width, height: height, channels: 1, pixels: lab))
    }

    // MARK: the reference order

    static func referenceCrop(_ image: Image, _ b: SegmentationAugmentation.Box) -> Image {
        var out: [UInt8] = []
        for y in b.y..<(b.y + b.height) {
            for x in b.x..<(b.x + b.width) {
                for c in 0..<image.channels { out.append(image.pixels[(y * image.width + x) * image.channels + c]) }
            }
        }
        return Image(width: b.width, height: b.height, channels: image.channels, pixels: out)
    }

    /// torchvision's `_blend` on uint8, sample by sample (the code before the lookup tables).
    static func referenceBlend(_ image: inout Image, factor: Double, with target: ColorJitter.BlendTarget) {
        let f = Float(factor), g = Float(1 - factor)
        let n = image.width * image.height
        image.pixels.withUnsafeMutableBufferPointer { p in
            var constant: Float = 0
            if target == .mean {
                var sum = 0.0
                for i in 0..<n { sum += Double(ColorJitter.grey(p, i)) }
                constant = Float(sum / Double(max(1, n)))
            }
            for i in 0..<n {
                let o = g * (target == .grey ? ColorJitter.grey(p, i) : constant)
                for ch in 0..<3 {
                    let v = f * Float(p[3 * i + ch]) + o
                    p[3 * i + ch] = UInt8(min(255, max(0, v)))
                }
            }
        }
    }

    /// torchvision's `adjust_hue` on uint8, pixel by pixel (the code before the SIMD version).
    static func referenceShiftHue(_ image: inout Image, by shift: Double) {
        let hs = Float(shift)
        let n = image.width * image.height
        image.pixels.withUnsafeMutableBufferPointer { p in
            for i in 0..<n {
                let r = Float(p[3 * i]) / 255, g = Float(p[3 * i + 1]) / 255, b = Float(p[3 * i + 2]) / 255
                let maxc = max(r, g, b), minc = min(r, g, b)
                let eq = maxc == minc
                let cr = maxc - minc
                let s = cr / (eq ? 1 : maxc)
                let d = eq ? 1 : cr
                let rc = (maxc - r) / d, gc = (maxc - g) / d, bc = (maxc - b) / d
                var h: Float
                if maxc == r { h = bc - gc } else if maxc == g { h = 2 + rc - bc } else { h = 4 + gc - rc }
                h = fmodf(h / 6 + 1, 1)
                h = h + hs
                h = h - floorf(h)     // Python-style remainder into [0, 1)
                let v = maxc
                let i6f = floorf(h * 6)
                let fr = h * 6 - i6f
                let pp = min(1, max(0, v * (1 - s)))
                let q = min(1, max(0, v * (1 - s * fr)))
                let t = min(1, max(0, v * (1 - s * (1 - fr))))
                var k = Int(i6f) % 6
                if k < 0 { k += 6 }
                let (ro, go, bo): (Float, Float, Float)
                switch k {
                case 0: (ro, go, bo) = (v, t, pp)
                case 1: (ro, go, bo) = (q, v, pp)
                case 2: (ro, go, bo) = (pp, v, t)
                case 3: (ro, go, bo) = (pp, q, v)
                case 4: (ro, go, bo) = (t, pp, v)
                default: (ro, go, bo) = (v, pp, q)
                }
                p[3 * i] = UInt8(min(255, max(0, ro * 255)))
                p[3 * i + 1] = UInt8(min(255, max(0, go * 255)))
                p[3 * i + 2] = UInt8(min(255, max(0, bo * 255)))
            }
        }
    }

    static func referenceJitter(_ jitter: ColorJitter, _ image: inout Image, rng: inout SplitMix64) {
        var order = [0, 1, 2, 3]
        rng.shuffle(&order)
        let b = rng.uniform(max(0, 1 - jitter.brightness), 1 + jitter.brightness)
        let c = rng.uniform(max(0, 1 - jitter.contrast), 1 + jitter.contrast)
        let s = rng.uniform(max(0, 1 - jitter.saturation), 1 + jitter.saturation)
        let h = rng.uniform(-jitter.hue, jitter.hue)
        for op in order {
            switch op {
            case 0 where jitter.brightness > 0: referenceBlend(&image, factor: b, with: .zero)
            case 1 where jitter.contrast > 0: referenceBlend(&image, factor: c, with: .mean)
            case 2 where jitter.saturation > 0: referenceBlend(&image, factor: s, with: .grey)
            case 3 where jitter.hue > 0: referenceShiftHue(&image, by: h)
            default: break
            }
        }
    }

    /// The recipe in its stated order: resize the whole image and label, crop, flip, jitter, pad.
    static func reference(_ a: SegmentationAugmentation, image: Image, label: Image, rng: inout SplitMix64) throws -> (Image, Image) {
        var img = image, lab = label
        if let r = a.ratioRange {
            let ratio = rng.uniform(r.lowerBound, r.upperBound)
            let long = Double(Int(Double(a.scaleLong) * ratio)), short = Double(Int(Double(a.scaleShort) * ratio))
            let (w, h) = (Double(img.width), Double(img.height))
            let f = min(max(long, short) / max(w, h), min(long, short) / min(w, h))
            let nw = max(1, Int(w * f + 0.5)), nh = max(1, Int(h * f + 0.5))
            img = try img.resized(width: nw, height: nh, filter: .bilinear)
            lab = try lab.resized(width: nw, height: nh, filter: .nearest)
        }
        var box = a.randomBox(width: img.width, height: img.height, rng: &rng)
        if a.catMaxRatio < 1 {
            for _ in 0..<10 {
                if a.classRatioAcceptable(lab, box) { break }
                box = a.randomBox(width: img.width, height: img.height, rng: &rng)
            }
        }
        img = referenceCrop(img, box)
        lab = referenceCrop(lab, box)
        if a.flipProbability > 0, rng.nextDouble() < a.flipProbability {
            img = SegmentationAugmentation.flipped(img)
            lab = SegmentationAugmentation.flipped(lab)
        }
        if let jitter = a.colorJitter { referenceJitter(jitter, &img, rng: &rng) }
        img = SegmentationAugmentation.padded(img, width: a.cropWidth, height: a.cropHeight, value: 0)
        lab = SegmentationAugmentation.padded(lab, width: a.cropWidth, height: a.cropHeight, value: a.ignoreIndex)
        return (img, lab)
    }

    // MARK: tests

    /// Several image sizes (wide, tall, smaller than the crop), scales that shrink and enlarge them
    /// (both pass orders of the bilinear resize), crops at the borders, padding and flips: the same bytes
    /// and the same RNG state afterwards.
    func testAugmentationMatchesTheReferenceOrder() throws {
        let cases: [(w: Int, h: Int, crop: Int, scale: (Int, Int), ratio: ClosedRange<Double>?, catMax: Double)] = [
            (61, 45, 32, (128, 32), 0.5...2.0, 0.75),   // ADE-like aspect, shrink and enlarge
            (40, 200, 32, (64, 24), 0.5...2.0, 0.75),   // tall, shrunk a lot: vertical pass first
            (23, 17, 32, (40, 16), 0.5...2.0, 1),       // smaller than the crop: padding
            (50, 30, 24, (50, 30), 1.0...1.0, 0.75),    // scale equal to the size: no resize
            (37, 29, 16, (64, 48), nil, 0.75),          // no random resize
        ]
        var flips = Set<Bool>(), padded = false, atBorder = false
        for c in cases {
            let (image, label) = Self.scene(width: c.w, height: c.h, seed: UInt64(c.w * c.h))
            let a = SegmentationAugmentation(cropSize: c.crop, scale: c.scale, ratioRange: c.ratio, catMaxRatio: c.catMax)
            for seed in 0..<12 as Range<UInt64> {
                var r1 = SplitMix64(seed: seed), r2 = SplitMix64(seed: seed)
                let fast = try a.apply(image: image, label: label, rng: &r1)
                let slow = try Self.reference(a, image: image, label: label, rng: &r2)
                XCTAssertEqual(fast.image, slow.0, "image, case \(c.w)x\(c.h) seed \(seed)")
                XCTAssertEqual(fast.label, slow.1, "label, case \(c.w)x\(c.h) seed \(seed)")
                XCTAssertEqual(r1, r2, "RNG after case \(c.w)x\(c.h) seed \(seed)")
                // Replaying the draws tells whether this crop touched a border and whether it flipped.
                var r = SplitMix64(seed: seed)
                var size = (c.w, c.h)
                if let ratio = c.ratio {
                    let rr = r.uniform(ratio.lowerBound, ratio.upperBound)
                    let long = Double(Int(Double(c.scale.0) * rr)), short = Double(Int(Double(c.scale.1) * rr))
                    let f = min(max(long, short) / Double(max(c.w, c.h)), min(long, short) / Double(min(c.w, c.h)))
                    size = (max(1, Int(Double(c.w) * f + 0.5)), max(1, Int(Double(c.h) * f + 0.5)))
                }
                padded = padded || size.0 < c.crop || size.1 < c.crop
                let box = a.randomBox(width: size.0, height: size.1, rng: &r)
                atBorder = atBorder || (box.x > 0 && box.x + box.width == size.0)
                if c.catMax == 1 { flips.insert(r.nextDouble() < a.flipProbability) }
            }
        }
        XCTAssertEqual(flips, [true, false], "the seeds cover flipped and unflipped crops")
        XCTAssertTrue(padded, "some crop was padded")
        XCTAssertTrue(atBorder, "some crop touched the right border")
    }

    /// Any part of a resize, every filter, enlarging and shrinking each axis (both pass orders): the
    /// part computed alone equals the whole resize cropped.
    func testResizeOfARegionIsTheCropOfTheWholeResize() throws {
        let (image, _) = Self.scene(width: 29, height: 41, seed: 3)
        var rng = SplitMix64(seed: 5)
        for filter in PILResample.allCases {
            for (w, h) in [(60, 80), (12, 9), (29, 13), (50, 41), (7, 60), (29, 41)] {
                let whole = try image.resized(width: w, height: h, filter: filter)
                for _ in 0..<6 {
                    let x = rng.int(below: w), y = rng.int(below: h)
                    let region = (x: x, y: y, width: 1 + rng.int(below: w - x), height: 1 + rng.int(below: h - y))
                    let part = try PILResample.resize(image, width: w, height: h, filter: filter, keeping: region)
                    XCTAssertEqual(part, Self.referenceCrop(whole, region), "\(filter) to \(w)x\(h), region \(region)")
                }
            }
        }
        XCTAssertThrowsError(try PILResample.resize(image, width: 10, height: 10, filter: .bilinear, keeping: (5, 5, 6, 1)))
    }

    /// The hue shift eight pixels at a time equals torchvision's pixel-by-pixel arithmetic: random colours,
    /// greys, pure and saturated colours, at shifts that wrap the hue both ways (a pixel count that leaves
    /// a partial group).
    func testHueShiftMatchesPerPixelArithmetic() {
        var rng = SplitMix64(seed: 17)
        var pixels = (0..<3 * 20_003).map { _ in UInt8(rng.int(below: 256)) }
        for v in [0, 1, 127, 254, 255] as [UInt8] { pixels += [v, v, v, v, 0, 0, 0, v, 0, 0, 0, v, v, v, 0, 255, v, 0] }
        let image = Image(width: pixels.count / 3, height: 1, channels: 3, pixels: pixels)
        for shift in [0, 0.1, -0.1, 0.0731, -0.0999, 0.5, -0.5, 1e-7, -1e-7] {
            var fast = image, slow = image
            ColorJitter.shiftHue(&fast, by: shift)
            Self.referenceShiftHue(&slow, by: shift)
            XCTAssertEqual(fast, slow, "shift \(shift)")
        }
    }

    /// The processor's table lookup equals HF's arithmetic sample by sample, for the default and for
    /// other rescale / mean / std settings.
    func testNormalisationMatchesPerSampleArithmetic() throws {
        let (image, _) = Self.scene(width: 19, height: 11, seed: 9)
        let processors = [
            SegformerImageProcessor(doResize: false),
            SegformerImageProcessor(doResize: false, rescaleFactor: 0.5, imageMean: [10, 20, 30], imageStd: [3, 0.7, 9]),
            SegformerImageProcessor(doResize: false, doRescale: false),
            SegformerImageProcessor(doResize: false, doNormalize: false),
        ]
        for p in processors {
            let values = try p.preprocess(images: [image]).pixelValues.toArray(Float.self)
            let plane = image.width * image.height
            for c in 0..<3 {
                for i in 0..<plane {
                    let sample = image.pixels[i * 3 + c]
                    var v = Float(sample)
                    if p.doRescale { v = Float(Double(sample) * p.rescaleFactor) }
                    if p.doNormalize { v = (v - Float(p.imageMean[c])) / Float(p.imageStd[c]) }
                    XCTAssertEqual(values[c * plane + i].bitPattern, v.bitPattern, "channel \(c) sample \(i)")
                }
            }
        }
    }
}
