import Foundation
import GraphIR

/// A seeded generator of a small synthetic scene-parsing dataset in the ADEChallengeData2016 layout:
///
/// ```
/// FOLDER/images/training/SYN_train_00000001.jpg      RGB scene (JPEG, like ADE20K; or .png on request)
/// FOLDER/annotations/training/SYN_train_00000001.png 8-bit grey class ids (ADE20K ids, 0 = other)
/// FOLDER/images/validation/SYN_val_00000001.jpg
/// FOLDER/annotations/validation/SYN_val_00000001.png
/// FOLDER/config.json                                 HF-style id2label / label2id (see `labels`)
/// ```
///
/// JPEG images are encoded by libjpeg-turbo (through CImageCodecs);
/// `imageFormat: .png` writes lossless PNG images instead (then `images/…/NAME.png`).
///
/// Scenes are landscapes / street views: a sky (gradient + cloud noise), optional mountains, grass ground,
/// optional water, optional road (with lane markings), buildings with window grids, trees (blob crowns on
/// trunks) and a little "other" clutter (poles, signs, boxes, labelled 0), composed back to front in order
/// of their foot line so nearer things occlude farther ones, with colour / brightness / contrast jitter
/// and noise textures. Everything is a pure function of (seed, split, index): the same seed gives the same
/// bytes, on any thread count.
///
/// Labels. The annotation PNGs hold ADE20K ids (objectInfo150.csv: 2 building, 3 sky, 5 tree, 7 road,
/// 10 grass, 17 mountain, 22 water; 0 other). Two ways to train on them:
/// - Compact (recommended, what `config.json` describes): a 7-class head; map each annotation value with
///   `SyntheticScenes.trainingLookup` (ADE id → compact class 0…6, everything else → 255 = ignored)
///   instead of `do_reduce_labels`. 7 output channels train much faster than 150.
/// - Full ADE: a 150-class head (e.g. an ADE20K-pretrained model) with the usual `do_reduce_labels`
///   (ADE id k → k−1, 0 → 255); only 7 of the 150 classes ever occur.
public enum SyntheticScenes {

    /// One class the generator draws.
    public struct Label: Sendable, Equatable {
        /// Class index in the compact 7-class label set (the model's output channel).
        public let index: Int
        /// ADE20K id (1-based, objectInfo150.csv `Idx`), the value stored in the annotation PNGs.
        public let adeId: Int
        /// Short name (first name of the ADE entry).
        public let name: String
    }

    /// The compact label set, in compact-index order.
    public static let labels: [Label] = [
        Label(index: 0, adeId: 2, name: "building"),
        Label(index: 1, adeId: 3, name: "sky"),
        Label(index: 2, adeId: 5, name: "tree"),
        Label(index: 3, adeId: 7, name: "road"),
        Label(index: 4, adeId: 10, name: "grass"),
        Label(index: 5, adeId: 17, name: "mountain"),
        Label(index: 6, adeId: 22, name: "water"),
    ]

    /// Value stored for pixels of no listed class ("other"); becomes 255 (ignored) in both label schemes.
    public static let otherId: UInt8 = 0

    /// Annotation value (ADE id) → compact class index, or 255 (ignore) for 0 and unknown ids. 256 entries.
    public static let trainingLookup: [UInt8] = {
        var t = [UInt8](repeating: 255, count: 256)
        for l in labels { t[l.adeId] = UInt8(l.index) }
        return t
    }()

    /// Annotation value → ADE 150-class index as `do_reduce_labels` gives it (k → k−1, 0 → 255). 256 entries.
    public static let reducedADELookup: [UInt8] = {
        var t = [UInt8](repeating: 255, count: 256)
        for k in 1...150 { t[k] = UInt8(k - 1) }
        return t
    }()

