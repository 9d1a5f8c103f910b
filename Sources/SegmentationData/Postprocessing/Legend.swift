/// A legend drawn into an overlay's top-left corner: per class present, a swatch of its palette
/// colour and its id in a 3×5 pixel font (scaled 2×), on a dark panel. Names are left to the text
/// summary (`predict` prints them); ids keep the legend readable at any size and in any language.
public enum Legend {
    /// At most this many classes are listed (the largest ones).
    public static let maxEntries = 12
    static let scale = 2, swatch = 10, rowHeight = 14, margin = 4

    /// Draws the legend for `classes` (in order) onto `image` (3-channel). It covers at most half the
    /// width and half the height: rows that do not fit are left out, and on a tiny image there is none.
    public static func draw(classes: [Int], on image: inout Image) {
        let fitting = (image.height / 2 - 2 * margin + (rowHeight - swatch)) / rowHeight
        let entries = Array(classes.prefix(min(maxEntries, max(fitting, 0))))
        guard image.channels == 3, !entries.isEmpty else { return }
        let widest = entries.map { String($0).count }.max() ?? 1
        let panelWidth = margin * 3 + swatch + widest * 4 * scale
        let panelHeight = margin * 2 + entries.count * rowHeight - (rowHeight - swatch)
        guard panelWidth <= image.width / 2 else { return }
        fill(&image, x: 0, y: 0, width: panelWidth, height: panelHeight, color: (24, 24, 24))
        for (row, id) in entries.enumerated() {
            let top = margin + row * rowHeight
            fill(&image, x: margin, y: top, width: swatch, height: swatch, color: Segmentation.color(forClass: id))
            for (k, digit) in String(id).enumerated() {
                drawDigit(Int(String(digit))!, on: &image, x: margin * 2 + swatch + k * 4 * scale, y: top)
            }
        }
    }

    /// 3×5 glyphs of 0–9, one row per 3 bits (most significant bit = left column).
    static let digits: [[UInt8]] = [
        [7, 5, 5, 5, 7], [2, 6, 2, 2, 7], [7, 1, 7, 4, 7], [7, 1, 7, 1, 7], [5, 5, 7, 1, 1],
        [7, 4, 7, 1, 7], [7, 4, 7, 5, 7], [7, 1, 1, 1, 1], [7, 5, 7, 5, 7], [7, 5, 7, 1, 7],
    ]

    static func drawDigit(_ d: Int, on image: inout Image, x: Int, y: Int) {
        for (r, bits) in digits[d].enumerated() {
            for c in 0..<3 where bits & (4 >> c) != 0 {
                fill(&image, x: x + c * scale, y: y + r * scale, width: scale, height: scale, color: (255, 255, 255))
            }
        }
    }

    static func fill(_ image: inout Image, x: Int, y: Int, width: Int, height: Int, color: (UInt8, UInt8, UInt8)) {
        // stride (not a range) is empty when the rectangle lies outside the image.
        for yy in stride(from: max(y, 0), to: min(y + height, image.height), by: 1) {
            for xx in stride(from: max(x, 0), to: min(x + width, image.width), by: 1) {
                image[xx, yy, 0] = color.0
                image[xx, yy, 1] = color.1
                image[xx, yy, 2] = color.2
            }
        }
    }
}
