import Foundation
import GraphIR

/// Helpers for the `predict` command: logits → class mask at the picture's size, mask and overlay PNGs,
/// and for classifiers softmax top-k with HF `id2label` names.
public enum Segmentation {
    /// Upsamples logits [1, C, h, w] (float32) to `height` × `width` exactly as
    /// `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` (no antialias), then takes
    /// the argmax over classes (first maximum wins, NaN counts as largest as in torch.argmax).
    /// Returns `height * width` class ids, row-major. The upsampled logits are never materialised.
    public static func argmaxMask(logits: Tensor, height: Int, width: Int) throws -> [Int] {
        guard logits.dataType == .float else {
            throw SegFormerError.unsupported("segmentation logits of type \(logits.dataType); expected float32")
        }
        guard logits.rank == 4, logits.shape[0] == 1, logits.shape[1] > 0, logits.shape[2] > 0, logits.shape[3] > 0 else {
            throw SegFormerError.invalid("segmentation logits must have shape [1, C, h, w], got \(logits.shape)")
        }
        guard height > 0, width > 0, height <= 1 << 16, width <= 1 << 16 else {
            throw SegFormerError.invalid("mask size \(width)x\(height) is out of range")
        }
        let classes = logits.shape[1], inH = logits.shape[2], inW = logits.shape[3]
        let ys = linearTaps(inSize: inH, outSize: height)
        let xs = linearTaps(inSize: inW, outSize: width)
        let plane = inH * inW
        let src = UnsafePointer(logits.pointer(Float.self))
        var mask = [Int](repeating: 0, count: height * width)
        mask.withUnsafeMutableBufferPointer { out in
            for oy in 0..<height {
                let ty = ys[oy]
                let r0 = ty.i0 * inW, r1 = ty.i1 * inW
                for ox in 0..<width {
                    let tx = xs[ox]
                    var best: Float = -.infinity
                    var bestIndex = 0
                    var p = src
                    for c in 0..<classes {
                        // torch evaluates the separable weights as h-weight × (w-weighted row sums).
                        let top = tx.w0 * p[r0 + tx.i0] + tx.w1 * p[r0 + tx.i1]
                        let bottom = tx.w0 * p[r1 + tx.i0] + tx.w1 * p[r1 + tx.i1]
                        let v = ty.w0 * top + ty.w1 * bottom
                        if v > best || (v.isNaN && !best.isNaN) || c == 0 {
                            best = v
                            bestIndex = c
                        }
                        if best.isNaN { break }
                        p += plane
                    }
                    out[oy * width + ox] = bestIndex
                }
            }
        }
        return mask
    }

    /// Logits [1, C, h, w] (float32) upsampled to [1, C, `height`, `width`] as
    /// `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` computes them (the same
    /// taps and order as `argmaxMask`), for when the upsampled logits themselves are needed — mmseg's
    /// evaluation sums and resizes them again.
    public static func upsampleLogits(_ logits: Tensor, height: Int, width: Int) throws -> Tensor {
        guard logits.dataType == .float, logits.rank == 4, logits.shape[0] == 1 else {
            throw SegFormerError.invalid("segmentation logits must be float32 [1, C, h, w], got \(logits.dataType) \(logits.shape)")
        }
        let classes = logits.shape[1], inH = logits.shape[2], inW = logits.shape[3]
        try MemoryBudget.require(Tensor.checkedByteCount([classes, height, width], .float),
                                 for: "logits upsampled to \(classes)×\(height)×\(width)")
        let ys = linearTaps(inSize: inH, outSize: height), xs = linearTaps(inSize: inW, outSize: width)
        let out = Tensor(uninitialized: .float, shape: [1, classes, height, width])
        let src = UnsafePointer(logits.pointer(Float.self)), dst = out.pointer(Float.self)
        for c in 0..<classes {
            let p = src + c * inH * inW, o = dst + c * height * width
            for oy in 0..<height {
                let ty = ys[oy], r0 = ty.i0 * inW, r1 = ty.i1 * inW
                for ox in 0..<width {
                    let tx = xs[ox]
                    let top = tx.w0 * p[r0 + tx.i0] + tx.w1 * p[r0 + tx.i1]
                    let bottom = tx.w0 * p[r1 + tx.i0] + tx.w1 * p[r1 + tx.i1]
                    o[oy * width + ox] = ty.w0 * top + ty.w1 * bottom
                }
            }
        }
        return out
    }