    /// `config.json` contents: HF id2label / label2id of the compact set, plus the ADE ids they stand for.
    public static func configJSON(seed: UInt64? = nil, width: Int? = nil, height: Int? = nil) -> Data {
        var id2label: [String: String] = [:], label2id: [String: Int] = [:], adeIds: [String: Int] = [:]
        for l in labels {
            id2label[String(l.index)] = l.name
            label2id[l.name] = l.index
            adeIds[String(l.index)] = l.adeId
        }
        var info: [String: Any] = [
            "annotation_values": "ADE20K ids of objectInfo150.csv (0 = other); map with ade_ids, not reduce_labels",
            "ade_ids": adeIds,
        ]
        if let seed { info["seed"] = String(seed) }
        if let width { info["width"] = width }
        if let height { info["height"] = height }
        let root: [String: Any] = [
            "num_labels": labels.count,
            "id2label": id2label,
            "label2id": label2id,
            "semantic_loss_ignore_index": 255,
            "synthetic_scenes": info,
        ]
        // JSONSerialization with sorted keys: deterministic bytes.
        return (try? JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])) ?? Data()
    }

    /// What `generate` wrote.
    public struct Summary: Sendable, Equatable {
        public var folder: String
        public var trainCount: Int
        public var validationCount: Int
        public var width: Int
        public var height: Int
        public var seed: UInt64
        /// Extension of the image files ("jpg" or "png").
        public var imageExtension: String
        /// Pixels per annotation value (index = ADE id, 0 = other), over both splits. 256 entries.
        public var pixelCounts: [Int]
        /// Number of images in which each annotation value occurs. 256 entries.
        public var imageCounts: [Int]
    }

    /// How the scene images are stored (annotations are always 8-bit grey PNG).
    public enum ImageFormat: String, Sendable {
        /// Baseline JPEG, quality 92, file extension "jpg" (ADE20K's layout).
        case jpeg
        /// Lossless PNG, extension "png".
        case png

        public var fileExtension: String { self == .jpeg ? "jpg" : "png" }
    }

    public static let trainingPrefix = "SYN_train_"
    public static let validationPrefix = "SYN_val_"

    /// Writes `trainCount` training and `validationCount` validation scenes of `width`×`height` into `folder`.
    /// Refuses a folder that exists and is not empty unless `overwrite` is true (then it replaces `images/`,
    /// `annotations/` and `config.json` and leaves anything else alone). `progress(done, total)` is
    /// called once per written image, serialised, possibly from a worker thread.
    @discardableResult
    public static func generate(into folder: String, trainCount: Int, validationCount: Int,
                                width: Int, height: Int, seed: UInt64,
                                imageFormat: ImageFormat = .jpeg, overwrite: Bool = false,
                                progress: ((Int, Int) -> Void)? = nil) throws -> Summary {
        guard trainCount >= 0, validationCount >= 0 else {
            throw SegFormerError.invalid("synthetic scenes: negative image count (train \(trainCount), validation \(validationCount))")
        }
        guard width >= 16, height >= 16, width <= 4096, height <= 4096 else {
            throw SegFormerError.invalid("synthetic scenes: size \(width)x\(height) outside 16…4096")
        }
        let fm = FileManager.default
        if try OutputGuard.requireEmptyFolder(folder, overwrite: overwrite) {
            for name in ["images", "annotations", "config.json"] {
                let p = folder + "/" + name
                if fm.fileExists(atPath: p) {
                    do { try fm.removeItem(atPath: p) } catch {
                        throw SegFormerError.io("synthetic scenes: cannot remove \(p): \(SegFormerError.fileSystemReason(error))")
                    }
                }
            }
        }
        for sub in ["images/training", "images/validation", "annotations/training", "annotations/validation"] {
            do { try fm.createDirectory(atPath: folder + "/" + sub, withIntermediateDirectories: true) } catch {
                throw SegFormerError.io("synthetic scenes: cannot create \(folder)/\(sub): \(SegFormerError.fileSystemReason(error))")
            }
        }

        let total = trainCount + validationCount
        let lock = NSLock()
        var done = 0
        var firstError: Error?
        var pixelCounts = [Int](repeating: 0, count: 256)
        var imageCounts = [Int](repeating: 0, count: 256)

        // Images are independent (each has its own RNG stream), so generate them in parallel.
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8))
        let chunk = max(1, (total + workers * 4 - 1) / (workers * 4))
        let chunks = (total + chunk - 1) / chunk
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            for i in (c * chunk)..<min(total, (c + 1) * chunk) {
                lock.lock(); let failed = firstError != nil; lock.unlock()
                if failed { return }
                let training = i < trainCount
                let index = training ? i : i - trainCount
                let split = training ? "training" : "validation"
                let name = (training ? trainingPrefix : validationPrefix) + String(format: "%08d", index + 1)
                do {
                    let scene = render(width: width, height: height, seed: seed, training: training, index: index)
                    let imagePath = "\(folder)/images/\(split)/\(name).\(imageFormat.fileExtension)"
                    switch imageFormat {
                    case .png: try scene.image.writePNG(to: imagePath)
                    case .jpeg:
                        let data = try scene.image.jpegData(quality: 92)
                        do { try data.write(to: URL(fileURLWithPath: imagePath), options: .atomic) } catch {
                            throw SegFormerError.io("cannot write image \(imagePath): \(SegFormerError.fileSystemReason(error))")
                        }
                    }
                    try scene.labels.writePNG(to: "\(folder)/annotations/\(split)/\(name).png")
                    var counts = [Int](repeating: 0, count: 256)
                    for v in scene.labels.pixels { counts[Int(v)] += 1 }
                    lock.lock()
                    for k in 0..<256 where counts[k] > 0 {
                        pixelCounts[k] += counts[k]
                        imageCounts[k] += 1
                    }
                    done += 1
                    progress?(done, total)
                    lock.unlock()
                } catch {
                    lock.lock(); if firstError == nil { firstError = error }; lock.unlock()
                    return
                }
            }
        }
        if let e = firstError { throw e }
        do {
            try configJSON(seed: seed, width: width, height: height).write(to: URL(fileURLWithPath: folder + "/config.json"))
        } catch {
            throw SegFormerError.io("synthetic scenes: cannot write \(folder)/config.json: \(SegFormerError.fileSystemReason(error))")
        }
        return Summary(folder: folder, trainCount: trainCount, validationCount: validationCount,
                       width: width, height: height, seed: seed, imageExtension: imageFormat.fileExtension,
                       pixelCounts: pixelCounts, imageCounts: imageCounts)
    }

    /// One scene in memory: RGB image and its annotation (ADE ids). Pure function of its arguments.
    public static func render(width: Int, height: Int, seed: UInt64, training: Bool, index: Int) -> (image: Image, labels: Image) {
        var rng = SceneRNG(seed: seed, stream: (training ? 0 : 1) &+ UInt64(truncatingIfNeeded: index) &* 2)
        var canvas = Canvas(width: width, height: height)
        composeScene(&canvas, &rng)
        return canvas.finish(rng: &rng)
    }
}

