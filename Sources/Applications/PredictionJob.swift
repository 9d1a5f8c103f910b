import Foundation
import GraphIR
import SegmentationData

/// What a `predict` run reads and writes, worked out before any image is decoded: folders expand to
/// their JPEG/PNG files, every image gets `NAME.mask.png` and `NAME.overlay.png`, and a problem with
/// the outputs (two images with the same name, a file that exists without `overwrite`) is an error
/// up front — never found halfway through a batch.
public struct PredictionJob {
    public struct Item: Equatable {
        public let image: String
        public let mask: String
        public let overlay: String
    }

    public let items: [Item]

    /// File extensions read from a folder (case-insensitive).
    public static let imageExtensions: Set<String> = ["jpg", "jpeg", "png"]

    /// - Parameters:
    ///   - inputs: image files and folders (a folder's JPEG/PNG files, sorted by name; not recursive).
    ///   - folder: where the masks and overlays go.
    /// - Throws: `.io` for a missing input or an output that exists (unless `overwrite`), `.invalid`
    ///   for an empty folder, no images, or two images that would write the same files.
    public init(inputs: [String], outputFolder folder: String, overwrite: Bool) throws {
        var images: [String] = []
        for input in inputs {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) else {
                throw SegFormerError.io("image \(input) does not exist")
            }
            guard isDirectory.boolValue else { images.append(input); continue }
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: input) } catch {
                throw SegFormerError.io("cannot list folder \(input): \(error.localizedDescription)")
            }
            let found = names.filter { PredictionJob.imageExtensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
            guard !found.isEmpty else { throw SegFormerError.invalid("folder \(input) holds no .jpg, .jpeg or .png images") }
            images += found.map { (input as NSString).appendingPathComponent($0) }
        }
        guard !images.isEmpty else { throw SegFormerError.invalid("no images given") }

        var byStem: [String: String] = [:]
        var items: [Item] = []
        for image in images {
            let stem = ((image as NSString).lastPathComponent as NSString).deletingPathExtension
            if let other = byStem[stem] {
                throw SegFormerError.invalid("\(other) and \(image) would both write \(stem).mask.png; rename one or predict them into different folders")
            }
            byStem[stem] = image
            items.append(Item(image: image,
                              mask: (folder as NSString).appendingPathComponent("\(stem).mask.png"),
                              overlay: (folder as NSString).appendingPathComponent("\(stem).overlay.png")))
        }
        for item in items {
            for path in [item.mask, item.overlay] { try OutputGuard.requireWritable(path, overwrite: overwrite, input: item.image) }
        }
        self.items = items
    }
}