    /// Source indices and weights of linear interpolation with align_corners=False, as PyTorch computes
    /// them in float: src = max((i + 0.5) * (in / out) - 0.5, 0), i0 = floor(src) clamped, i1 = i0 + 1 unless at the edge.
    static func linearTaps(inSize: Int, outSize: Int) -> [(i0: Int, i1: Int, w0: Float, w1: Float)] {
        let scale = Float(inSize) / Float(outSize)
        return (0..<outSize).map { i in
            var s = scale * (Float(i) + 0.5) - 0.5
            if s < 0 { s = 0 }
            let i0 = min(Int(s.rounded(.down)), inSize - 1)
            let l1 = min(max(s - Float(i0), 0), 1)
            let i1 = i0 < inSize - 1 ? i0 + 1 : i0
            return (i0, i1, 1 - l1, l1)
        }
    }

    /// The mask as an 8-bit single-channel image (class ids must be 0…255).
    public static func maskImage(_ mask: [Int], width: Int, height: Int) throws -> Image {
        guard mask.count == width * height else {
            throw SegFormerError.invalid("mask has \(mask.count) values for \(width)x\(height)")
        }
        var px = [UInt8](repeating: 0, count: mask.count)
        for (i, v) in mask.enumerated() {
            guard v >= 0 && v <= 255 else {
                throw SegFormerError.unsupported("class id \(v) does not fit an 8-bit mask PNG")
            }
            px[i] = UInt8(v)
        }
        return Image(width: width, height: height, channels: 1, pixels: px)
    }

    /// Writes the class-id mask as an 8-bit palette PNG: each pixel's value is its class id (what
    /// training reads back, PIL's mode "P"), and the palette gives each id its ADE20K colour, so a
    /// viewer shows the classes instead of near-black greys.
    public static func writeMaskPNG(_ mask: [Int], width: Int, height: Int, to path: String) throws {
        let image = try maskImage(mask, width: width, height: height)
        let colors = Int(image.pixels.max() ?? 0) + 1
        try image.writePNG(to: path, palette: (0..<colors).map(color(forClass:)))
    }

