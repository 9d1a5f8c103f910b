import Foundation
import XCTest
import GraphIR
@testable import SegmentationData

/// Masks are palette PNGs (ids as samples, the ADE20K palette as colours); overlays carry a legend.
final class MaskPaletteAndLegendTests: XCTestCase {
    func testMaskPNGHoldsIdsAndShowsPaletteColours() throws {
        let path = NSTemporaryDirectory() + "palette-mask-\(getpid()).png"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let mask = [0, 3, 149, 12, 3, 0]
        try Segmentation.writeMaskPNG(mask, width: 3, height: 2, to: path)
        XCTAssertEqual(try Image(labelsAt: path).pixels, mask.map(UInt8.init))
        let shown = try Image(contentsOf: path)   // what a viewer shows
        for (i, id) in mask.enumerated() {
            let c = Segmentation.ade20kPalette[id]
            XCTAssertEqual(Array(shown.pixels[3 * i..<3 * i + 3]), [c.0, c.1, c.2], "class \(id)")
        }
        XCTAssertThrowsError(try Image(width: 1, height: 1, channels: 1, pixels: [5]).pngData(palette: [(0, 0, 0)])) {
            XCTAssertTrue("\($0)".contains("index 5"), "\($0)")
        }
    }

    func testLegendListsTheClassesPresent() {
        var picture = Image(width: 200, height: 120, channels: 3, pixels: [UInt8](repeating: 90, count: 200 * 120 * 3))
        Legend.draw(classes: [12, 7], on: &picture)
        let m = Legend.margin
        // Row k: a swatch of the class colour at (margin, margin + k·rowHeight), then white digits.
        for (row, id) in [12, 7].enumerated() {
            let c = Segmentation.color(forClass: id)
            let y = m + row * Legend.rowHeight + 2
            XCTAssertEqual([picture[m + 2, y, 0], picture[m + 2, y, 1], picture[m + 2, y, 2]], [c.0, c.1, c.2])
        }
        let digitsX = 2 * m + Legend.swatch
        // "12": the '1' glyph's top row is .#. — its middle column is white.
        XCTAssertEqual(picture[digitsX + Legend.scale, m, 0], 255)
        XCTAssertEqual(picture[digitsX, m, 0], 24, "panel background beside the stroke")
        XCTAssertEqual(picture[150, 100, 0], 90, "the rest of the overlay is untouched")
        // A tiny overlay gets no legend rather than one covering it.
        var tiny = Image(width: 37, height: 23, channels: 3, pixels: [UInt8](repeating: 90, count: 37 * 23 * 3))
        Legend.draw(classes: [3, 0], on: &tiny)
        XCTAssertEqual(Set(tiny.pixels), [90])
    }
}
