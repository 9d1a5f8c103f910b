import Foundation
import GraphIR

/// HuggingFace's `SegformerImageProcessor`, reproduced:
/// images: resize the 8-bit picture with PIL (default bilinear, 512×512), then in float32
/// `x * rescale_factor` (computed in double, stored as float32, as HF's `rescale`), then
/// `(x - mean) / std` in float32; output channels-first `pixel_values` [N, 3, H, W].
/// Segmentation maps: `do_reduce_labels` (0 → 255, k → k − 1, 255 stays 255) then a NEAREST resize,
/// output int64 `labels` [N, H, W].
public struct SegformerImageProcessor: Sendable {
    public var doResize: Bool = true
    public var height: Int = 512
    public var width: Int = 512
    public var resample: PILResample = .bilinear
    public var doRescale: Bool = true
    public var rescaleFactor: Double = 1.0 / 255.0
    public var doNormalize: Bool = true
    public var imageMean: [Double] = [0.485, 0.456, 0.406]
    public var imageStd: [Double] = [0.229, 0.224, 0.225]
    public var doReduceLabels: Bool = false

    public init(doResize: Bool = true, height: Int = 512, width: Int = 512, resample: PILResample = .bilinear,
                doRescale: Bool = true, rescaleFactor: Double = 1.0 / 255.0, doNormalize: Bool = true,
                imageMean: [Double] = [0.485, 0.456, 0.406], imageStd: [Double] = [0.229, 0.224, 0.225],
                doReduceLabels: Bool = false) {
        self.doResize = doResize
        self.height = height
        self.width = width
        self.resample = resample
        self.doRescale = doRescale
        self.rescaleFactor = rescaleFactor
        self.doNormalize = doNormalize
        self.imageMean = imageMean
        self.imageStd = imageStd
        self.doReduceLabels = doReduceLabels
    }

    /// Reads the fields of a HuggingFace `preprocessor_config.json`; absent keys keep HF's defaults.
    /// Accepts `size` as {"height","width"}, a single int, or legacy {"shortest_edge"} (square);
    /// `reduce_labels` as the old spelling of `do_reduce_labels`.
    public init(configJSON data: Data) throws {
        self.init()
        let any: Any
        do { any = try JSONSerialization.jsonObject(with: data) } catch {
            throw SegFormerError.invalid("preprocessor config is not valid JSON\(SegFormerError.parseDetail(error))")
        }
        guard let obj = any as? [String: Any] else {
            throw SegFormerError.invalid("preprocessor config must be a JSON object")
        }
        func bool(_ key: String) throws -> Bool? {
            guard let v = obj[key], !(v is NSNull) else { return nil }
            if let n = v as? NSNumber, n.isJSONBool { return n.boolValue }
            throw SegFormerError.invalid("preprocessor config: \"\(key)\" must be true or false")
        }
        func number(_ v: Any, _ key: String) throws -> Double {
            if let n = v as? NSNumber, !n.isJSONBool { return n.doubleValue }
            throw SegFormerError.invalid("preprocessor config: \"\(key)\" must be a number")
        }
        func int(_ v: Any, _ key: String) throws -> Int {
            let d = try number(v, key)
            guard d == d.rounded(), d > 0, d <= 65536 else {
                throw SegFormerError.invalid("preprocessor config: \"\(key)\" must be a positive integer, got \(d)")
            }
            return Int(d)
        }
        func triple(_ key: String) throws -> [Double]? {
            guard let v = obj[key], !(v is NSNull) else { return nil }
            if let a = v as? [Any] {
                let d = try a.map { try number($0, key) }
                guard d.count == 3 || d.count == 1 else {
                    throw SegFormerError.invalid("preprocessor config: \"\(key)\" must have 3 values, got \(d.count)")
                }
                return d.count == 1 ? [d[0], d[0], d[0]] : d
            }
            let d = try number(v, key)
            return [d, d, d]
        }
        if let b = try bool("do_resize") { doResize = b }
        if let size = obj["size"], !(size is NSNull) {
            if let dict = size as? [String: Any] {
                if let h = dict["height"], let w = dict["width"] {
                    height = try int(h, "size.height")
                    width = try int(w, "size.width")
                } else if let s = dict["shortest_edge"] {
                    height = try int(s, "size.shortest_edge")
                    width = height
                } else {
                    throw SegFormerError.unsupported("preprocessor config: size \(dict.keys.sorted()) (expected height and width)")
                }
            } else {
                height = try int(size, "size")
                width = height
            }
        }
        if let r = obj["resample"], !(r is NSNull) {
            let n = try number(r, "resample")
            guard let f = PILResample(rawValue: Int(n)), Double(Int(n)) == n else {
                throw SegFormerError.unsupported("preprocessor config: resample \(n)")
            }
            resample = f
        }
        if let b = try bool("do_rescale") { doRescale = b }
        if let r = obj["rescale_factor"], !(r is NSNull) { rescaleFactor = try number(r, "rescale_factor") }
        if let b = try bool("do_normalize") { doNormalize = b }
        if let m = try triple("image_mean") { imageMean = m }
        if let s = try triple("image_std") { imageStd = s }
        if let b = try bool("reduce_labels") { doReduceLabels = b }
        if let b = try bool("do_reduce_labels") { doReduceLabels = b }
        if doNormalize, imageStd.contains(0) {
            throw SegFormerError.invalid("preprocessor config: image_std must not contain 0")
        }
    }