// MARK: - Random numbers and noise

/// SplitMix64: tiny, fast, and identical on every platform.
struct SceneRNG {
    var state: UInt64

    init(seed: UInt64, stream: UInt64) {
        state = seed ^ 0x9E37_79B9_7F4A_7C15
        state = SceneRNG.mix(state &+ stream &* 0xD1B5_4A32_D192_ED03)
    }

    static func mix(_ z0: UInt64) -> UInt64 {
        var z = z0
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SceneRNG.mix(state)
    }

    /// Uniform in [0, 1).
    mutating func unit() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }
    mutating func uniform(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * unit() }
    /// Uniform integer in lo...hi.
    mutating func int(_ lo: Int, _ hi: Int) -> Int { lo + Int(next() % UInt64(hi - lo + 1)) }
    mutating func chance(_ p: Float) -> Bool { unit() < p }
}

/// Value noise on an integer lattice with smooth interpolation, and its fractal sum. Hash-based, so it
/// needs no tables and depends only on (salt, coordinates).
struct Noise {
    let salt: UInt64

    @inline(__always)
    func lattice(_ ix: Int, _ iy: Int) -> Float {
        let h = SceneRNG.mix(salt ^ (UInt64(bitPattern: Int64(ix)) &* 0x8CB9_2BA7_2F3D_8DD7)
                             ^ (UInt64(bitPattern: Int64(iy)) &* 0xC2B2_AE3D_27D4_EB4F))
        return Float(h >> 40) * (1.0 / 16_777_216.0)
    }

    /// Smooth value noise in [0, 1) at (x, y) in lattice units.
    @inline(__always)
    func value(_ x: Float, _ y: Float) -> Float {
        let fx = x.rounded(.down), fy = y.rounded(.down)
        let ix = Int(fx), iy = Int(fy)
        var tx = x - fx, ty = y - fy
        tx = tx * tx * (3 - 2 * tx)
        ty = ty * ty * (3 - 2 * ty)
        let a = lattice(ix, iy), b = lattice(ix + 1, iy)
        let c = lattice(ix, iy + 1), d = lattice(ix + 1, iy + 1)
        let top = a + (b - a) * tx, bottom = c + (d - c) * tx
        return top + (bottom - top) * ty
    }

    /// Fractal sum of `octaves` octaves, roughly in [0, 1), base frequency 1/`scale` per pixel.
    @inline(__always)
    func fbm(_ x: Float, _ y: Float, scale: Float, octaves: Int = 3) -> Float {
        var sum: Float = 0, amp: Float = 0.5, norm: Float = 0, f = 1 / scale
        for o in 0..<octaves {
            sum += amp * value(x * f + Float(o) * 17.31, y * f - Float(o) * 9.77)
            norm += amp
            amp *= 0.5
            f *= 2
        }
        return sum / norm
    }
}

// MARK: - Canvas

