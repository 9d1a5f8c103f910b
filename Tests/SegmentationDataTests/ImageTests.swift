import Foundation
import XCTest
import GraphIR
@testable import SegmentationData
import TestSupport

/// Fixtures come from scripts/fixtures/make_image_fixtures.py (PIL + numpy); see its docstring.
final class ImageTests: XCTestCase {
    struct Manifest: Decodable {
        struct Decode: Decodable { let file, mode: String; let width, height, channels: Int; let expected: String }
        struct Resize: Decodable { let file, filter: String; let width, height: Int; let expected: String; let native: Bool? }
        struct Processor: Decodable {
            let image, labels: String
            let height, width: Int
            let reduce_labels: Bool
            let pixel_values, labels_expected: String
        }
        let decode: [Decode]
        let resize: [Resize]
        let processor: [Processor]
        let corrupt: [String]
    }

    func fixture(_ name: String) throws -> String { try commonFixtures.path("images/" + name) }
    func bytes(_ name: String) throws -> Data { try commonFixtures.data("images/" + name) }
    func manifest() throws -> Manifest { try JSONDecoder().decode(Manifest.self, from: bytes("manifest.json")) }

    func raw<T>(_ name: String, as: T.Type) throws -> [T] {
        let d = try bytes(name)
        return d.withUnsafeBytes { Array($0.bindMemory(to: T.self)) }
    }

    // MARK: decoding

    func testDecodeMatchesPIL() throws {
        for c in try manifest().decode {
            let img = try Image(contentsOf: fixture(c.file), mode: c.mode == "rgb" ? .rgb : .native)
            XCTAssertEqual(img.width, c.width, c.file)
            XCTAssertEqual(img.height, c.height, c.file)
            XCTAssertEqual(img.channels, c.channels, "\(c.file) \(c.mode)")
            let expected = try raw(c.expected, as: UInt8.self)
            XCTAssertEqual(img.pixels.count, expected.count, c.file)
            guard img.pixels.count == expected.count else { continue }
            let maxDiff = zip(img.pixels, expected).map { abs(Int($0) - Int($1)) }.max() ?? 0
            // Pillow's wheel bundles its own libjpeg-turbo; both use the default islow IDCT and fancy
            // upsampling, so decodes agree exactly (PNG must in any case).
            XCTAssertEqual(maxDiff, 0, "\(c.file) \(c.mode): max diff \(maxDiff) vs PIL")
        }
    }

