import Foundation
import GraphIR

/// A small baseline JPEG encoder (JFIF, 8-bit, sequential Huffman, no chroma subsampling), written in Swift
/// because CImageCodecs only decodes JPEG. Quantisation uses the example tables of the JPEG standard
/// (ITU T.81 Annex K.1) scaled by `quality` the usual way; the Huffman tables are fixed and simple (short
/// codes for the most common symbols, 9 bits for the rest) rather than the Annex K ones, so files are
/// somewhat larger than libjpeg's but decode with any baseline decoder. Pure function of its input.
enum JPEGEncoder {
    /// Example luminance / chrominance quantisation tables (Annex K.1), row-major.
    static let lumaQ: [Int] = [
        16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
        14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
        18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
    ]
    static let chromaQ: [Int] = {
        var t = [Int](repeating: 99, count: 64)
        let top: [[Int]] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]
        for r in 0..<4 { for c in 0..<4 { t[r * 8 + c] = top[r][c] } }
        return t
    }()

    /// zigzag[k] = row-major index of the k-th coefficient in zigzag order.
    static let zigzag: [Int] = {
        var z: [Int] = []
        for s in 0...14 {
            let lo = max(0, s - 7), hi = min(s, 7)
            let rows = s % 2 == 0 ? Array(stride(from: hi, through: lo, by: -1)) : Array(lo...hi)
            for r in rows { z.append(r * 8 + (s - r)) }
        }
        return z
    }()

    /// cosTable[u * 8 + x] = C(u)/2 · cos((2x+1)uπ/16), so F = T · f · Tᵀ is the 2-D DCT-II of the standard.
    static let cosTable: [Float] = {
        var t = [Float](repeating: 0, count: 64)
        for u in 0..<8 {
            let cu = u == 0 ? 1 / 2.0.squareRoot() : 1.0
            for x in 0..<8 { t[u * 8 + x] = Float(cu / 2 * cos(Double(2 * x + 1) * Double(u) * Double.pi / 16)) }
        }
        return t
    }()

    /// A Huffman table: BITS (codes per length 1…16), HUFFVAL, and the derived code / length per symbol.
    struct Table {
        let bits: [UInt8]
        let values: [UInt8]
        var code = [UInt16](repeating: 0, count: 256)
        var length = [UInt8](repeating: 0, count: 256)

        init(lengths: [(symbol: UInt8, length: Int)]) {
            var bits = [UInt8](repeating: 0, count: 16)
            let sorted = lengths.enumerated().sorted { ($0.element.length, $0.offset) < ($1.element.length, $1.offset) }.map { $0.element }
            for e in sorted { bits[e.length - 1] += 1 }
            self.bits = bits
            values = sorted.map { $0.symbol }
            // Canonical codes (T.81 Annex C).
            var c: UInt16 = 0, len = 1, i = 0
            while i < sorted.count {
                while sorted[i].length > len { c <<= 1; len += 1 }
                code[Int(sorted[i].symbol)] = c
                length[Int(sorted[i].symbol)] = UInt8(len)
                c += 1
                i += 1
            }
        }
    }

    /// DC: categories 0…11, 4 bits each (the all-ones code is never used).
    static let dcTable = Table(lengths: (0...11).map { (UInt8($0), 4) })

    /// AC: EOB and the seven commonest (run, size) pairs get 4 bits, every other symbol 9 bits
    /// (8/16 + 154/512 < 1, and the last 9-bit code is not all ones).
    static let acTable: Table = {
        let short: [UInt8] = [0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x21, 0x12]
        var all = short.map { ($0, 4) }
        var rest: [UInt8] = [0xF0]
        for run in 0..<16 { for size in 1...10 { rest.append(UInt8(run << 4 | size)) } }
        for s in rest where !short.contains(s) { all.append((s, 9)) }
        return Table(lengths: all)
    }()

    struct BitWriter {
        var out: [UInt8] = []
        var acc: UInt32 = 0
        var count = 0

        @inline(__always)
        mutating func write(_ bits: UInt32, _ n: Int) {
            guard n > 0 else { return }
            acc = (acc << UInt32(n)) | (bits & ((1 << UInt32(n)) - 1))
            count += n
            while count >= 8 {
                let byte = UInt8(truncatingIfNeeded: acc >> UInt32(count - 8))
                out.append(byte)
                if byte == 0xFF { out.append(0) }      // byte stuffing
                count -= 8
            }
            acc &= (1 << UInt32(count)) - 1
        }

        mutating func flush() {
            if count > 0 { write(0x7F, 8 - count) }    // pad with 1-bits
        }
    }

    @inline(__always)
    static func category(_ v: Int) -> Int {
        var a = abs(v), n = 0
        while a > 0 { n += 1; a >>= 1 }
        return n
    }

    static func scaledTable(_ base: [Int], quality: Int) -> [Int] {
        let q = max(1, min(100, quality))
        let scale = q < 50 ? 5000 / q : 200 - 2 * q
        return base.map { max(1, min(255, ($0 * scale + 50) / 100)) }
    }

    /// JFIF bytes of a 3-channel (RGB) or 1-channel (grey, stored as RGB) image.
    static func encode(_ image: Image, quality: Int = 90) throws -> Data {
        guard image.channels == 3 || image.channels == 1 else {
            throw SegFormerError.unsupported("JPEG encoding of a \(image.channels)-channel image")
        }
        guard image.width > 0, image.height > 0, image.width <= 65535, image.height <= 65535 else {
            throw SegFormerError.invalid("cannot encode a \(image.width)x\(image.height) image as JPEG")
        }
        let W = image.width, H = image.height, ch = image.channels
        let qt = [scaledTable(lumaQ, quality: quality), scaledTable(chromaQ, quality: quality)]

        var header: [UInt8] = [0xFF, 0xD8]
        func u16(_ v: Int) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
        header += [0xFF, 0xE0] + u16(16) + Array("JFIF".utf8) + [0, 1, 1, 0] + u16(1) + u16(1) + [0, 0]
        header += [0xFF, 0xDB] + u16(2 + 2 * 65)
        for t in 0..<2 {
            header.append(UInt8(t))
            for k in 0..<64 { header.append(UInt8(qt[t][zigzag[k]])) }
        }
        header += [0xFF, 0xC0] + u16(17) + [8] + u16(H) + u16(W) + [3, 1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1]
        for (cls, table) in [(0x00, dcTable), (0x10, acTable)] {
            header += [0xFF, 0xC4] + u16(2 + 1 + 16 + table.values.count) + [UInt8(cls)] + table.bits + table.values
        }
        header += [0xFF, 0xDA] + u16(12) + [3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0]

        var writer = BitWriter()
        writer.out.reserveCapacity(W * H)
        var previousDC = [0, 0, 0]
        var block = [Float](repeating: 0, count: 192), tmp = [Float](repeating: 0, count: 64)
        var coef = [Int](repeating: 0, count: 64)
        let T = cosTable
        image.pixels.withUnsafeBufferPointer { px in
            for by in stride(from: 0, to: H, by: 8) {
                for bx in stride(from: 0, to: W, by: 8) {
                    // Colour conversion with edge replication past the border.
                    for y in 0..<8 {
                        let sy = min(by + y, H - 1)
                        for x in 0..<8 {
                            let i = (sy * W + min(bx + x, W - 1)) * ch
                            let r = Float(px[i]), g = Float(px[i + (ch == 3 ? 1 : 0)]), b = Float(px[i + (ch == 3 ? 2 : 0)])
                            block[y * 8 + x] = 0.299 * r + 0.587 * g + 0.114 * b - 128
                            block[64 + y * 8 + x] = -0.168736 * r - 0.331264 * g + 0.5 * b
                            block[128 + y * 8 + x] = 0.5 * r - 0.418688 * g - 0.081312 * b
                        }
                    }
                    for c in 0..<3 {
                        // F = T f Tᵀ: rows first (tmp[y][u]), then columns.
                        for y in 0..<8 {
                            for u in 0..<8 {
                                var s: Float = 0
                                for x in 0..<8 { s += T[u * 8 + x] * block[c * 64 + y * 8 + x] }
                                tmp[y * 8 + u] = s
                            }
                        }
                        let q = qt[c == 0 ? 0 : 1]
                        for v in 0..<8 {
                            for u in 0..<8 {
                                var s: Float = 0
                                for y in 0..<8 { s += T[v * 8 + y] * tmp[y * 8 + u] }
                                let limit = v == 0 && u == 0 ? 2047 : 1023
                                coef[v * 8 + u] = max(-limit, min(limit, Int((s / Float(q[v * 8 + u])).rounded())))
                            }
                        }
                        // DC difference, then run-length coded AC in zigzag order.
                        let diff = coef[0] - previousDC[c]
                        previousDC[c] = coef[0]
                        let dcCat = category(diff)
                        writer.write(UInt32(dcTable.code[dcCat]), Int(dcTable.length[dcCat]))
                        writer.write(UInt32(truncatingIfNeeded: diff < 0 ? diff - 1 : diff), dcCat)
                        var run = 0
                        for k in 1..<64 {
                            let v = coef[zigzag[k]]
                            if v == 0 { run += 1; continue }
                            while run > 15 {
                                writer.write(UInt32(acTable.code[0xF0]), Int(acTable.length[0xF0]))
                                run -= 16
                            }
                            let cat = category(v)
                            let sym = run << 4 | cat
                            writer.write(UInt32(acTable.code[sym]), Int(acTable.length[sym]))
                            writer.write(UInt32(truncatingIfNeeded: v < 0 ? v - 1 : v), cat)
                            run = 0
                        }
                        if run > 0 { writer.write(UInt32(acTable.code[0]), Int(acTable.length[0])) }
                    }
                }
            }
        }
        writer.flush()
        return Data(header + writer.out + [0xFF, 0xD9])
    }
}