    public init(preprocessorConfigPath path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw SegFormerError.io("cannot read preprocessor config \(path): \(SegFormerError.fileSystemReason(error))")
        }
        do { try self.init(configJSON: data) } catch let e as SegFormerError { throw e.prefixed(path) }
    }

    /// This processor as a HuggingFace `preprocessor_config.json` (what `init(configJSON:)` and
    /// `SegformerImageProcessor.from_pretrained` read).
    public func configJSON() throws -> Data {
        let config: [String: Any] = [
            "image_processor_type": "SegformerImageProcessor", "do_resize": doResize,
            "size": ["height": height, "width": width], "resample": resample.rawValue, "do_rescale": doRescale,
            "rescale_factor": rescaleFactor, "do_normalize": doNormalize, "image_mean": imageMean, "image_std": imageStd,
            "do_reduce_labels": doReduceLabels,
        ]
        return try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
    }

    /// The output size of one image (the input size when `doResize` is off).
    func outputSize(of image: Image) -> (width: Int, height: Int) {
        doResize ? (width, height) : (image.width, image.height)
    }

    /// Writes one image's normalised channels-first values (3 × H × W) at `out`.
    func process(_ image: Image, into out: UnsafeMutablePointer<Float>) throws {
        var img = image.rgb()
        if doResize { img = try img.resized(width: width, height: height, filter: resample) }
        let plane = img.width * img.height
        img.pixels.withUnsafeBufferPointer { px in
            for c in 0..<3 {
                // The value depends on the 8-bit sample alone: look it up in a table of the 256 results.
                let table = (0...255).map { value(UInt8($0), channel: c) }
                let o = out + c * plane
                table.withUnsafeBufferPointer { t in
                    for i in 0..<plane { o[i] = t[Int(px[i * 3 + c])] }
                }
            }
        }
    }

    /// One 8-bit sample of channel `c` rescaled and normalised, in HF's arithmetic.
    func value(_ sample: UInt8, channel c: Int) -> Float {
        var v = Float(sample)
        if doRescale { v = Float(Double(sample) * rescaleFactor) }
        if doNormalize { v = (v - Float(imageMean[c])) / Float(imageStd[c]) }
        return v
    }

    /// Reduces and resizes one label mask; returns H × W class ids.
    func processLabels(_ mask: Image) throws -> Image {
        guard mask.channels == 1 else {
            throw SegFormerError.invalid("segmentation map has \(mask.channels) channels; expected 1")
        }
        var m = mask
        if doReduceLabels {
            for i in 0..<m.pixels.count {
                let v = m.pixels[i]
                m.pixels[i] = v == 0 ? 255 : (v == 255 ? 255 : v - 1)
            }
        }
        if doResize { m = try m.resized(width: width, height: height, filter: .nearest) }
        return m
    }

    /// Prepares a batch: `pixelValues` float32 [N, 3, H, W] and, when maps are given, `labels` int64 [N, H, W].
    public func preprocess(images: [Image], segmentationMaps: [Image]? = nil) throws -> (pixelValues: Tensor, labels: Tensor?) {
        guard !images.isEmpty else { throw SegFormerError.invalid("image processor: no images") }
        if doNormalize {
            guard imageMean.count == 3, imageStd.count == 3 else {
                throw SegFormerError.invalid("image processor: image_mean and image_std need 3 values")
            }
        }
        if let maps = segmentationMaps, maps.count != images.count {
            throw SegFormerError.invalid("image processor: \(images.count) images but \(maps.count) segmentation maps")
        }
        let (w, h) = outputSize(of: images[0])
        for (i, img) in images.enumerated() {
            guard img.width > 0, img.height > 0 else {
                throw SegFormerError.invalid("image processor: image \(i) is empty (\(img.width)x\(img.height))")
            }
            let s = outputSize(of: img)
            guard s == (w, h) else {
                throw SegFormerError.invalid("image processor: image \(i) is \(s.width)x\(s.height), image 0 is \(w)x\(h); batch images must share a size when do_resize is off")
            }
        }
        // The model's input size decides this allocation (a fixed-shape export may declare anything).
        try MemoryBudget.require(Tensor.checkedByteCount([images.count, 3, h, w], .float),
                                 for: "image processor: pixel values of \(images.count)×3×\(h)×\(w)")
        let pixelValues = Tensor(uninitialized: .float, shape: [images.count, 3, h, w])
        let base = pixelValues.pointer(Float.self)
        for (i, img) in images.enumerated() {
            try process(img, into: base + i * 3 * h * w)
        }
        guard let maps = segmentationMaps else { return (pixelValues, nil) }
        let labels = Tensor(uninitialized: .int64, shape: [maps.count, h, w])
        let lp = labels.pointer(Int64.self)
        for (i, map) in maps.enumerated() {
            let m = try processLabels(map)
            guard m.width == w, m.height == h else {
                throw SegFormerError.invalid("image processor: segmentation map \(i) is \(m.width)x\(m.height) but its image gives \(w)x\(h)")
            }
            for j in 0..<(w * h) { lp[i * w * h + j] = Int64(m.pixels[j]) }
        }
        return (pixelValues, labels)
    }
}

extension NSNumber {
    /// Whether JSONSerialization made this number from `true`/`false`: both arrive as NSNumber, the
    /// booleans with objCType "c" (on Linux and Darwin).
    public var isJSONBool: Bool { String(cString: objCType) == "c" }
}
