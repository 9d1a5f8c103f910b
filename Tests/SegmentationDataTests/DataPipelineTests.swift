import Foundation
import XCTest
import GraphIR
import Runtime
@testable import SegmentationData
import Training
import TestSupport

/// Tiny datasets written into a temporary folder by the tests themselves.
private final class TempData {
    let root: String
    init() throws {
        root = NSTemporaryDirectory() + "/segformer-data-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: root) }

    func mkdir(_ rel: String) throws -> String {
        let p = root + "/" + rel
        try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    /// The class of pixel (x, y) in the synthetic pictures: 4×4 blocks, classes 1…5.
    static func classAt(_ x: Int, _ y: Int, seed: Int) -> UInt8 { UInt8(1 + (x / 4 + 2 * (y / 4) + seed) % 5) }

    /// An image whose blue channel is 40 × class and red/green encode x/y, and its label (the class).
    static func pair(width: Int, height: Int, seed: Int) -> (Image, Image) {
        var img = [UInt8](repeating: 0, count: width * height * 3)
        var lab = [UInt8](repeating: 0, count: width * height)
        for y in 0..<height {
            for x in 0..<width {
                let c = classAt(x, y, seed: seed)
                let i = y * width + x
                img[3 * i] = UInt8(x % 256); img[3 * i + 1] = UInt8(y % 256); img[3 * i + 2] = 40 * c
                lab[i] = c
            }
        }
        return (Image(width: width, height: height, channels: 3, pixels: img),
                Image(width: width, height: height, channels: 1, pixels: lab))
    }

    /// ADE layout with `n` samples of the given size in `split`.
    func ade(split: String = "training", n: Int, width: Int = 24, height: Int = 20) throws -> String {
        let images = try mkdir("ade/images/\(split)"), masks = try mkdir("ade/annotations/\(split)")
        for k in 0..<n {
            let (img, lab) = TempData.pair(width: width + k, height: height, seed: k)
            try img.writePNG(to: images + "/ADE_\(split)_\(String(format: "%08d", k + 1)).jpg") // PNG bytes; decoded by content
            try lab.writePNG(to: masks + "/ADE_\(split)_\(String(format: "%08d", k + 1)).png")
        }
        return root + "/ade"
    }
}

private func ints(_ t: Tensor) -> [Int] { (try? t.integers()) ?? [] }

final class DataPipelineTests: XCTestCase {
    // MARK: dataset

    func testADELayoutDiscovery() throws {
        let t = try TempData()
        let root = try t.ade(n: 3)
        let ds = try SegmentationDataset(adeRoot: root, split: .training)
        XCTAssertEqual(ds.count, 3)
        XCTAssertEqual(ds.samples.map(\.stem), ["ADE_training_00000001", "ADE_training_00000002", "ADE_training_00000003"])
        XCTAssertTrue(ds.samples[0].imagePath.hasSuffix("images/training/ADE_training_00000001.jpg"))
        XCTAssertTrue(ds.samples[0].labelPath.hasSuffix("annotations/training/ADE_training_00000001.png"))
        let (img, lab) = try ds.load(1)
        XCTAssertEqual(img.channels, 3); XCTAssertEqual(lab.channels, 1)
        XCTAssertEqual(img.width, 25); XCTAssertEqual(lab.width, 25)
        XCTAssertEqual(lab[5, 0, 0], TempData.classAt(5, 0, seed: 1))
        // The validation split is absent: a clear error naming the folder.
        XCTAssertThrowsError(try SegmentationDataset(adeRoot: root, split: .validation)) { e in
            XCTAssertTrue("\(e)".contains("images/validation"), "\(e)")
        }
    }

    func testGenericLayoutAndUnmatchedFiles() throws {
        let t = try TempData()
        let images = try t.mkdir("imgs"), masks = try t.mkdir("masks")
        let (img, lab) = TempData.pair(width: 8, height: 8, seed: 0)
        try img.writePNG(to: images + "/b.png"); try lab.writePNG(to: masks + "/b.png")
        try img.writePNG(to: images + "/a.jpeg"); try lab.writePNG(to: masks + "/a.png")
        try Data("notes".utf8).write(to: URL(fileURLWithPath: images + "/README.txt"))
        let ds = try SegmentationDataset(imagesDirectory: images, masksDirectory: masks, numLabels: 6)
        XCTAssertEqual(ds.samples.map(\.stem), ["a", "b"])
        // An image without a mask.
        try img.writePNG(to: images + "/c.jpg")
        XCTAssertThrowsError(try SegmentationDataset(imagesDirectory: images, masksDirectory: masks)) { e in
            XCTAssertTrue("\(e)".contains("c.jpg") && "\(e)".contains("no mask"), "\(e)")
        }
        // Skipped with skipBadSamples.
        XCTAssertEqual(try SegmentationDataset(imagesDirectory: images, masksDirectory: masks, skipBadSamples: true).count, 2)
        try FileManager.default.removeItem(atPath: images + "/c.jpg")
        // A mask without an image.
        try lab.writePNG(to: masks + "/d.png")
        XCTAssertThrowsError(try SegmentationDataset(imagesDirectory: images, masksDirectory: masks)) { e in
            XCTAssertTrue("\(e)".contains("d.png") && "\(e)".contains("no image"), "\(e)")
        }
        // An empty folder pair.
        let e1 = try t.mkdir("e1"), e2 = try t.mkdir("e2")
        XCTAssertThrowsError(try SegmentationDataset(imagesDirectory: e1, masksDirectory: e2))
        // A missing folder.
        XCTAssertThrowsError(try SegmentationDataset(imagesDirectory: t.root + "/nope", masksDirectory: e2)) { e in
            XCTAssertTrue("\(e)".contains("nope"), "\(e)")
        }
    }

    func testBadLabelsAndSizeMismatch() throws {
        let t = try TempData()
        let root = try t.ade(n: 3)
        // Sample 2 gets a label value 200 (outside 0…150 and not 255).
        let maskPath = root + "/annotations/training/ADE_training_00000002.png"
        var bad = try Image(labelsAt: maskPath)
        bad[3, 4, 0] = 200
        try bad.writePNG(to: maskPath)
        let ds = try SegmentationDataset(adeRoot: root, split: .training)
        XCTAssertNoThrow(try ds.load(0))
        XCTAssertThrowsError(try ds.load(1)) { e in
            XCTAssertTrue("\(e)".contains("ADE_training_00000002.png") && "\(e)".contains("200"), "\(e)")
        }
        // 255 is allowed; a tighter numLabels rejects 5.
        let strict = try SegmentationDataset(adeRoot: root, split: .training, numLabels: 4)
        XCTAssertThrowsError(try strict.load(0))
        // The loader raises it, or skips it with skipBadSamples.
        let loader = try SegmentationDataLoader(dataset: ds, batchSize: 3, shuffle: false, processor: .init(height: 8, width: 8))
        XCTAssertThrowsError(try loader.next())
        let lenient = try SegmentationDataset(adeRoot: root, split: .training, skipBadSamples: true)
        let l2 = try SegmentationDataLoader(dataset: lenient, batchSize: 3, shuffle: false, processor: .init(height: 8, width: 8))
        let b = try XCTUnwrap(try l2.next())
        XCTAssertEqual(b.indices, [0, 2])
        XCTAssertEqual(b.pixelValues.shape, [2, 3, 8, 8])
        XCTAssertEqual(lenient.skipped.map(\.index), [1])
        XCTAssertNil(try l2.next())
        // Image and mask of different sizes.
        let (img, _) = TempData.pair(width: 9, height: 9, seed: 0)
        try img.writePNG(to: root + "/images/training/ADE_training_00000001.jpg")
        XCTAssertThrowsError(try ds.load(0)) { e in XCTAssertTrue("\(e)".contains("9x9"), "\(e)") }
    }

    func testLabelFiles() throws {
        let t = try TempData()
        let csv = t.root + "/objectInfo150.csv"
        try Data("Idx,Ratio,Train,Val,Stuff,Name\n1,0.1576,11664,1172,1,wall\n2,0.1072,6046,612,1,building;edifice\n3,0.0878,8265,796,1,sky\n".utf8)
            .write(to: URL(fileURLWithPath: csv))
        XCTAssertEqual(try SegmentationDataset.loadLabels(path: csv), [0: "wall", 1: "building", 2: "sky"])
        let txt = t.root + "/labels.txt"
        try Data("cat\ndog\r\nbird\n\n".utf8).write(to: URL(fileURLWithPath: txt))
        XCTAssertEqual(try SegmentationDataset.loadLabels(path: txt), [0: "cat", 1: "dog", 2: "bird"])
        let json = t.root + "/config.json"
        try Data(#"{"id2label": {"0": "road", "1": "car"}, "num_labels": 2}"#.utf8).write(to: URL(fileURLWithPath: json))
        XCTAssertEqual(try SegmentationDataset.loadLabels(path: json), [0: "road", 1: "car"])
        let root = try t.ade(n: 1)
        let ds = try SegmentationDataset(adeRoot: root, split: .training)
        try ds.loadLabels(path: json)
        XCTAssertEqual(ds.label2id, ["road": 0, "car": 1])
        XCTAssertThrowsError(try SegmentationDataset.loadLabels(path: t.root + "/missing.txt"))
    }

    // MARK: augmentation

    func testRNGStateResumes() {
        var a = SplitMix64(seed: 42)
        for _ in 0..<5 { _ = a.next() }
        var b = SplitMix64(seed: a.state)
        XCTAssertEqual((0..<10).map { _ in a.next() }, (0..<10).map { _ in b.next() })
        var c = SplitMix64(seed: 1)
        for _ in 0..<1000 { let v = c.int(below: 7); XCTAssertTrue((0..<7).contains(v)) }
        let d = SplitMix64.stream(seed: 9, index: 0), e = SplitMix64.stream(seed: 9, index: 1)
        XCTAssertNotEqual(d.state, e.state)
    }

    func testAugmentationIsDeterministicForASeed() throws {
        let (img, lab) = TempData.pair(width: 40, height: 30, seed: 0)
        let aug = SegmentationAugmentation(cropSize: 16, scale: (64, 24))
        var r1 = SplitMix64(seed: 7), r2 = SplitMix64(seed: 7), r3 = SplitMix64(seed: 8)
        let a = try aug.apply(image: img, label: lab, rng: &r1)
        let b = try aug.apply(image: img, label: lab, rng: &r2)
        XCTAssertEqual(a.image, b.image); XCTAssertEqual(a.label, b.label)
        XCTAssertEqual(r1, r2)
        XCTAssertEqual(a.image.width, 16); XCTAssertEqual(a.image.height, 16)
        XCTAssertEqual(a.label.width, 16); XCTAssertEqual(a.label.height, 16)
        var differs = false
        for s in 8..<16 {
            var r = SplitMix64(seed: UInt64(s))
            r3 = r
            if try aug.apply(image: img, label: lab, rng: &r).image != a.image { differs = true }
        }
        _ = r3
        XCTAssertTrue(differs)
    }

    /// Without resize or colour jitter the image's red/green channels hold the source x/y and its blue
    /// channel 40 × class: after crop + flip + pad every pixel must still match its label exactly.
    func testLabelsStayAlignedUnderCropFlipPad() throws {
        let (img, lab) = TempData.pair(width: 30, height: 12, seed: 3)
        var aug = SegmentationAugmentation(cropSize: 16, ratioRange: nil, catMaxRatio: 1, flipProbability: 0.5, colorJitter: nil)
        aug.cropHeight = 16; aug.cropWidth = 16
        var flips = Set<Bool>()
        for seed in 0..<20 {
            var rng = SplitMix64(seed: UInt64(seed))
            let (o, l) = try aug.apply(image: img, label: lab, rng: &rng)
            XCTAssertEqual(o.width, 16); XCTAssertEqual(o.height, 16)
            var xs: [Int] = []
            for y in 0..<16 {
                for x in 0..<16 {
                    if y >= 12 {   // padding rows
                        XCTAssertEqual(l[x, y, 0], 255)
                        XCTAssertEqual(o[x, y, 0], 0); XCTAssertEqual(o[x, y, 2], 0)
                        continue
                    }
                    let sx = Int(o[x, y, 0]), sy = Int(o[x, y, 1])
                    XCTAssertEqual(sy, y)
                    XCTAssertEqual(l[x, y, 0], TempData.classAt(sx, sy, seed: 3), "seed \(seed) at \(x),\(y)")
                    XCTAssertEqual(o[x, y, 2], 40 * l[x, y, 0])
                    if y == 0 { xs.append(sx) }
                }
            }
            // A contiguous window of source columns, reversed when flipped.
            let increasing = zip(xs, xs.dropFirst()).allSatisfy { $1 == $0 + 1 }
            let decreasing = zip(xs, xs.dropFirst()).allSatisfy { $1 == $0 - 1 }
            XCTAssertTrue(increasing || decreasing, "\(xs)")
            flips.insert(decreasing)
        }
        XCTAssertEqual(flips, [true, false], "both flipped and unflipped crops over 20 seeds")
    }

    /// With resize (bilinear image, nearest label) alignment holds except at block borders.
    func testLabelsStayAlignedUnderResize() throws {
        let (img, lab) = TempData.pair(width: 32, height: 24, seed: 1)
        let aug = SegmentationAugmentation(cropSize: 20, scale: (64, 48), ratioRange: 0.5...2.0, catMaxRatio: 1, colorJitter: nil)
        for seed in 0..<5 {
            var rng = SplitMix64(seed: UInt64(seed))
            let (o, l) = try aug.apply(image: img, label: lab, rng: &rng)
            var agree = 0, total = 0
            for i in 0..<(o.width * o.height) where l.pixels[i] != 255 {
                total += 1
                if abs(Int(o.pixels[3 * i + 2]) - 40 * Int(l.pixels[i])) <= 12 { agree += 1 }
            }
            XCTAssertGreaterThan(Double(agree) / Double(max(total, 1)), 0.6, "seed \(seed)")
        }
    }

    func testResizeScaleKeepsAspect() throws {
        // 40×30 with scale (64, 24) and ratio fixed at 1: factor min(64/40, 24/30) = 0.8 → 32×24.
        let (img, lab) = TempData.pair(width: 40, height: 30, seed: 0)
        let aug = SegmentationAugmentation(cropSize: 64, scale: (64, 24), ratioRange: 1.0...1.0, catMaxRatio: 1,
                                           flipProbability: 0, colorJitter: nil)
        var rng = SplitMix64(seed: 0)
        let (o, l) = try aug.apply(image: img, label: lab, rng: &rng)
        XCTAssertEqual(o.width, 64); XCTAssertEqual(o.height, 64)   // padded to the crop
        XCTAssertEqual(l[31, 23, 0] == 255, false)
        XCTAssertEqual(l[32, 0, 0], 255); XCTAssertEqual(l[0, 24, 0], 255)
        XCTAssertEqual(o[32, 0, 2], 0)
    }

    func testCatMaxRatio() throws {
        // Left half one class, right half a mix: crops with x offset ≥ 5 are acceptable (class 1 < 75 %).
        let w = 32, h = 16
        var labPx = [UInt8](repeating: 0, count: w * h)
        for y in 0..<h { for x in 0..<w { labPx[y * w + x] = x < 16 ? 1 : UInt8(2 + (x + y) % 2) } }
        let lab = Image(width: w, height: h, channels: 1, pixels: labPx)
        let img = Image(width: w, height: h, channels: 3, pixels: [UInt8](repeating: 9, count: w * h * 3))
        func ratio(_ l: Image) -> Double {
            var c = [Int](repeating: 0, count: 256)
            for v in l.pixels where v != 255 { c[Int(v)] += 1 }
            return Double(c.max()!) / Double(c.reduce(0, +))
        }
        var strict = SegmentationAugmentation(cropSize: 16, ratioRange: nil, catMaxRatio: 0.75, flipProbability: 0, colorJitter: nil)
        var loose = strict
        loose.catMaxRatio = 1
        var looseBad = 0
        for seed in 0..<60 {
            var r1 = SplitMix64(seed: UInt64(seed)), r2 = SplitMix64(seed: UInt64(seed))
            XCTAssertLessThan(ratio(try strict.apply(image: img, label: lab, rng: &r1).label), 0.75, "seed \(seed)")
            if ratio(try loose.apply(image: img, label: lab, rng: &r2).label) >= 0.75 { looseBad += 1 }
        }
        XCTAssertGreaterThan(looseBad, 3, "without cat_max_ratio some crops are dominated by one class")
        // 255 is ignored: a crop of one class + ignore is never acceptable, and the last try is kept (no hang).
        for i in 0..<(w * h) where labPx[i] != 1 { labPx[i] = 255 }
        strict.catMaxRatio = 0.75
        var r = SplitMix64(seed: 1)
        let out = try strict.apply(image: img, label: Image(width: w, height: h, channels: 1, pixels: labPx), rng: &r)
        XCTAssertEqual(out.label.width, 16)
    }

    func testColorJitterChangesOnlyColours() throws {
        let (img, lab) = TempData.pair(width: 16, height: 16, seed: 0)
        let aug = SegmentationAugmentation(cropSize: 16, ratioRange: nil, catMaxRatio: 1, flipProbability: 0, colorJitter: ColorJitter())
        var rng = SplitMix64(seed: 5)
        let (o, l) = try aug.apply(image: img, label: lab, rng: &rng)
        XCTAssertEqual(l, lab)
        XCTAssertNotEqual(o, img)
        // Grey stays grey under brightness/contrast/saturation/hue.
        var grey = Image(width: 4, height: 1, channels: 3, pixels: [10, 10, 10, 100, 100, 100, 200, 200, 200, 0, 0, 0])
        var r = SplitMix64(seed: 3)
        try ColorJitter().apply(&grey, rng: &r)
        for i in 0..<4 { XCTAssertEqual(grey.pixels[3 * i], grey.pixels[3 * i + 1]); XCTAssertEqual(grey.pixels[3 * i], grey.pixels[3 * i + 2]) }
        // Brightness alone: trunc(f · x).
        var one = Image(width: 1, height: 1, channels: 3, pixels: [100, 50, 201])
        ColorJitter.blend(&one, factor: 1.1, with: .zero)
        XCTAssertEqual(one.pixels, [110, 55, 221])
        // Contrast: blend with the mean of the truncated grey image (0.2989 + 0.587 + 0.114 = 0.9999, so
        // grey(100) = 99, grey(200) = 199, mean 149): 0.5·100 + 0.5·149 = 124.5 → 124, 174.5 → 174.
        var two = Image(width: 2, height: 1, channels: 3, pixels: [100, 100, 100, 200, 200, 200])
        ColorJitter.blend(&two, factor: 0.5, with: .mean)
        XCTAssertEqual(two.pixels, [124, 124, 124, 174, 174, 174])
        // Saturation 0: the pixel's grey, trunc(0.2989 · 255) = 76.
        var sat = Image(width: 1, height: 1, channels: 3, pixels: [255, 0, 0])
        ColorJitter.blend(&sat, factor: 0, with: .grey)
        XCTAssertEqual(sat.pixels, [76, 76, 76])
        var oneChannel = lab
        XCTAssertThrowsError(try ColorJitter().apply(&oneChannel, rng: &r))
        // Hue shift by 0 keeps the colour (up to float truncation by one level).
        var c = Image(width: 1, height: 1, channels: 3, pixels: [200, 30, 90])
        ColorJitter.shiftHue(&c, by: 0)
        XCTAssertTrue(zip(c.pixels, [200, 30, 90] as [UInt8]).allSatisfy { abs(Int($0) - Int($1)) <= 1 }, "\(c.pixels)")
        // Hue shift by 1/3 maps pure red to pure green.
        var red = Image(width: 1, height: 1, channels: 3, pixels: [255, 0, 0])
        ColorJitter.shiftHue(&red, by: 1.0 / 3.0)
        XCTAssertEqual(red.pixels[1], 255); XCTAssertLessThanOrEqual(red.pixels[0], 1); XCTAssertEqual(red.pixels[2], 0)
    }

    // MARK: loader

    private func batches(_ l: SegmentationDataLoader, _ n: Int) throws -> [SegmentationBatch?] {
        try (0..<n).map { _ in try l.next() }
    }

    private func assertSame(_ a: SegmentationBatch?, _ b: SegmentationBatch?, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a == nil, b == nil, file: file, line: line)
        guard let a = a, let b = b else { return }
        XCTAssertEqual(a.indices, b.indices, file: file, line: line)
        XCTAssertEqual(a.epoch, b.epoch, file: file, line: line)
        XCTAssertEqual(a.pixelValues.shape, b.pixelValues.shape, file: file, line: line)
        XCTAssertEqual(maxAbsDifference(a.pixelValues, b.pixelValues), 0, file: file, line: line)
        XCTAssertEqual(ints(a.labels), ints(b.labels), file: file, line: line)
    }

    func testCollateShapesAndTypes() throws {
        let t = try TempData()
        let ds = try SegmentationDataset(adeRoot: try t.ade(n: 5), split: .training)
        let loader = try SegmentationDataLoader(dataset: ds, batchSize: 2, shuffle: false,
                                                augmentation: SegmentationAugmentation(cropSize: 16, scale: (48, 16)),
                                                processor: SegformerImageProcessor(height: 16, width: 16, doReduceLabels: true), seed: 3)
        XCTAssertFalse(loader.processor.doResize, "crop size equals the processor size: no resize")
        XCTAssertEqual(loader.batchesPerEpoch, 3)
        let b = try XCTUnwrap(try loader.next())
        XCTAssertEqual(b.pixelValues.dataType, .float); XCTAssertEqual(b.pixelValues.shape, [2, 3, 16, 16])
        XCTAssertEqual(b.labels.dataType, .int64); XCTAssertEqual(b.labels.shape, [2, 16, 16])
        XCTAssertEqual(b.indices, [0, 1])
        // Reduced labels: classes 1…5 become 0…4, padding 255.
        XCTAssertTrue(ints(b.labels).allSatisfy { (0...4).contains($0) || $0 == 255 })
        XCTAssertNotNil(try loader.next())
        let last = try XCTUnwrap(try loader.next())
        XCTAssertEqual(last.indices, [4])
        XCTAssertNil(try loader.next())
        XCTAssertEqual(loader.state.epoch, 1)
        // drop_last drops the short batch.
        let dl = try SegmentationDataLoader(dataset: ds, batchSize: 2, shuffle: true, dropLast: true,
                                            processor: SegformerImageProcessor(height: 8, width: 8))
        XCTAssertEqual(dl.batchesPerEpoch, 2)
        let got = try batches(dl, 3)
        XCTAssertNotNil(got[0]); XCTAssertNotNil(got[1]); XCTAssertNil(got[2])
        // Evaluation: no augmentation, the processor resizes every image to its size.
        let ev = try SegmentationDataLoader(dataset: ds, batchSize: 5, shuffle: false, processor: SegformerImageProcessor(height: 12, width: 10))
        let e = try XCTUnwrap(try ev.next())
        XCTAssertEqual(e.pixelValues.shape, [5, 3, 12, 10]); XCTAssertEqual(e.labels.shape, [5, 12, 10])
        XCTAssertThrowsError(try SegmentationDataLoader(dataset: ds, batchSize: 0))
        XCTAssertThrowsError(try SegmentationDataLoader(dataset: SegmentationDataset(samples: []), batchSize: 1))
        XCTAssertThrowsError(try SegmentationDataLoader(dataset: ds, batchSize: 6, dropLast: true))
    }

    func testLoaderIsDeterministicAndResumes() throws {
        let t = try TempData()
        let ds = try SegmentationDataset(adeRoot: try t.ade(n: 5), split: .training)
        func make(prefetch: Bool, depth: Int = 2, seed: UInt64 = 11) throws -> SegmentationDataLoader {
            try SegmentationDataLoader(dataset: ds, batchSize: 2, shuffle: true,
                                       augmentation: SegmentationAugmentation(cropSize: 12, scale: (40, 16)),
                                       processor: SegformerImageProcessor(height: 12, width: 12, doReduceLabels: true),
                                       seed: seed, prefetch: prefetch, prefetchDepth: depth)
        }
        // Three epochs (3 batches + the end marker each), however many batches are prepared ahead.
        let a = try batches(try make(prefetch: true), 12)
        let b = try batches(try make(prefetch: false), 12)
        for (x, y) in zip(a, b) { assertSame(x, y) }
        for depth in [1, 5] {
            for (x, y) in zip(try batches(try make(prefetch: true, depth: depth), 12), b) { assertSame(x, y) }
        }
        XCTAssertThrowsError(try make(prefetch: true, depth: 0))
        XCTAssertNil(a[3]); XCTAssertNil(a[7]); XCTAssertNil(a[11])
        // Every epoch visits every sample once; epochs are shuffled differently.
        let orders = [0, 4, 8].map { s in a[s..<(s + 3)].flatMap { $0!.indices } }
        for o in orders { XCTAssertEqual(o.sorted(), [0, 1, 2, 3, 4]) }
        XCTAssertFalse(orders[0] == orders[1] && orders[1] == orders[2])
        // Another seed gives another stream.
        let c = try batches(try make(prefetch: true, seed: 12), 3)
        XCTAssertFalse(zip(a, c).allSatisfy { x, y in x?.indices == y?.indices && x.map { maxAbsDifference($0.pixelValues, y!.pixelValues) } == 0 })

        // Resume: save the state after 5 calls (mid epoch 1), continue in a fresh loader.
        let first = try make(prefetch: true)
        _ = try batches(first, 5)
        let saved = first.state
        let data = try JSONEncoder().encode(saved)
        let resumed = try make(prefetch: true, seed: 999)
        try resumed.restore(try JSONDecoder().decode(DataLoaderState.self, from: data))
        let rest = try batches(resumed, 7)
        for (x, y) in zip(rest, a[5...]) { assertSame(x, y) }
        XCTAssertEqual(try DataLoaderState(words: saved.words), saved)
        XCTAssertThrowsError(try DataLoaderState(words: [1, 2]))
        // Restoring in the middle of a prefetch on the same loader also works.
        let again = try make(prefetch: true)
        _ = try batches(again, 2)
        try again.restore(saved)
        assertSame(try again.next(), a[5])
        XCTAssertThrowsError(try again.restore(DataLoaderState(epoch: 0, position: 99, rngState: 0)))
    }

    /// Data-parallel shards: process r's batches are the r-th halves of the whole batches, with shuffling and
    /// augmentation on (the draws depend on the sample's position, not on who loads it), epoch after epoch.
    func testShardsTogetherMakeTheWholeBatch() throws {
        let t = try TempData()
        let ds = try SegmentationDataset(adeRoot: try t.ade(n: 9), split: .training)
        func make(_ shard: DataShard?) throws -> SegmentationDataLoader {
            try SegmentationDataLoader(dataset: ds, batchSize: 4, shuffle: true, dropLast: true,
                                       augmentation: SegmentationAugmentation(cropSize: 12, scale: (40, 16)),
                                       processor: SegformerImageProcessor(height: 12, width: 12, doReduceLabels: true),
                                       seed: 5, shard: shard)
        }
        let whole = try batches(try make(nil), 9)
        let parts = try [0, 1].map { try batches(try make(DataShard(index: $0, count: 2)), 9) }
        for (k, w) in whole.enumerated() {
            XCTAssertEqual(w == nil, parts[0][k] == nil); XCTAssertEqual(w == nil, parts[1][k] == nil)
            guard let w, let p0 = parts[0][k], let p1 = parts[1][k] else { continue }
            XCTAssertEqual(p0.indices + p1.indices, w.indices, "batch \(k)")
            XCTAssertEqual(p0.pixelValues.shape, [2, 3, 12, 12])
            XCTAssertEqual(floats(p0.pixelValues) + floats(p1.pixelValues), floats(w.pixelValues), "batch \(k)")
            XCTAssertEqual(ints(p0.labels) + ints(p1.labels), ints(w.labels), "batch \(k)")
        }
        XCTAssertEqual(whole.compactMap { $0 }.count, 6)
        // Shards need whole batches that split evenly.
        XCTAssertThrowsError(try SegmentationDataLoader(dataset: ds, batchSize: 3, dropLast: true, shard: DataShard(index: 0, count: 2)))
        XCTAssertThrowsError(try SegmentationDataLoader(dataset: ds, batchSize: 4, dropLast: false, shard: DataShard(index: 0, count: 2)))
    }

    private func floats(_ t: Tensor) -> [Float] { Array(UnsafeBufferPointer(start: t.pointer(Float.self), count: t.count)) }

    /// The loader state survives a checkpoint (`pipelineState` words) and resumes the same batches.
    func testLoaderStateThroughCheckpoint() throws {
        let t = try TempData()
        let ds = try SegmentationDataset(adeRoot: try t.ade(n: 4), split: .training)
        func make() throws -> SegmentationDataLoader {
            try SegmentationDataLoader(dataset: ds, batchSize: 3, augmentation: SegmentationAugmentation(cropSize: 8, scale: (32, 12)),
                                       processor: SegformerImageProcessor(height: 8, width: 8), seed: 5)
        }
        let a = try make()
        _ = try batches(a, 3)
        let ck = Checkpoint(step: 3, parameters: [:], optimizer: AdamW().state, pipelineState: ["loader": a.state.words])
        let dir = t.root + "/ckpt"
        try ck.write(to: dir)
        let expected = try batches(a, 4)
        let b = try make()
        try b.restore(try DataLoaderState(words: try XCTUnwrap(try Checkpoint.read(from: dir).pipelineState["loader"])))
        for (x, y) in zip(try batches(b, 4), expected) { assertSame(x, y) }
    }

    // MARK: ../shared

    func testSharedADE20KSamples() throws {
        let root = try SharedFixtures.path("data/ade20k-samples")
        let ds = try SegmentationDataset(adeRoot: root, split: .validation)
        XCTAssertEqual(ds.samples.map(\.stem), ["ADE_val_00000001", "ADE_val_00000002", "ADE_val_00000003"])
        XCTAssertEqual(ds.id2label.count, 150)
        XCTAssertEqual(ds.id2label[0], "wall"); XCTAssertEqual(ds.id2label[149], "flag")
        XCTAssertEqual(ds.label2id["sky"], 2)
        for i in 0..<3 {
            let (img, lab) = try ds.load(i)
            XCTAssertEqual(img.width, lab.width); XCTAssertEqual(img.height, lab.height)
            XCTAssertTrue(lab.pixels.allSatisfy { $0 <= 150 })
        }
        // Training-style batch (small scale so the debug build stays fast) and an evaluation batch.
        let train = try SegmentationDataLoader(dataset: ds, batchSize: 3, augmentation: SegmentationAugmentation(cropSize: 64, scale: (256, 64)),
                                               processor: SegformerImageProcessor(height: 64, width: 64, doReduceLabels: true), seed: 1)
        let b = try XCTUnwrap(try train.next())
        XCTAssertEqual(b.pixelValues.shape, [3, 3, 64, 64]); XCTAssertEqual(b.labels.shape, [3, 64, 64])
        XCTAssertTrue(ints(b.labels).allSatisfy { (0..<150).contains($0) || $0 == 255 })
        let eval = try SegmentationDataLoader(dataset: ds, batchSize: 3, shuffle: false,
                                              processor: SegformerImageProcessor(height: 64, width: 64, doReduceLabels: true))
        let e = try XCTUnwrap(try eval.next())
        XCTAssertEqual(e.indices, [0, 1, 2])
        XCTAssertTrue(ints(e.labels).allSatisfy { (0..<150).contains($0) || $0 == 255 })
        // Same as the image processor on its own (reduce before vs after a nearest resize agree).
        let raw = try (0..<3).map { try ds.load($0) }
        let direct = try SegformerImageProcessor(height: 64, width: 64, doReduceLabels: true)
            .preprocess(images: raw.map(\.image), segmentationMaps: raw.map(\.label))
        XCTAssertEqual(maxAbsDifference(direct.pixelValues, e.pixelValues), 0)
        XCTAssertEqual(ints(direct.labels!), ints(e.labels))
    }
}