struct RGB {
    var r: Float, g: Float, b: Float
    init(_ r: Float, _ g: Float, _ b: Float) { self.r = r; self.g = g; self.b = b }
    static func * (c: RGB, s: Float) -> RGB { RGB(c.r * s, c.g * s, c.b * s) }
    static func + (a: RGB, b: RGB) -> RGB { RGB(a.r + b.r, a.g + b.g, a.b + b.b) }
    func mix(_ o: RGB, _ t: Float) -> RGB { RGB(r + (o.r - r) * t, g + (o.g - g) * t, b + (o.b - b) * t) }
}

/// Float RGB picture (0…255 scale) plus a label plane, painted in place.
struct Canvas {
    let width: Int, height: Int
    var rgb: [Float]
    var label: [UInt8]

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
        rgb = [Float](repeating: 0, count: width * height * 3)
        label = [UInt8](repeating: SyntheticScenes.otherId, count: width * height)
    }

    @inline(__always)
    mutating func set(_ x: Int, _ y: Int, _ c: RGB, _ id: UInt8) {
        let i = y * width + x
        rgb[3 * i] = c.r; rgb[3 * i + 1] = c.g; rgb[3 * i + 2] = c.b
        label[i] = id
    }

    /// Paints every pixel of the rows y0..<y1 (clipped) for which `shade` returns a colour.
    mutating func paint(rows y0: Int, _ y1: Int, cols x0: Int = 0, _ x1: Int = Int.max, id: UInt8,
                        _ shade: (Int, Int) -> RGB?) {
        let ya = max(0, y0), yb = min(height, y1), xa = max(0, x0), xb = min(width, x1)
        guard ya < yb, xa < xb else { return }
        for y in ya..<yb {
            for x in xa..<xb {
                if let c = shade(x, y) { set(x, y, c, id) }
            }
        }
    }

    /// Global photometric jitter and sensor noise, then quantisation to 8 bits.
    func finish(rng: inout SceneRNG) -> (image: Image, labels: Image) {
        let brightness = rng.uniform(-18, 18)
        let contrast = rng.uniform(0.8, 1.2)
        let gain = RGB(rng.uniform(0.92, 1.08), rng.uniform(0.92, 1.08), rng.uniform(0.92, 1.08))
        let sigma = rng.uniform(2, 7)
        let grain = Noise(salt: rng.next())
        var px = [UInt8](repeating: 0, count: width * height * 3)
        let g = [gain.r, gain.g, gain.b]
        for y in 0..<height {
            for x in 0..<width {
                let i = y * width + x
                // Cheap per-pixel noise from the hash lattice (uniform, centred).
                let n0 = grain.lattice(x, y) - 0.5
                for c in 0..<3 {
                    var v = rgb[3 * i + c] * g[c]
                    v = (v - 128) * contrast + 128 + brightness
                    v += n0 * sigma * 3.4 + (grain.lattice(x + 7919 * (c + 1), y) - 0.5) * sigma * 1.5
                    px[3 * i + c] = UInt8(max(0, min(255, v.rounded())))
                }
            }
        }
        return (Image(width: width, height: height, channels: 3, pixels: px),
                Image(width: width, height: height, channels: 1, pixels: label))
    }
}

// MARK: - Scene composition

private let skyId: UInt8 = 3, buildingId: UInt8 = 2, treeId: UInt8 = 5, roadId: UInt8 = 7
private let grassId: UInt8 = 10, mountainId: UInt8 = 17, waterId: UInt8 = 22

@inline(__always) private func smoothstep(_ a: Float, _ b: Float, _ x: Float) -> Float {
    let t = max(0, min(1, (x - a) / (b - a)))
    return t * t * (3 - 2 * t)
}

@inline(__always) private func fract(_ x: Float) -> Float { x - x.rounded(.down) }

private func jitter(_ c: RGB, _ amount: Float, _ rng: inout SceneRNG) -> RGB {
    RGB(c.r + rng.uniform(-amount, amount), c.g + rng.uniform(-amount, amount), c.b + rng.uniform(-amount, amount))
}

/// Things standing on the ground, drawn back to front by their foot line.
private enum Standing {
    case building(x0: Int, x1: Int, top: Int, foot: Int, roof: Int, color: RGB, windows: (cw: Float, ch: Float, fill: Float, dark: RGB, lit: RGB, litP: Float), salt: UInt64)
    case tree(cx: Float, foot: Float, trunkTop: Float, trunkW: Float, crown: [(x: Float, y: Float, r: Float)], conifer: Bool, leaf: RGB, bark: RGB, salt: UInt64)
    case clutter(kind: Int, x: Float, foot: Float, size: Float, color: RGB, salt: UInt64)

