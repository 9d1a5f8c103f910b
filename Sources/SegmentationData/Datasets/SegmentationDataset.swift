import Foundation
import GraphIR

/// One image and its label mask, matched by file stem.
public struct SegmentationSample: Equatable, Sendable {
    public var stem: String
    public var imagePath: String
    public var labelPath: String

    // A public memberwise init, shaped like DataLoaderState's (Swift makes memberwise inits internal).
    public init(stem: String, imagePath: String, labelPath: String) {
        self.stem = stem
        self.imagePath = imagePath
        self.labelPath = labelPath
    }
}

/// A semantic-segmentation dataset on disk: a list of (image, mask) file pairs, decoded lazily.
///
/// Layouts:
/// - ADEChallengeData2016: `ROOT/images/{training,validation}/*.jpg` and
///   `ROOT/annotations/{training,validation}/*.png` (`init(adeRoot:split:)`).
/// - Generic: an images folder and a masks folder (`init(imagesDirectory:masksDirectory:)`).
/// Images and masks are paired by file stem; samples are sorted by stem so the order never depends on
/// the file system.
///
/// Label validation (when `numLabels` is set): every mask value must be in `0…maxLabel` or be 255
/// (ignore). `maxLabel` is `numLabels` when the masks are raw ADE-style ids (0 = "other", 1…N, reduced
/// later by `reduce_labels`), `numLabels - 1` otherwise. A bad value throws an error naming the file,
/// unless `skipBadSamples` is on: then the loader skips the sample and prints a warning.
public final class SegmentationDataset: @unchecked Sendable {
    public enum Split: String, Sendable { case training, validation }

    public let samples: [SegmentationSample]
    /// Largest valid label value other than 255, or nil for no validation.
    public var maxLabel: Int?
    public var skipBadSamples: Bool
    /// Maps raw mask values to training classes (256 entries) right after decoding, e.g. a dataset's
    /// own ids onto a compact label set (`SyntheticScenes.trainingLookup`); nil keeps the raw values.
    public var labelLookup: [UInt8]?
    /// Class names, when loaded (`loadLabels`).
    public var id2label: [Int: String] = [:]
    public var label2id: [String: Int] {
        var out: [String: Int] = [:]
        for (k, v) in id2label { out[v] = k }
        return out
    }

    /// Samples skipped so far because they were bad (with the reason), when `skipBadSamples` is on;
    /// each is listed (and warned about) once, though it is skipped every epoch.
    public var skipped: [(index: Int, reason: String)] { lock.lock(); defer { lock.unlock() }; return skippedList }
    private var skippedList: [(index: Int, reason: String)] = []
    private let lock = NSLock()

    static let imageExtensions: Set<String> = ["jpg", "jpeg", "png"]
    static let maskExtensions: Set<String> = ["png"]

    public init(samples: [SegmentationSample], numLabels: Int? = nil, rawLabelsIncludeBackground: Bool = false,
                skipBadSamples: Bool = false) {
        self.samples = samples
        self.maxLabel = numLabels.map { rawLabelsIncludeBackground ? $0 : $0 - 1 }
        self.skipBadSamples = skipBadSamples
    }

    /// The ADEChallengeData2016 layout. Masks hold raw ids 0…150 (0 = "other"), so label validation
    /// allows `0…numLabels` (use `reduce_labels` in the processor to get 150 classes 0…149).
    public convenience init(adeRoot root: String, split: Split, numLabels: Int? = 150, skipBadSamples: Bool = false) throws {
        let images = root + "/images/" + split.rawValue
        let masks = root + "/annotations/" + split.rawValue
        let samples = try SegmentationDataset.pair(imagesDirectory: images, masksDirectory: masks, skipUnmatched: skipBadSamples)
        self.init(samples: samples, numLabels: numLabels, rawLabelsIncludeBackground: true, skipBadSamples: skipBadSamples)
        let info = root + "/objectInfo150.csv"
        if FileManager.default.fileExists(atPath: info) { id2label = try SegmentationDataset.loadLabels(path: info) }
    }

    /// A generic layout: images (jpg/jpeg/png) in one folder, masks (png) in another, paired by stem.
    /// `rawLabelsIncludeBackground`: the masks use 0 for "other" and 1…numLabels for classes (ADE-style).
    public convenience init(imagesDirectory: String, masksDirectory: String, numLabels: Int? = nil,
                            rawLabelsIncludeBackground: Bool = false, skipBadSamples: Bool = false) throws {
        let samples = try SegmentationDataset.pair(imagesDirectory: imagesDirectory, masksDirectory: masksDirectory,
                                                   skipUnmatched: skipBadSamples)
        self.init(samples: samples, numLabels: numLabels, rawLabelsIncludeBackground: rawLabelsIncludeBackground,
                  skipBadSamples: skipBadSamples)
    }

    public var count: Int { samples.count }