    func testSniffingIgnoresExtension() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("imgtest-\(UUID().uuidString).png")
        defer { try? FileManager.default.removeItem(at: tmp) }
        try bytes("rgb.jpg").write(to: tmp)  // a JPEG named .png
        let a = try Image(contentsOf: tmp.path)
        let b = try Image(contentsOf: fixture("rgb.jpg"))
        XCTAssertEqual(a, b)
    }

    /// 16-bit masks are read at full value: ids up to 255 as they are (labels16.png, in the decode cases),
    /// a larger value is refused naming the file and the value, never cut to a byte (300 is not class 1).
    func testSixteenBitMaskValuesAboveAByteAreRefused() throws {
        let path = try fixture("labels16_large.png")
        XCTAssertThrowsError(try Image(labelsAt: path)) { e in
            XCTAssertTrue("\(e)".contains("labels16_large.png") && "\(e)".contains("value 300 at (x 2, y 1)"), "\(e)")
        }
        // RGB decoding of the same file is an image's business and keeps PIL's high byte.
        XCTAssertNoThrow(try Image(contentsOf: path, mode: .rgb))
    }

    func testCorruptFilesThrowNamingTheFile() throws {
        // Paths are resolved before the expected failures, so a missing fixture fails the test.
        for name in try manifest().corrupt {
            let path = try fixture(name), data = try bytes(name)
            XCTAssertThrowsError(try Image(contentsOf: path), name) { error in
                let text = "\(error)"
                XCTAssertTrue(text.hasPrefix("corrupt or unsupported image: "), text)
                XCTAssertTrue(text.contains(name), text)
            }
            XCTAssertThrowsError(try Image.decode(bytes: data, mode: .native), name)
        }
        // Messages carry the library's reason.
        let hugePNG = try fixture("huge_header.png"), hugeJPEG = try fixture("huge_header.jpg"), truncated = try fixture("truncated.jpg")
        XCTAssertThrowsError(try Image(contentsOf: hugePNG)) { e in
            XCTAssertTrue("\(e)".contains("exceeds the limit"), "\(e)")
        }
        XCTAssertThrowsError(try Image(contentsOf: hugeJPEG)) { e in
            XCTAssertTrue("\(e)".contains("exceeds the limit"), "\(e)")
        }
        XCTAssertThrowsError(try Image(contentsOf: truncated)) { e in
            XCTAssertTrue("\(e)".contains("Premature end"), "\(e)")
        }
        XCTAssertThrowsError(try Image(contentsOf: commonFixtures.root.appendingPathComponent("images/does-not-exist.png").path)) { e in
            XCTAssertEqual((e as? SegFormerError).map { if case .io = $0 { return true } else { return false } }, true)
        }
    }

    func testEveryTruncationOfAValidFileFailsCleanly() throws {
        // Each prefix must either decode or throw; never crash.
        for name in ["rgb.png", "rgb_progressive_420.jpg", "palette.png"] {
            let d = try bytes(name)
            for n in stride(from: 0, to: d.count, by: max(1, d.count / 40)) {
                _ = try? Image.decode(bytes: d.prefix(n))
            }
        }
    }

    func testPNGRoundTripAndAtomicWrite() throws {
        let rgb = try Image(contentsOf: fixture("rgb.png"))
        let gray = try Image(contentsOf: fixture("gray.png"), mode: .native)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imgtest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for img in [rgb, gray] {
            let path = dir.appendingPathComponent("out.png").path
            try img.writePNG(to: path)
            XCTAssertEqual(try Image(contentsOf: path, mode: .native), img)
        }
        // Only the final file remains (the temporary was renamed).
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.png"])
        XCTAssertThrowsError(try rgb.writePNG(to: dir.appendingPathComponent("missing/x.png").path))
    }

    func testLabelLoading() throws {
        let labels = try Image(labelsAt: fixture("labels.png"))
        XCTAssertEqual(labels.channels, 1)
        let pal = try Image(labelsAt: fixture("palette.png"))
        XCTAssertTrue(pal.pixels.allSatisfy { $0 < 12 })  // palette indices, not colours
        let rgb = try fixture("rgb.png")
        XCTAssertThrowsError(try Image(labelsAt: rgb))
    }

    // MARK: resizing

    func testResizeMatchesPIL() throws {
        let filters: [String: PILResample] = ["nearest": .nearest, "bilinear": .bilinear, "bicubic": .bicubic,
                                              "lanczos": .lanczos, "box": .box, "hamming": .hamming]
        var checked = 0
        for c in try manifest().resize {
            let src = try Image(contentsOf: fixture(c.file), mode: c.file == "rgb.png" ? .rgb : .native)
            let out = try src.resized(width: c.width, height: c.height, filter: filters[c.filter]!)
            let expected = try raw(c.expected, as: UInt8.self)
            XCTAssertEqual(out.width, c.width)
            XCTAssertEqual(out.height, c.height)
            guard out.pixels.count == expected.count else {
                XCTFail("\(c.expected): \(out.pixels.count) bytes vs \(expected.count)"); continue
            }
            let diffs = zip(out.pixels, expected).filter { $0 != $1 }.count
            XCTAssertEqual(diffs, 0, "\(c.file) \(c.filter) -> \(c.width)x\(c.height): \(diffs) samples differ from PIL")
            checked += 1
        }
        XCTAssertGreaterThan(checked, 50)
    }

    func testResizeRejectsBadSizes() {
        let img = Image(width: 2, height: 2, channels: 1, pixels: [1, 2, 3, 4])
        XCTAssertThrowsError(try img.resized(width: 0, height: 3))
        XCTAssertThrowsError(try img.resized(width: 1 << 20, height: 1 << 20))
        XCTAssertEqual(try img.resized(width: 2, height: 2), img)
    }

    // MARK: processor

    func testProcessorMatchesNumpyReimplementation() throws {
        for c in try manifest().processor {
            let p = SegformerImageProcessor(height: c.height, width: c.width, doReduceLabels: c.reduce_labels)
            let img = try Image(contentsOf: fixture(c.image))
            let lab = try Image(labelsAt: fixture(c.labels))
            let (pv, labels) = try p.preprocess(images: [img], segmentationMaps: [lab])
            XCTAssertEqual(pv.shape, [1, 3, c.height, c.width])
            XCTAssertEqual(pv.dataType, .float)
            let expected = try raw(c.pixel_values, as: Float.self)
            let got = pv.toArray(Float.self)
            XCTAssertEqual(got.count, expected.count)
            let maxDiff = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertEqual(maxDiff, 0, "\(c.image) \(c.width)x\(c.height): pixel_values max diff \(maxDiff)")
            XCTAssertEqual(labels?.shape, [1, c.height, c.width])
            XCTAssertEqual(labels?.dataType, .int64)
            XCTAssertEqual(labels?.toArray(Int64.self), try raw(c.labels_expected, as: Int64.self))
        }
    }

    func testReduceLabels() throws {
        let mask = Image(width: 4, height: 1, channels: 1, pixels: [0, 1, 150, 255])
        let p = SegformerImageProcessor(doResize: false, doReduceLabels: true)
        let img = Image(width: 4, height: 1, channels: 3, pixels: [UInt8](repeating: 128, count: 12))
        let (_, labels) = try p.preprocess(images: [img], segmentationMaps: [mask])
        XCTAssertEqual(labels?.toArray(Int64.self), [255, 0, 149, 255])
    }

    func testProcessorBatchAndErrors() throws {
        let a = try Image(contentsOf: fixture("rgb.png"))
        let g = try Image(contentsOf: fixture("gray.png"), mode: .native)  // grey is replicated to RGB
        let p = SegformerImageProcessor(height: 8, width: 10)
        let (pv, labels) = try p.preprocess(images: [a, g])
        XCTAssertEqual(pv.shape, [2, 3, 8, 10])
        XCTAssertNil(labels)
        XCTAssertThrowsError(try p.preprocess(images: []))
        XCTAssertThrowsError(try p.preprocess(images: [a], segmentationMaps: [a, a]))
        let noResize = SegformerImageProcessor(doResize: false)
        XCTAssertThrowsError(try noResize.preprocess(images: [a, try a.resized(width: 5, height: 5)]))
    }

    func testConfigJSON() throws {
        let json = """
        {"do_normalize": true, "do_reduce_labels": true, "do_resize": true, "image_mean": [0.5, 0.5, 0.5],
         "image_processor_type": "SegformerImageProcessor", "image_std": [0.5, 0.25, 0.5], "resample": 2,
         "rescale_factor": 0.00392156862745098, "size": {"height": 640, "width": 320}}
        """
        let p = try SegformerImageProcessor(configJSON: Data(json.utf8))
        XCTAssertEqual(p.height, 640)
        XCTAssertEqual(p.width, 320)
        XCTAssertTrue(p.doReduceLabels)
        XCTAssertEqual(p.imageStd, [0.5, 0.25, 0.5])
        XCTAssertEqual(p.resample, .bilinear)
        let legacy = try SegformerImageProcessor(configJSON: Data(#"{"size": 256, "reduce_labels": true, "resample": 0}"#.utf8))
        XCTAssertEqual(legacy.height, 256)
        XCTAssertEqual(legacy.width, 256)
        XCTAssertTrue(legacy.doReduceLabels)
        XCTAssertEqual(legacy.resample, .nearest)
        let defaults = try SegformerImageProcessor(configJSON: Data("{}".utf8))
        XCTAssertEqual(defaults.height, 512)
        XCTAssertFalse(defaults.doReduceLabels)
        XCTAssertThrowsError(try SegformerImageProcessor(configJSON: Data("[1]".utf8)))
        XCTAssertThrowsError(try SegformerImageProcessor(configJSON: Data(#"{"size": -3}"#.utf8)))
        XCTAssertThrowsError(try SegformerImageProcessor(configJSON: Data(#"{"resample": 9}"#.utf8)))
        XCTAssertThrowsError(try SegformerImageProcessor(configJSON: Data(#"{"do_resize": "yes"}"#.utf8)))
        XCTAssertThrowsError(try SegformerImageProcessor(preprocessorConfigPath: "/nonexistent/preprocessor_config.json"))
    }

    // MARK: segmentation helpers

    func testLinearTapsMatchTorch() {
        // torch: in 2 -> out 4, align_corners False: src = -0.25 (clamped 0), 0.25, 0.75, 1.25
        let t = Segmentation.linearTaps(inSize: 2, outSize: 4)
        XCTAssertEqual(t.map { $0.i0 }, [0, 0, 0, 1])
        XCTAssertEqual(t.map { $0.i1 }, [1, 1, 1, 1])
        XCTAssertEqual(t.map { $0.w1 }, [0, 0.25, 0.75, 0.25])
        // downscale 4 -> 2: src = 0.5, 2.5
        let d = Segmentation.linearTaps(inSize: 4, outSize: 2)
        XCTAssertEqual(d.map { $0.i0 }, [0, 2])
        XCTAssertEqual(d.map { $0.w1 }, [0.5, 0.5])
    }

    func testArgmaxMask() throws {
        // Two classes on a 1x2 grid: class 0 is 1 at the left, class 1 is 1 at the right.
        let logits = Tensor([Float(1), 0, 0, 1], shape: [1, 2, 1, 2])
        let mask = try Segmentation.argmaxMask(logits: logits, height: 1, width: 4)
        // x positions map to src 0 (clamped), 0.25, 0.75, 1.0+: class-1 weight 0, .25, .75, 1
        XCTAssertEqual(mask, [0, 0, 1, 1])
        // Ties pick the first class, like torch.argmax.
        let tie = Tensor([Float](repeating: 0, count: 3 * 4), shape: [1, 3, 2, 2])
        XCTAssertEqual(try Segmentation.argmaxMask(logits: tie, height: 3, width: 3), [Int](repeating: 0, count: 9))
        XCTAssertThrowsError(try Segmentation.argmaxMask(logits: Tensor([Float(1)], shape: [1]), height: 2, width: 2))
        XCTAssertThrowsError(try Segmentation.argmaxMask(logits: logits, height: 0, width: 2))
    }

    func testMaskAndOverlayPNG() throws {
        XCTAssertEqual(Segmentation.ade20kPalette.count, 150)
        XCTAssertTrue(Segmentation.ade20kPalette[0] == (120, 120, 120))
        XCTAssertTrue(Segmentation.ade20kPalette[149] == (92, 0, 255))
        let img = Image(width: 2, height: 1, channels: 3, pixels: [0, 0, 0, 200, 100, 50])
        let ov = try Segmentation.overlay(image: img, mask: [0, 255])
        XCTAssertEqual(ov.pixels, [60, 60, 60, 200, 100, 50])  // class 0 blended at 0.5, 255 ignored
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imgtest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("mask.png").path
        try Segmentation.writeMaskPNG([3, 149], width: 2, height: 1, to: path)
        XCTAssertEqual(try Image(labelsAt: path).pixels, [3, 149])
        XCTAssertThrowsError(try Segmentation.writeMaskPNG([300, 1], width: 2, height: 1, to: path))
        XCTAssertThrowsError(try Segmentation.overlay(image: img, mask: [1]))
    }

    func testClassification() throws {
        let logits = Tensor([Float(1), 3, 2, 3], shape: [1, 4])
        let top = try Classification.topK(logits: logits, k: 3)
        XCTAssertEqual(top.map { $0.id }, [1, 3, 2])
        let z = exp(1.0) + 2 * exp(3.0) + exp(2.0)
        XCTAssertEqual(top[0].probability, exp(3.0) / z, accuracy: 1e-12)
        XCTAssertEqual(top[2].probability, exp(2.0) / z, accuracy: 1e-12)
        XCTAssertThrowsError(try Classification.topK(logits: Tensor([Int64(1)], shape: [1, 1])))
        let names = try Classification.id2label(configJSON: Data(#"{"id2label": {"0": "wall", "12": "person"}}"#.utf8))
        XCTAssertEqual(names, [0: "wall", 12: "person"])
        XCTAssertEqual(try Classification.id2label(configJSON: Data("{}".utf8)), [:])
        XCTAssertThrowsError(try Classification.id2label(configJSON: Data(#"{"id2label": {"x": "wall"}}"#.utf8)))
    }

    // MARK: the shared HF reference (skipped when ../shared is absent)

    func testSharedHFProcessorReference() throws {
        let root = try SharedFixtures.path("reference/image-processor")
        let data = try SharedFixtures.path("data/ade20k-samples")
        let names = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
        XCTAssertFalse(names.isEmpty)
        let seg = SegformerImageProcessor(doReduceLabels: true)
        let cls = SegformerImageProcessor(height: 224, width: 224)
        for name in names {
            let img = try Image(contentsOf: "\(data)/images/validation/\(name).jpg")
            let lab = try Image(labelsAt: "\(data)/annotations/validation/\(name).png")
            let (pv, labels) = try seg.preprocess(images: [img], segmentationMaps: [lab])
            let refPV = try ONNXImporter.readTensorFile("\(root)/\(name)/pixel_values.pb").tensor
            let refLabels = try ONNXImporter.readTensorFile("\(root)/\(name)/labels.pb").tensor
            XCTAssertEqual(pv.shape, refPV.shape)
            let d = zip(pv.toArray(Float.self), refPV.toArray(Float.self)).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(d, 0.018, "\(name): pixel_values max abs diff \(d)")
            XCTAssertEqual(labels?.shape, refLabels.shape)
            XCTAssertEqual(labels?.toArray(Int64.self), refLabels.toArray(Int64.self), "\(name): labels differ")
            let (pv224, _) = try cls.preprocess(images: [img])
            let ref224 = try ONNXImporter.readTensorFile("\(root)/\(name)/pixel_values_224.pb").tensor
            XCTAssertEqual(pv224.shape, ref224.shape)
            let d224 = zip(pv224.toArray(Float.self), ref224.toArray(Float.self)).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(d224, 0.018, "\(name): 224 pixel_values max abs diff \(d224)")
            print("[images] \(name): pixel_values max diff \(d), 224: \(d224)")
        }
    }
}
