import Foundation
import XCTest
import GraphIR
@testable import SegmentationData

/// The header's size is checked before decoding (PIL's decompression-bomb habit); a JPEG above the
/// limit is decoded at reduced scale when the model's input size allows.
final class ImageSizeLimitTests: XCTestCase {
    override func tearDown() { MemoryBudget.setLimit(nil) }

    func temporaryFile(_ data: Data, _ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "size-limit-\(getpid())-\(name)"
        try data.write(to: URL(fileURLWithPath: path))
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// A 57-byte PNG whose header claims 10000×10000: refused from the header, before any pixel.
    func testPNGHeaderAboveTheLimitIsRefusedBeforeDecoding() throws {
        var png = try Image(width: 1, height: 1, channels: 3, pixels: [1, 2, 3]).pngData()
        // IHDR's width and height follow the signature (8), the chunk length (4) and "IHDR" (4).
        png.replaceSubrange(16..<24, with: [0, 0, 0x27, 0x10, 0, 0, 0x27, 0x10])   // 10000 × 10000
        let crc = crc32(Array(png[12..<29]))   // over "IHDR" and its 13 bytes, so the header is valid
        png.replaceSubrange(29..<33, with: [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: crc >> $0) })
        let path = try temporaryFile(png, "claims-10000.png")
        XCTAssertThrowsError(try Image(contentsOf: path, fitting: (64, 64))) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains(path) && m.contains("10000x10000") && m.contains("limit of 89478485 pixels"), m)
        }
    }

    /// PNG's CRC-32 (ISO 3309, reflected, polynomial 0xEDB88320).
    func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
        }
        return ~c
    }

    /// Under a small budget the limit shrinks; a 2000×2000 JPEG is then decoded at 1/4 scale for a
    /// 300×300 model input, refused when a 1500×1500 input is needed or none is given.
    func testLargeJPEGIsDecodedAtReducedScaleWhenTheTargetAllows() throws {
        let pixels = (0..<(2000 * 2000 * 3)).map { UInt8(truncatingIfNeeded: ($0 / 3 % 2000) / 8) }
        let path = try temporaryFile(try Image(width: 2000, height: 2000, channels: 3, pixels: pixels).jpegData(), "large.jpg")
        XCTAssertEqual(try Image(contentsOf: path, fitting: (300, 300)).width, 2000, "within the default limit: full size")
        MemoryBudget.setLimit(64 << 20)
        XCTAssertEqual(Image.pixelLimit, (64 << 20) / Image.bytesPerPixel)
        let reduced = try Image(contentsOf: path, fitting: (300, 300))
        XCTAssertEqual([reduced.width, reduced.height], [500, 500])
        // DCT scaling is an area average: the horizontal ramp survives at a quarter of the resolution.
        XCTAssertEqual(Double(reduced[250, 250, 0]), Double(pixels[(1000 * 2000 + 1000) * 3]), accuracy: 3)
        for target in [(1500, 1500), nil] as [(Int, Int)?] {
            XCTAssertThrowsError(try Image(contentsOf: path, fitting: target)) { XCTAssertTrue("\($0)".contains("exceeds the limit"), "\($0)") }
        }
    }

    /// Found by fuzzing: a fixed-shape export declaring a huge input made `predict` abort allocating the
    /// pixel values; the processor and the augmentation check their buffers against the budget first.
    func testProcessorAndAugmentationBuffersAreWithinTheBudget() throws {
        MemoryBudget.setLimit(64 << 20)
        let picture = Image(width: 4, height: 4, channels: 3, pixels: [UInt8](repeating: 7, count: 48))
        XCTAssertThrowsError(try SegformerImageProcessor(height: 1 << 20, width: 1 << 19).preprocess(images: [picture])) {
            XCTAssertTrue("\($0)".contains("pixel values of 1×3×1048576×524288") && "\($0)".contains("memory budget"), "\($0)")
        }
        XCTAssertEqual(try SegformerImageProcessor(height: 8, width: 8).preprocess(images: [picture]).pixelValues.shape, [1, 3, 8, 8])
        var rng = SplitMix64(seed: 1)
        let label = Image(width: 4, height: 4, channels: 1, pixels: [UInt8](repeating: 1, count: 16))
        XCTAssertThrowsError(try SegmentationAugmentation(cropSize: 16384).apply(image: picture, label: label, rng: &rng)) {
            XCTAssertTrue("\($0)".contains("16384×16384 crop"), "\($0)")
        }
    }
}