    static func listFiles(_ dir: String, extensions: Set<String>, what: String) throws -> [String: String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw SegFormerError.io("dataset: \(what) folder \(dir) does not exist")
        }
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
            throw SegFormerError.io("dataset: cannot list \(what) folder \(dir): \(SegFormerError.fileSystemReason(error))")
        }
        var out: [String: String] = [:]
        for name in names.sorted() where !name.hasPrefix(".") {
            let url = URL(fileURLWithPath: name)
            let ext = url.pathExtension.lowercased()
            guard extensions.contains(ext) else { continue }
            let stem = url.deletingPathExtension().lastPathComponent
            if let other = out[stem] {
                throw SegFormerError.invalid("dataset: two \(what) files with stem \"\(stem)\": \(other) and \(dir)/\(name)")
            }
            out[stem] = dir + "/" + name
        }
        return out
    }

    /// Pairs images and masks by stem. An image without a mask (or a mask without an image) is an error
    /// naming the file, or a warning when `skipUnmatched`.
    public static func pair(imagesDirectory: String, masksDirectory: String, skipUnmatched: Bool = false) throws -> [SegmentationSample] {
        let images = try listFiles(imagesDirectory, extensions: imageExtensions, what: "images")
        let masks = try listFiles(masksDirectory, extensions: maskExtensions, what: "masks")
        var samples: [SegmentationSample] = []
        for stem in images.keys.sorted() {
            let img = images[stem]!
            guard let mask = masks[stem] else {
                let msg = "dataset: image \(img) has no mask \(masksDirectory)/\(stem).png"
                if skipUnmatched { warn(msg + " (skipped)"); continue }
                throw SegFormerError.invalid(msg)
            }
            samples.append(SegmentationSample(stem: stem, imagePath: img, labelPath: mask))
        }
        for stem in masks.keys.sorted() where images[stem] == nil {
            let msg = "dataset: mask \(masks[stem]!) has no image \(imagesDirectory)/\(stem).jpg (or .jpeg/.png)"
            if skipUnmatched { warn(msg + " (skipped)"); continue }
            throw SegFormerError.invalid(msg)
        }
        guard !samples.isEmpty else {
            throw SegFormerError.invalid("dataset: no image/mask pairs in \(imagesDirectory) and \(masksDirectory)")
        }
        return samples
    }

    static func warn(_ message: String) {
        FileHandle.standardError.write(("warning: " + message + "\n").data(using: .utf8)!)
    }

    /// Decodes sample `index`: the RGB image and its single-channel mask, validated (same size, label range).
    public func load(_ index: Int) throws -> (image: Image, label: Image) {
        guard samples.indices.contains(index) else {
            throw SegFormerError.invalid("dataset: sample index \(index) out of range 0..<\(samples.count)")
        }
        let s = samples[index]
        let image = try Image(contentsOf: s.imagePath, mode: .rgb)
        var label = try Image(labelsAt: s.labelPath)
        if let lookup = labelLookup, lookup.count == 256 {
            for i in label.pixels.indices { label.pixels[i] = lookup[Int(label.pixels[i])] }
        }
        guard image.width == label.width, image.height == label.height else {
            throw SegFormerError.invalid("dataset: mask \(s.labelPath) is \(label.width)x\(label.height) but image \(s.imagePath) is \(image.width)x\(image.height)")
        }
        if let maxLabel = maxLabel {
            var bad = -1
            label.pixels.withUnsafeBufferPointer { p in
                for v in p where v != 255 && Int(v) > maxLabel { bad = Int(v); break }
            }
            if bad >= 0 {
                throw SegFormerError.invalid("dataset: mask \(s.labelPath) has label \(bad), outside 0…\(maxLabel) (and not 255)")
            }
        }
        return (image, label)
    }

    /// Like `load`, but when `skipBadSamples` is on a bad sample (undecodable, size mismatch, bad label)
    /// gives nil and a warning instead of an error.
    public func loadOrSkip(_ index: Int) throws -> (image: Image, label: Image)? {
        do {
            return try load(index)
        } catch let e as SegFormerError where skipBadSamples {
            lock.lock()
            let first = !skippedList.contains { $0.index == index }
            if first { skippedList.append((index, e.description)) }
            lock.unlock()
            if first { SegmentationDataset.warn("\(e.description) (sample skipped)") }
            return nil
        }
    }

    /// Class names from a file: a HuggingFace config.json (`id2label`), ADE's objectInfo150.csv
    /// (`Idx,Ratio,Train,Val,Stuff,Name`; id = Idx − 1, the first of the ';'-separated names, as HF's
    /// ADE20K id2label), or a text file with one name per line (id = line number from 0).
    public static func loadLabels(path: String) throws -> [Int: String] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw SegFormerError.io("cannot read labels file \(path): \(SegFormerError.fileSystemReason(error))")
        }
        if path.lowercased().hasSuffix(".json") { return try Classification.id2label(configPath: path) }
        guard let text = String(data: data, encoding: .utf8) else {
            throw SegFormerError.invalid("labels file \(path) is not UTF-8 text")
        }
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
            .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\r")) }
        while let last = lines.last, last.trimmingCharacters(in: .whitespaces).isEmpty { lines.removeLast() }
        var out: [Int: String] = [:]
        if let header = lines.first, header.hasPrefix("Idx,"), header.hasSuffix(",Name") {
            for (n, line) in lines.dropFirst().enumerated() {
                let fields = line.split(separator: ",", omittingEmptySubsequences: false)
                guard fields.count >= 6, let idx = Int(fields[0].trimmingCharacters(in: .whitespaces)), idx >= 1 else {
                    throw SegFormerError.invalid("labels file \(path): line \(n + 2) is not \"Idx,Ratio,Train,Val,Stuff,Name\": \(line)")
                }
                let name = fields[5...].joined(separator: ",").split(separator: ";").first.map(String.init) ?? ""
                guard out[idx - 1] == nil else { throw SegFormerError.invalid("labels file \(path): Idx \(idx) repeated") }
                out[idx - 1] = name.trimmingCharacters(in: .whitespaces)
            }
            return out
        }
        for (i, line) in lines.enumerated() {
            let name = line.trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty else { throw SegFormerError.invalid("labels file \(path): line \(i + 1) is empty") }
            out[i] = name
        }
        return out
    }

    /// Loads class names into `id2label` (see `loadLabels(path:)`).
    public func loadLabels(path: String) throws { id2label = try SegmentationDataset.loadLabels(path: path) }
}