    var foot: Float {
        switch self {
        case .building(_, _, _, let f, _, _, _, _): return Float(f)
        case .tree(_, let f, _, _, _, _, _, _, _): return f
        case .clutter(_, _, let f, _, _, _): return f
        }
    }
}

/// Paints one random scene into `cv`. All randomness comes from `rng`, in a fixed order.
func composeScene(_ cv: inout Canvas, _ rng: inout SceneRNG) {
    let W = cv.width, H = cv.height
    let w = Float(W), h = Float(H)
    let s = min(w, h) / 128                       // feature scale relative to a 128-pixel image
    let horizon = Int(h * rng.uniform(0.28, 0.62))
    let hz = Float(horizon)
    let groundH = max(1, h - hz)
    let urban = rng.chance(0.55)

    // Sky: vertical gradient, clouds from stretched fractal noise.
    let skyKind = rng.unit()
    var zenith: RGB, low: RGB, cloud: RGB
    if skyKind < 0.6 {            // clear blue
        zenith = jitter(RGB(45, 100, 190), 20, &rng); low = jitter(RGB(170, 205, 235), 15, &rng); cloud = jitter(RGB(245, 245, 245), 8, &rng)
    } else if skyKind < 0.8 {     // sunset
        zenith = jitter(RGB(70, 70, 150), 20, &rng); low = jitter(RGB(245, 160, 90), 20, &rng); cloud = jitter(RGB(235, 170, 150), 15, &rng)
    } else {                      // overcast
        zenith = jitter(RGB(140, 145, 155), 15, &rng); low = jitter(RGB(200, 200, 205), 12, &rng); cloud = jitter(RGB(225, 225, 228), 10, &rng)
    }
    let cover = rng.uniform(0.4, 0.75)
    let cloudNoise = Noise(salt: rng.next())
    let cloudScale = rng.uniform(18, 40) * s
    cv.paint(rows: 0, H, id: skyId) { x, y in
        let t = Float(y) / max(1, hz)
        let base = zenith.mix(low, min(1, t))
        let n = cloudNoise.fbm(Float(x) * 0.5, Float(y) * 1.4, scale: cloudScale, octaves: 4)
        return base.mix(cloud, smoothstep(cover, cover + 0.18, n) * 0.9)
    }

    // Mountains: one or two ridges behind the horizon.
    if rng.chance(0.5) {
        let layers = rng.int(1, 2)
        for layer in 0..<layers {
            let amp = h * rng.uniform(0.15, 0.35) * (layer == 0 ? 1 : 0.6)
            let ridgeNoise = Noise(salt: rng.next())
            let ridgeScale = w * rng.uniform(0.2, 0.5)
            var rock = rng.chance(0.5) ? jitter(RGB(105, 110, 130), 20, &rng) : jitter(RGB(120, 100, 80), 20, &rng)
            if layer == 0 { rock = rock.mix(low, 0.35) }          // far ridge: hazier
            let snow = rng.chance(0.4)
            let tex = Noise(salt: rng.next())
            let offset = Float(layer) * 1000
            cv.paint(rows: Int(hz - amp) - 1, horizon + 2, id: mountainId) { x, y in
                // Stretch the noise (it clusters near 0.5) so the ridge has real peaks and valleys.
                let r = ridgeNoise.fbm(Float(x) + offset, 0.5, scale: ridgeScale, octaves: 4)
                let ridge = hz - amp * max(0.08, min(1, (r - 0.25) * 2.2))
                let fy = Float(y)
                guard fy >= ridge else { return nil }
                let n = tex.fbm(Float(x), fy, scale: 6 * s, octaves: 3)
                var c = rock * (0.75 + 0.5 * n)
                if snow && fy < ridge + amp * 0.18 && ridge < hz - amp * 0.72 { c = RGB(235, 238, 245) * (0.9 + 0.15 * n) }
                return c
            }
        }
    }

    // Grass: textured, hazier towards the horizon.
    let grass = rng.chance(0.3) ? jitter(RGB(140, 150, 70), 20, &rng) : jitter(RGB(70, 125, 55), 20, &rng)
    let grassPatch = Noise(salt: rng.next()), grassBlade = Noise(salt: rng.next())
    let patchScale = rng.uniform(12, 30) * s
    cv.paint(rows: horizon, H, id: grassId) { x, y in
        let fx = Float(x), fy = Float(y)
        let patch = grassPatch.fbm(fx, fy, scale: patchScale, octaves: 2)
        let blade = grassBlade.value(fx * 0.9, fy * 0.25)
        var c = grass * (0.7 + 0.45 * patch + 0.3 * (blade - 0.5))
        let depth = (fy - hz) / groundH
        c = c.mix(low, 0.35 * (1 - depth) * (1 - depth))
        return c
    }

    // Water: a lake or sea starting at the horizon, with a wavy near shore and ripples.
    if rng.chance(0.4) {
        let full = rng.chance(0.5)
        let x0 = full ? -1 : Int(w * rng.uniform(-0.2, 0.5)), x1 = full ? W + 1 : x0 + Int(w * rng.uniform(0.4, 0.9))
        let depth = groundH * rng.uniform(0.2, 0.55)
        let shore = Noise(salt: rng.next()), ripple = Noise(salt: rng.next())
        let deep = rng.chance(0.5) ? jitter(RGB(40, 80, 130), 15, &rng) : jitter(RGB(40, 105, 110), 15, &rng)
        let reflect = rng.uniform(0.2, 0.5)
        cv.paint(rows: horizon, horizon + Int(depth * 1.3) + 2, cols: x0, x1, id: waterId) { x, y in
            let fx = Float(x), fy = Float(y)
            let edge = hz + depth * (0.75 + 0.5 * shore.fbm(fx, 0, scale: 20 * s, octaves: 2))
            guard fy < edge else { return nil }
            let r = ripple.value(fx / (10 * s), fy / (1.2 * s))
            let c = deep.mix(low, reflect * (1 - (fy - hz) / (depth * 1.3)))
            return c * (0.85 + 0.3 * r)
        }
    }

    // Road: a perspective road to a vanishing point or a horizontal street band.
    var roadTop = H
    if rng.chance(urban ? 0.85 : 0.45) {
        let grey = rng.uniform(70, 125)
        let asphalt = jitter(RGB(grey, grey, grey + 4), 6, &rng)
        let tex = Noise(salt: rng.next())
        let markYellow = rng.chance(0.4)
        let mark = markYellow ? RGB(220, 190, 60) : RGB(235, 235, 230)
        if rng.chance(0.5) {
            let vx = w * rng.uniform(0.3, 0.7), bx = w * rng.uniform(0.2, 0.8)
            let bw = w * rng.uniform(0.25, 0.55)
            let dashes = rng.uniform(3, 6)
            roadTop = horizon + 1
            cv.paint(rows: horizon + 1, H, id: roadId) { x, y in
                let fx = Float(x) + 0.5, t = (Float(y) + 0.5 - hz) / groundH
                let centre = vx + (bx - vx) * t, half = bw * t
                guard abs(fx - centre) < half else { return nil }
                let n = tex.fbm(fx, Float(y), scale: 3 * s, octaves: 2)
                if abs(fx - centre) < max(0.6, 2.2 * s * t), fract(dashes / max(t, 0.05)) < 0.5 { return mark * (0.9 + 0.1 * n) }
                return asphalt * (0.8 + 0.4 * n)
            }
        } else {
            let top = hz + groundH * rng.uniform(0.2, 0.55)
            let thick = groundH * rng.uniform(0.15, 0.3)
            let period = rng.uniform(10, 18) * s
            roadTop = Int(top)
            cv.paint(rows: Int(top), Int(top + thick), id: roadId) { x, y in
                let fx = Float(x), fy = Float(y)
                let n = tex.fbm(fx, fy, scale: 3 * s, octaves: 2)
                if abs(fy + 0.5 - (top + thick / 2)) < max(0.6, 1.0 * s), fract(fx / period) < 0.55 { return mark * (0.9 + 0.1 * n) }
                return asphalt * (0.8 + 0.4 * n)
            }
        }
    }

    // Standing things: buildings, trees, clutter.
    var things: [Standing] = []
    let palette: [RGB] = [RGB(150, 70, 50), RGB(200, 180, 140), RGB(130, 130, 135), RGB(220, 218, 210),
                          RGB(90, 120, 150), RGB(75, 68, 72), RGB(205, 185, 110), RGB(170, 110, 90)]
    let buildingCount = urban ? rng.int(2, 6) : rng.int(0, 1)
    for _ in 0..<buildingCount {
        let footLimit = min(Float(roadTop), hz + groundH * 0.3)
        let foot = hz + (footLimit - hz) * rng.unit()
        let bw = w * rng.uniform(0.12, 0.35), bh = h * rng.uniform(0.15, 0.55)
        let x0 = w * rng.uniform(-0.15, 0.95)
        let color = jitter(palette[rng.int(0, palette.count - 1)], 15, &rng)
        let roof = rng.chance(0.3) ? Int(bw * rng.uniform(0.2, 0.45)) : 0
        let windows = (cw: rng.uniform(5, 10) * s, ch: rng.uniform(6, 12) * s, fill: rng.uniform(0.45, 0.7),
                       dark: jitter(RGB(45, 55, 70), 15, &rng), lit: jitter(RGB(230, 210, 140), 15, &rng),
                       litP: rng.uniform(0, 0.3))
        things.append(.building(x0: Int(x0), x1: Int(x0 + bw), top: Int(foot - bh), foot: Int(foot), roof: roof,
                                color: color, windows: windows, salt: rng.next()))
    }
    let treeCount = urban ? rng.int(0, 3) : rng.int(1, 6)
    for _ in 0..<treeCount {
        let foot = hz + groundH * rng.uniform(0.03, 0.95)
        let p = 0.35 + 0.65 * (foot - hz) / groundH       // nearer = larger
        let r = h * rng.uniform(0.07, 0.15) * p
        let trunkH = r * rng.uniform(0.6, 1.3)
        let cx = w * rng.uniform(-0.05, 1.05)
        let conifer = rng.chance(0.3)
        var crown: [(x: Float, y: Float, r: Float)] = []
        let cy = foot - trunkH - r * 0.7
        if conifer {
            crown = [(cx, foot - trunkH * 0.5, r * rng.uniform(0.7, 1.0)), (cx, r * rng.uniform(2.2, 3.2), 0)]
        } else {
            for _ in 0..<rng.int(3, 6) {
                crown.append((cx + r * rng.uniform(-0.6, 0.6), cy + r * rng.uniform(-0.5, 0.4), r * rng.uniform(0.5, 0.85)))
            }
        }
        let leaf = rng.chance(0.2) ? jitter(RGB(150, 120, 40), 20, &rng) : jitter(RGB(45, 95, 40), 18, &rng)
        let bark = jitter(RGB(85, 60, 40), 12, &rng)
        things.append(.tree(cx: cx, foot: foot, trunkTop: cy, trunkW: max(1.2, r * 0.22), crown: crown,
                            conifer: conifer, leaf: leaf, bark: bark, salt: rng.next()))
    }
    for _ in 0..<rng.int(0, 3) {
        let foot = hz + groundH * rng.uniform(0.1, 1.0)
        let p = 0.35 + 0.65 * (foot - hz) / groundH
        let color = RGB(rng.uniform(20, 240), rng.uniform(20, 240), rng.uniform(20, 240))
        things.append(.clutter(kind: rng.int(0, 2), x: w * rng.unit(), foot: foot, size: h * rng.uniform(0.08, 0.2) * p,
                               color: color, salt: rng.next()))
    }
    // Back to front; the sort is stable on the generation order, so ties stay deterministic.
    let order = things.indices.sorted { (things[$0].foot, $0) < (things[$1].foot, $1) }
    for i in order { draw(things[i], on: &cv, s: s) }
}