    /// The ADE20K colour of each of the 150 classes, as used by mmsegmentation and HF examples.
    public static let ade20kPalette: [(UInt8, UInt8, UInt8)] = {
        let v: [UInt8] = [
        120, 120, 120, 180, 120, 120, 6, 230, 230, 80, 50, 50, 4, 200, 3, 120, 120, 80,
        140, 140, 140, 204, 5, 255, 230, 230, 230, 4, 250, 7, 224, 5, 255, 235, 255, 7,
        150, 5, 61, 120, 120, 70, 8, 255, 51, 255, 6, 82, 143, 255, 140, 204, 255, 4,
        255, 51, 7, 204, 70, 3, 0, 102, 200, 61, 230, 250, 255, 6, 51, 11, 102, 255,
        255, 7, 71, 255, 9, 224, 9, 7, 230, 220, 220, 220, 255, 9, 92, 112, 9, 255,
        8, 255, 214, 7, 255, 224, 255, 184, 6, 10, 255, 71, 255, 41, 10, 7, 255, 255,
        224, 255, 8, 102, 8, 255, 255, 61, 6, 255, 194, 7, 255, 122, 8, 0, 255, 20,
        255, 8, 41, 255, 5, 153, 6, 51, 255, 235, 12, 255, 160, 150, 20, 0, 163, 255,
        140, 140, 140, 250, 10, 15, 20, 255, 0, 31, 255, 0, 255, 31, 0, 255, 224, 0,
        153, 255, 0, 0, 0, 255, 255, 71, 0, 0, 235, 255, 0, 173, 255, 31, 0, 255,
        11, 200, 200, 255, 82, 0, 0, 255, 245, 0, 61, 255, 0, 255, 112, 0, 255, 133,
        255, 0, 0, 255, 163, 0, 255, 102, 0, 194, 255, 0, 0, 143, 255, 51, 255, 0,
        0, 82, 255, 0, 255, 41, 0, 255, 173, 10, 0, 255, 173, 255, 0, 0, 255, 153,
        255, 92, 0, 255, 0, 255, 255, 0, 245, 255, 0, 102, 255, 173, 0, 255, 0, 20,
        255, 184, 184, 0, 31, 255, 0, 255, 61, 0, 71, 255, 255, 0, 204, 0, 255, 194,
        0, 255, 82, 0, 10, 255, 0, 112, 255, 51, 0, 255, 0, 194, 255, 0, 122, 255,
        0, 255, 163, 255, 153, 0, 0, 255, 10, 255, 112, 0, 143, 255, 0, 82, 0, 255,
        163, 255, 0, 255, 235, 0, 8, 184, 170, 133, 0, 255, 0, 255, 92, 184, 0, 255,
        255, 0, 31, 0, 184, 255, 0, 214, 255, 255, 0, 112, 92, 255, 0, 0, 224, 255,
        112, 224, 255, 70, 184, 160, 163, 0, 255, 153, 0, 255, 71, 255, 0, 255, 0, 163,
        255, 204, 0, 255, 0, 143, 0, 255, 235, 133, 255, 0, 255, 0, 235, 245, 0, 255,
        255, 0, 122, 255, 245, 0, 10, 190, 212, 214, 255, 0, 0, 204, 255, 20, 0, 255,
        255, 255, 0, 0, 153, 255, 0, 41, 255, 0, 255, 204, 41, 0, 255, 41, 255, 0,
        173, 0, 255, 0, 245, 255, 71, 0, 255, 122, 0, 255, 0, 255, 184, 0, 92, 255,
        184, 255, 0, 0, 133, 255, 255, 214, 0, 25, 194, 194, 102, 255, 0, 92, 0, 255,
        ]
        return stride(from: 0, to: v.count, by: 3).map { (v[$0], v[$0 + 1], v[$0 + 2]) }
    }()

    /// A colour for any class id: the ADE20K palette for 0…149, beyond it a deterministic hashed colour.
    public static func color(forClass id: Int) -> (UInt8, UInt8, UInt8) {
        if id >= 0 && id < ade20kPalette.count { return ade20kPalette[id] }
        var h = UInt64(bitPattern: Int64(id)) &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 29
        h = h &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 32
        return (UInt8(truncatingIfNeeded: h), UInt8(truncatingIfNeeded: h >> 8), UInt8(truncatingIfNeeded: h >> 16))
    }

    /// Palette colours of the mask blended over the picture: `(1 - alpha) * image + alpha * colour`,
    /// rounded. Pixels whose class is in `ignore` (e.g. 255) keep the picture's colour.
    public static func overlay(image: Image, mask: [Int], alpha: Double = 0.5, ignore: Set<Int> = [255]) throws -> Image {
        guard mask.count == image.width * image.height else {
            throw SegFormerError.invalid("overlay: mask has \(mask.count) values for a \(image.width)x\(image.height) image")
        }
        guard alpha >= 0 && alpha <= 1 else { throw SegFormerError.invalid("overlay: alpha \(alpha) outside 0…1") }
        let rgb = image.rgb()
        var px = rgb.pixels
        for (i, cls) in mask.enumerated() where !ignore.contains(cls) {
            let (r, g, b) = color(forClass: cls)
            let col = [r, g, b]
            for c in 0..<3 {
                let v = (1 - alpha) * Double(px[3 * i + c]) + alpha * Double(col[c])
                px[3 * i + c] = UInt8(min(max(v.rounded(), 0), 255))
            }
        }
        return Image(width: rgb.width, height: rgb.height, channels: 3, pixels: px)
    }

