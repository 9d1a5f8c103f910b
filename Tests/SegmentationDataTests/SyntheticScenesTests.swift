import Foundation
import XCTest
import GraphIR
@testable import SegmentationData

final class SyntheticScenesTests: XCTestCase {
    var folders: [String] = []

    func tempFolder() -> String {
        let p = NSTemporaryDirectory() + "synthetic-scenes-\(getpid())-\(UUID().uuidString)"
        folders.append(p)
        return p
    }

    override func tearDown() {
        for f in folders { try? FileManager.default.removeItem(atPath: f) }
        folders = []
        super.tearDown()
    }

    /// Relative path → FNV-1a 64 hash of the bytes, for every file under `folder`.
    func hashes(_ folder: String) throws -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        let e = FileManager.default.enumerator(atPath: folder)!
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            FileManager.default.fileExists(atPath: folder + "/" + rel, isDirectory: &isDir)
            if isDir.boolValue { continue }
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in try Data(contentsOf: URL(fileURLWithPath: folder + "/" + rel)) { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            out[rel] = h
        }
        return out
    }

    func testDeterministicForASeed() throws {
        let a = tempFolder(), b = tempFolder(), c = tempFolder()
        try SyntheticScenes.generate(into: a, trainCount: 3, validationCount: 2, width: 40, height: 30, seed: 7)
        try SyntheticScenes.generate(into: b, trainCount: 3, validationCount: 2, width: 40, height: 30, seed: 7)
        try SyntheticScenes.generate(into: c, trainCount: 3, validationCount: 2, width: 40, height: 30, seed: 8)
        let ha = try hashes(a), hb = try hashes(b), hc = try hashes(c)
        XCTAssertEqual(ha.count, 11)
        XCTAssertEqual(ha, hb)
        // A different seed changes every picture (config.json also records the seed).
        for (k, v) in ha where k.hasPrefix("images/") { XCTAssertNotEqual(v, hc[k], k) }
        // Images differ from each other within one dataset.
        XCTAssertNotEqual(ha["images/training/SYN_train_00000001.jpg"], ha["images/training/SYN_train_00000002.jpg"])
        // PNG images are deterministic too.
        let d = tempFolder(), e = tempFolder()
        try SyntheticScenes.generate(into: d, trainCount: 2, validationCount: 1, width: 40, height: 30, seed: 7, imageFormat: .png)
        try SyntheticScenes.generate(into: e, trainCount: 2, validationCount: 1, width: 40, height: 30, seed: 7, imageFormat: .png)
        XCTAssertEqual(try hashes(d), try hashes(e))
        XCTAssertEqual(try hashes(d)["annotations/training/SYN_train_00000002.png"], ha["annotations/training/SYN_train_00000002.png"])
    }

    func psnr(_ a: Image, _ b: Image) -> Double {
        var se = 0.0
        for i in 0..<a.pixels.count { let d = Double(a.pixels[i]) - Double(b.pixels[i]); se += d * d }
        return 10 * log10(255 * 255 / max(se / Double(a.pixels.count), 1e-9))
    }

    func testLayoutOnDiskAndDecoding() throws {
        try checkLayout(.png)
        try checkLayout(.jpeg)
    }

    func checkLayout(_ format: SyntheticScenes.ImageFormat) throws {
        let dir = tempFolder()
        var calls: [(Int, Int)] = []
        let summary = try SyntheticScenes.generate(into: dir, trainCount: 3, validationCount: 2, width: 48, height: 32, seed: 1,
                                                   imageFormat: format, progress: { calls.append(($0, $1)) })
        XCTAssertEqual(calls.map { $0.0 }, [1, 2, 3, 4, 5])
        XCTAssertTrue(calls.allSatisfy { $0.1 == 5 })
        let ext = format == .png ? "png" : "jpg"
        XCTAssertEqual(summary.imageExtension, ext)
        XCTAssertEqual(summary.pixelCounts.reduce(0, +), 5 * 48 * 32)
        let fm = FileManager.default
        for (split, prefix, n) in [("training", "SYN_train_", 3), ("validation", "SYN_val_", 2)] {
            let names = (1...n).map { prefix + String(format: "%08d", $0) }
            XCTAssertEqual(try fm.contentsOfDirectory(atPath: "\(dir)/images/\(split)").sorted(), names.map { $0 + "." + ext })
            XCTAssertEqual(try fm.contentsOfDirectory(atPath: "\(dir)/annotations/\(split)").sorted(), names.map { $0 + ".png" })
            for (i, stem) in names.enumerated() {
                let name = stem + ".png"
                let image = try Image(contentsOf: "\(dir)/images/\(split)/\(stem).\(ext)")
                XCTAssertEqual([image.width, image.height, image.channels], [48, 32, 3])
                let labels = try Image(labelsAt: "\(dir)/annotations/\(split)/\(name)")
                XCTAssertEqual([labels.width, labels.height, labels.channels], [48, 32, 1])
                // What is on disk is exactly what `render` produces.
                let scene = SyntheticScenes.render(width: 48, height: 32, seed: 1, training: split == "training", index: i)
                if format == .png {
                    XCTAssertEqual(image, scene.image)
                } else {
                    XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/images/\(split)/\(stem).jpg")).prefix(2)), [0xFF, 0xD8])
                    XCTAssertGreaterThan(psnr(image, scene.image), 30, "\(split)/\(stem)")
                }
                XCTAssertEqual(labels, scene.labels)
            }
        }
        let id2label = try Classification.id2label(configPath: dir + "/config.json")
        XCTAssertEqual(id2label, Dictionary(uniqueKeysWithValues: SyntheticScenes.labels.map { ($0.index, $0.name) }))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! [String: Any]
        let info = json["synthetic_scenes"] as! [String: Any]
        XCTAssertEqual(info["ade_ids"] as? [String: Int], ["0": 2, "1": 3, "2": 5, "3": 7, "4": 10, "5": 17, "6": 22])
    }

    func testRefusesNonEmptyFolderUnlessTold() throws {
        let dir = tempFolder()
        try SyntheticScenes.generate(into: dir, trainCount: 1, validationCount: 1, width: 32, height: 32, seed: 3)
        XCTAssertThrowsError(try SyntheticScenes.generate(into: dir, trainCount: 1, validationCount: 1, width: 32, height: 32, seed: 3))
        try "keep".write(toFile: dir + "/notes.txt", atomically: true, encoding: .utf8)
        let s = try SyntheticScenes.generate(into: dir, trainCount: 2, validationCount: 0, width: 32, height: 32, seed: 4,
                                             overwrite: true)
        XCTAssertEqual(s.trainCount, 2)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/images/validation"), [])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/images/training").count, 2)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/notes.txt"))
        // An existing empty folder is fine; a file is not a folder; bad sizes are refused.
        let empty = tempFolder()
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        try SyntheticScenes.generate(into: empty, trainCount: 1, validationCount: 0, width: 16, height: 16, seed: 0)
        XCTAssertThrowsError(try SyntheticScenes.generate(into: dir + "/notes.txt", trainCount: 1, validationCount: 0, width: 16, height: 16, seed: 0))
        XCTAssertThrowsError(try SyntheticScenes.generate(into: tempFolder(), trainCount: -1, validationCount: 0, width: 16, height: 16, seed: 0))
        XCTAssertThrowsError(try SyntheticScenes.generate(into: tempFolder(), trainCount: 1, validationCount: 0, width: 8, height: 16, seed: 0))
    }

    func testLabelsStayInTheDeclaredSetAndEveryClassOccurs() throws {
        let declared = Set(SyntheticScenes.labels.map { UInt8($0.adeId) } + [SyntheticScenes.otherId])
        var pixels = [Int](repeating: 0, count: 256), images = [Int](repeating: 0, count: 256)
        for i in 0..<50 {
            let scene = SyntheticScenes.render(width: 64, height: 48, seed: 42, training: true, index: i)
            var seen = Set<UInt8>()
            for v in scene.labels.pixels { pixels[Int(v)] += 1; seen.insert(v) }
            for v in seen { images[Int(v)] += 1 }
            XCTAssertTrue(seen.isSubset(of: declared), "image \(i): \(seen.subtracting(declared))")
            XCTAssertTrue(seen.contains(3) || seen.contains(17), "image \(i) has neither sky nor mountain")
        }
        for l in SyntheticScenes.labels {
            XCTAssertGreaterThan(images[l.adeId], 0, "\(l.name) never appears in 50 images")
        }
        // Sky and grass are in most scenes; every class in at least a few.
        XCTAssertGreaterThan(images[3], 40)
        for l in SyntheticScenes.labels { XCTAssertGreaterThanOrEqual(images[l.adeId], 3, l.name) }
    }

    func testLabelLookups() {
        XCTAssertEqual(SyntheticScenes.trainingLookup.count, 256)
        XCTAssertEqual(SyntheticScenes.trainingLookup[0], 255)
        XCTAssertEqual(SyntheticScenes.trainingLookup[1], 255)   // wall: never drawn
        for l in SyntheticScenes.labels {
            XCTAssertEqual(Int(SyntheticScenes.trainingLookup[l.adeId]), l.index)
            XCTAssertEqual(Int(SyntheticScenes.reducedADELookup[l.adeId]), l.adeId - 1)
        }
        XCTAssertEqual(SyntheticScenes.labels.map { $0.index }, Array(0..<SyntheticScenes.labels.count))
        XCTAssertEqual(SyntheticScenes.reducedADELookup[0], 255)
        XCTAssertEqual(SyntheticScenes.reducedADELookup[151], 255)
    }

    /// The JPEG encoder on its own: odd sizes (edge blocks), grey input, extreme content, quality range.
    func testJPEGEncoderRoundTrip() throws {
        var rng = SceneRNG(seed: 5, stream: 0)
        for (w, h) in [(1, 1), (8, 8), (13, 9), (33, 17)] {
            let smooth = Image(width: w, height: h, channels: 3,
                               pixels: (0..<(w * h * 3)).map { UInt8(($0 / 3 % w) * 200 / max(1, w - 1) + ($0 % 3) * 20) })
            let back = try Image.decode(bytes: smooth.jpegData(quality: 95))
            XCTAssertEqual([back.width, back.height, back.channels], [w, h, 3])
            XCTAssertGreaterThan(psnr(back, smooth), 35, "\(w)x\(h)")
        }
        // White noise at full swing exercises the largest coefficients and byte stuffing.
        let noise = Image(width: 24, height: 16, channels: 3, pixels: (0..<(24 * 16 * 3)).map { _ in rng.chance(0.5) ? 255 : 0 })
        for q in [1, 50, 100] {
            let back = try Image.decode(bytes: noise.jpegData(quality: q))
            XCTAssertEqual([back.width, back.height], [24, 16])
            if q == 100 { XCTAssertGreaterThan(psnr(back, noise), 20) }
        }
        let grey = Image(width: 10, height: 10, channels: 1, pixels: (0..<100).map { UInt8($0 * 2) })
        let back = try Image.decode(bytes: grey.jpegData(quality: 95))
        XCTAssertEqual(back.channels, 3)
        var maxDiff = 0
        for i in 0..<100 { maxDiff = max(maxDiff, abs(Int(back.pixels[3 * i]) - Int(grey.pixels[i]))) }
        XCTAssertLessThan(maxDiff, 12)
    }
}