private func draw(_ thing: Standing, on cv: inout Canvas, s: Float) {
    switch thing {
    case let .building(x0, x1, top, foot, roof, color, win, salt):
        let tex = Noise(salt: salt)
        let bw = Float(x1 - x0), mid = Float(x0 + x1) / 2
        let margin = win.cw * 0.6
        cv.paint(rows: top - roof, foot, cols: x0, x1, id: buildingId) { x, y in
            let fx = Float(x) + 0.5, fy = Float(y) + 0.5
            if y < top {   // gable roof
                let rise = Float(top) - fy
                guard abs(fx - mid) < bw / 2 * (1 - rise / Float(max(roof, 1))) else { return nil }
                return RGB(110, 60, 50) * (0.8 + 0.3 * tex.value(fx / 2, fy / 2))
            }
            let n = tex.fbm(fx, fy, scale: 4 * s, octaves: 2)
            let lx = fx - Float(x0) - margin, ly = fy - Float(top) - margin
            if lx > 0, ly > 0, fx < Float(x1) - margin, fy < Float(foot) - win.ch {
                let cx = lx / win.cw, cy = ly / win.ch
                if fract(cx) < win.fill && fract(cy) < win.fill + 0.1 {
                    let lit = tex.lattice(Int(cx) + 5000, Int(cy)) < win.litP
                    return (lit ? win.lit : win.dark) * (0.9 + 0.2 * n)
                }
            }
            return color * (0.85 + 0.3 * n)
        }
    case let .tree(cx, foot, trunkTop, trunkW, crown, conifer, leaf, bark, salt):
        let tex = Noise(salt: salt)
        cv.paint(rows: Int(trunkTop), Int(foot) + 1, cols: Int(cx - trunkW), Int(cx + trunkW) + 1, id: treeId) { x, y in
            guard abs(Float(x) + 0.5 - cx) < trunkW / 2 + 0.3 else { return nil }
            return bark * (0.8 + 0.4 * tex.value(Float(x), Float(y) / 3))
        }
        if conifer {
            let baseY = crown[0].y, halfBase = crown[0].r, height = crown[1].x
            cv.paint(rows: Int(baseY - height) - 1, Int(baseY) + 1, cols: Int(cx - halfBase) - 1, Int(cx + halfBase) + 2, id: treeId) { x, y in
                let fx = Float(x) + 0.5, fy = Float(y) + 0.5
                let t = (baseY - fy) / height        // 0 at the base, 1 at the tip
                guard t >= 0, t <= 1 else { return nil }
                let jag = 0.15 * (tex.value(fx / 2, fy / 2) - 0.5) + 0.1 * fract(t * 5)
                guard abs(fx - cx) < halfBase * (1 - t) * (1 + jag) else { return nil }
                return leaf * (0.7 + 0.5 * tex.fbm(fx, fy, scale: 2.5 * s, octaves: 2))
            }
        } else {
            var minX = Float.greatestFiniteMagnitude, maxX = -minX, minY = minX, maxY = -minX
            for c in crown {
                minX = min(minX, c.x - c.r * 1.3); maxX = max(maxX, c.x + c.r * 1.3)
                minY = min(minY, c.y - c.r * 1.3); maxY = max(maxY, c.y + c.r * 1.3)
            }
            let top = minY, span = max(1, maxY - minY)
            cv.paint(rows: Int(minY), Int(maxY) + 1, cols: Int(minX), Int(maxX) + 1, id: treeId) { x, y in
                let fx = Float(x) + 0.5, fy = Float(y) + 0.5
                let edge = 1 + 0.35 * (tex.fbm(fx, fy, scale: 2.5 * s, octaves: 2) - 0.5)
                var inside = false
                for c in crown {
                    let dx = fx - c.x, dy = fy - c.y
                    if dx * dx + dy * dy < c.r * c.r * edge * edge { inside = true; break }
                }
                guard inside else { return nil }
                let light = 1.15 - 0.4 * (fy - top) / span          // lit from above
                let clump = tex.fbm(fx + 300, fy, scale: 3 * s, octaves: 2)
                return leaf * (light * (0.65 + 0.6 * clump))
            }
        }
    case let .clutter(kind, x, foot, size, color, salt):
        let tex = Noise(salt: salt)
        switch kind {
        case 0:   // pole, maybe with a sign board
            let pw = max(1, size * 0.06)
            cv.paint(rows: Int(foot - size * 1.6), Int(foot) + 1, cols: Int(x - pw), Int(x + pw) + 1, id: SyntheticScenes.otherId) { _, _ in
                RGB(80, 80, 85)
            }
            cv.paint(rows: Int(foot - size * 1.6), Int(foot - size * 1.2), cols: Int(x - size * 0.3), Int(x + size * 0.3) + 1,
                     id: SyntheticScenes.otherId) { _, _ in color }
        case 1:   // car-like box with wheels
            let len = size * 1.8
            cv.paint(rows: Int(foot - size * 0.8), Int(foot) + 1, cols: Int(x - len / 2), Int(x + len / 2) + 1,
                     id: SyntheticScenes.otherId) { px, py in
                let fx = Float(px) + 0.5, fy = Float(py) + 0.5
                let wr = size * 0.2
                for wx in [x - len * 0.3, x + len * 0.3] {
                    let dx = fx - wx, dy = fy - (foot - wr)
                    if dx * dx + dy * dy < wr * wr { return RGB(25, 25, 28) }
                }
                if fy > foot - wr { return nil }
                if fy < foot - size * 0.45 && abs(fx - x) > len * 0.3 { return nil }   // cabin narrower
                if fy < foot - size * 0.55 && abs(fx - x) < len * 0.25 { return RGB(60, 80, 100) }
                return color * (0.85 + 0.3 * tex.value(fx / 3, fy / 3))
            }
        default:  // boulder / bush of odd colour
            let rx = size * 0.5, ry = size * 0.35
            cv.paint(rows: Int(foot - 2 * ry), Int(foot) + 1, cols: Int(x - rx), Int(x + rx) + 1, id: SyntheticScenes.otherId) { px, py in
                let dx = (Float(px) + 0.5 - x) / rx, dy = (Float(py) + 0.5 - (foot - ry)) / ry
                guard dx * dx + dy * dy < 1 + 0.3 * (tex.value(Float(px) / 2, Float(py) / 2) - 0.5) else { return nil }
                return color * (0.7 + 0.5 * tex.fbm(Float(px), Float(py), scale: 3, octaves: 2))
            }
        }
    }
}