    /// Writes the overlay with a legend of the classes present (`Legend`), largest first.
    public static func writeOverlayPNG(image: Image, mask: [Int], alpha: Double = 0.5, to path: String) throws {
        var picture = try overlay(image: image, mask: mask, alpha: alpha)
        var counts: [Int: Int] = [:]
        for c in mask where c != 255 { counts[c, default: 0] += 1 }
        Legend.draw(classes: counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map(\.key), on: &picture)
        try picture.writePNG(to: path)
    }
}

/// Image classification post-processing.
public enum Classification {
    /// Softmax over logits [1, K] (or [K]) → the `k` most probable classes, most probable first
    /// (ties: lower id first). Computed in double.
    public static func topK(logits: Tensor, k: Int = 5) throws -> [(id: Int, probability: Double)] {
        let values: [Double]
        switch logits.dataType {
        case .float, .double, .float16, .bfloat16: values = try logits.doubles()
        default: throw SegFormerError.unsupported("classification logits of type \(logits.dataType)")
        }
        guard (logits.rank == 2 && logits.shape[0] == 1) || logits.rank == 1, !values.isEmpty else {
            throw SegFormerError.invalid("classification logits must have shape [1, K], got \(logits.shape)")
        }
        guard k > 0 else { throw SegFormerError.invalid("top-k: k must be positive, got \(k)") }
        let m = values.max()!
        let e = values.map { exp($0 - m) }
        let s = e.reduce(0, +)
        let probs = e.map { $0 / s }
        let order = probs.indices.sorted { probs[$0] != probs[$1] ? probs[$0] > probs[$1] : $0 < $1 }
        return order.prefix(k).map { ($0, probs[$0]) }
    }

    /// Checks that class names (`id2label` from `source`, a file or option) fit a model with `classes`
    /// classes: ids 0…classes−1, no more, no fewer. No names is fine (ids are printed instead).
    public static func requireNames(_ id2label: [Int: String], fit classes: Int, source: String) throws {
        guard !id2label.isEmpty else { return }
        guard id2label.count == classes, id2label.keys.allSatisfy({ (0..<classes).contains($0) }) else {
            throw SegFormerError.invalid("\(source) names \(id2label.count) classes (ids \(id2label.keys.min()!)…\(id2label.keys.max()!)) but the model has \(classes) classes")
        }
    }

    /// `id2label` of a HuggingFace config.json (`{"0": "wall", ...}`) as `[Int: String]`.
    /// Returns an empty dictionary when the config has no id2label.
    public static func id2label(configJSON data: Data) throws -> [Int: String] {
        let any: Any
        do { any = try JSONSerialization.jsonObject(with: data) } catch {
            throw SegFormerError.invalid("config is not valid JSON\(SegFormerError.parseDetail(error))")
        }
        guard let obj = any as? [String: Any] else { throw SegFormerError.invalid("config must be a JSON object") }
        guard let raw = obj["id2label"], !(raw is NSNull) else { return [:] }
        guard let dict = raw as? [String: Any] else { throw SegFormerError.invalid("config: id2label must be an object") }
        var out: [Int: String] = [:]
        for (key, value) in dict {
            guard let id = Int(key.trimmingCharacters(in: .whitespaces)) else {
                throw SegFormerError.invalid("config: id2label key \"\(key)\" is not an integer")
            }
            guard let name = value as? String else {
                throw SegFormerError.invalid("config: id2label[\"\(key)\"] is not a string")
            }
            out[id] = name
        }
        return out
    }

    /// Class id → name from the `id2label` of the HF config.json at `path`.
    /// - Throws: `SegFormerError.io` when the file cannot be read, `.invalid` (naming it) when it is malformed.
    public static func id2label(configPath path: String) throws -> [Int: String] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw SegFormerError.io("cannot read config \(path): \(SegFormerError.fileSystemReason(error))")
        }
        do { return try id2label(configJSON: data) } catch let e as SegFormerError { throw e.prefixed(path) }
    }
}
