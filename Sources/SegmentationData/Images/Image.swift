import CImageCodecs
import Foundation
import GraphIR

/// An 8-bit image, row-major HWC (`pixels[(y * width + x) * channels + c]`), 1 or 3 channels.
public struct Image: Equatable, Sendable {
    /// Width in pixels.
    public var width: Int
    /// Height in pixels.
    public var height: Int
    /// Samples per pixel: 1 (grey, or class ids in a mask), 3 (RGB) or 4 (RGBA).
    public var channels: Int
    /// `height * width * channels` samples, row-major HWC.
    public var pixels: [UInt8]

    /// How the decoder should present the stored samples.
    public enum DecodeMode: Sendable {
        /// 3-channel RGB (grey replicated, palette looked up, alpha dropped): PIL's `convert("RGB")`.
        case rgb
        /// The stored samples: grey or palette images give 1 channel (grey value, or palette index as
        /// PIL's mode "P"), colour images 3 channels. Use this for label masks.
        case native
    }

    /// An image from raw samples (e.g. a camera frame converted to RGB); traps when `pixels.count`
    /// is not `width * height * channels` or `channels` is not 1, 3 or 4.
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && (channels == 1 || channels == 3 || channels == 4),
                     "Image: bad layout \(width)x\(height)x\(channels)")
        precondition(pixels.count == width * height * channels,
                     "Image: \(pixels.count) bytes for \(width)x\(height)x\(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// Reads a JPEG or PNG file; the format is detected from its content, not its name.
    ///
    /// The header's size is checked against `Image.pixelLimit` before anything is decoded. A JPEG above
    /// it is decoded at 1/2, 1/4 or 1/8 scale when the result still covers `fitting` (the size a
    /// model needs), else refused; a PNG above it is refused.
    public init(contentsOf path: String, mode: DecodeMode = .rgb, fitting target: (width: Int, height: Int)? = nil) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw SegFormerError.io("cannot read image \(path): \(SegFormerError.fileSystemReason(error))")
        }
        switch Image.decodeResult(data, mode: mode, fitting: target) {
        case .success(let image): self = image
        case .failure(let reason): throw SegFormerError.invalid("corrupt or unsupported image: \(path): \(reason.message)")
        }
    }

    struct DecodeFailure: Error { let message: String }

    /// Decodes JPEG or PNG bytes.
    /// Errors read "corrupt or unsupported image: <libjpeg/libpng reason>" (`init(contentsOf:)` adds the path before the reason).
    public static func decode<Bytes: ContiguousBytes>(bytes: Bytes, mode: DecodeMode = .rgb) throws -> Image {
        switch decodeResult(bytes, mode: mode) {
        case .success(let image): return image
        case .failure(let reason): throw SegFormerError.invalid("corrupt or unsupported image: \(reason.message)")
        }
    }

    /// Largest image decoded, in pixels: PIL's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`),
    /// lower when the memory budget is (a decoded pixel costs about `bytesPerPixel` on its way through
    /// resizing, the mask and the overlay).
    public static var pixelLimit: Int { min(89_478_485, MemoryBudget.limit / bytesPerPixel) }
    static let bytesPerPixel = 32

    static func decodeResult<Bytes: ContiguousBytes>(_ bytes: Bytes, mode: DecodeMode,
                                                     fitting target: (width: Int, height: Int)? = nil) -> Result<Image, DecodeFailure> {
        var result: Image?
        var message = ""
        bytes.withUnsafeBytes { raw in
            var img = ic_image()
            var err = [CChar](repeating: 0, count: 512)
            let base = raw.bindMemory(to: UInt8.self).baseAddress
            let rc = ic_decode_limited(base, raw.count, mode == .rgb ? Int32(IC_MODE_RGB) : Int32(IC_MODE_NATIVE),
                                       Image.pixelLimit, Int32(clamping: target?.width ?? 0), Int32(clamping: target?.height ?? 0),
                                       &img, &err, err.count)
            if rc != 0 || img.pixels == nil {
                message = String(cString: err)
                return
            }
            defer { ic_free(img.pixels) }
            let w = Int(img.width), h = Int(img.height), c = Int(img.channels)
            let n = w * h * c
            let px = [UInt8](UnsafeBufferPointer(start: img.pixels, count: n))
            result = Image(width: w, height: h, channels: c, pixels: px)
        }
        guard let image = result else {
            return .failure(DecodeFailure(message: message.isEmpty ? "decoding failed" : message))
        }
        return .success(image)
    }

    /// Decodes a label mask: the single-channel class ids (grey value, or palette index).
    /// A colour mask is refused, since its class ids are ambiguous.
    public static func decodeLabels<Bytes: ContiguousBytes>(bytes: Bytes) throws -> Image {
        let img = try decode(bytes: bytes, mode: .native)
        guard img.channels == 1 else {
            throw SegFormerError.unsupported("label mask has \(img.channels) channels; expected a single-channel (grey or palette) PNG")
        }
        return img
    }

    /// Reads a label mask file (see `decodeLabels`).
    public init(labelsAt path: String) throws {
        self = try Image(contentsOf: path, mode: .native)
        guard channels == 1 else {
            throw SegFormerError.unsupported("\(path): label mask has \(channels) channels; expected a single-channel (grey or palette) PNG")
        }
    }

    /// PNG bytes of this image (1- or 3-channel). With a `palette` (1…256 colours) a 1-channel image is
    /// written as a palette PNG: its samples are the indices, viewers show the colours.
    public func pngData(palette: [(UInt8, UInt8, UInt8)]? = nil) throws -> Data {
        guard channels == 1 || channels == 3, palette == nil || channels == 1 else {
            throw SegFormerError.unsupported("PNG encoding of a \(channels)-channel image\(palette == nil ? "" : " with a palette")")
        }
        guard width > 0, height > 0 else {
            throw SegFormerError.invalid("cannot encode an empty \(width)x\(height) image as PNG")
        }
        if let palette, let top = pixels.max(), Int(top) >= palette.count {
            throw SegFormerError.invalid("PNG palette has \(palette.count) colours but the image holds index \(top)")
        }
        var out: UnsafeMutablePointer<UInt8>?
        var size = 0
        var err = [CChar](repeating: 0, count: 512)
        let rc = pixels.withUnsafeBufferPointer { px in
            guard let palette else {
                return ic_encode_png(px.baseAddress, Int32(width), Int32(height), Int32(channels), &out, &size, &err, err.count)
            }
            let entries = palette.flatMap { [$0.0, $0.1, $0.2] }
            return ic_encode_png_palette(px.baseAddress, Int32(width), Int32(height), entries, Int32(palette.count), &out, &size, &err, err.count)
        }
        guard rc == 0, let buf = out else {
            throw SegFormerError.invalid("PNG encoding failed: \(String(cString: err))")
        }
        defer { ic_free(buf) }
        return Data(bytes: buf, count: size)
    }

    /// Baseline JPEG bytes of this image (1- or 3-channel), encoded by libjpeg-turbo.
    public func jpegData(quality: Int = 92) throws -> Data {
        guard channels == 1 || channels == 3 else {
            throw SegFormerError.unsupported("JPEG encoding of a \(channels)-channel image")
        }
        var out: UnsafeMutablePointer<UInt8>?
        var size = 0
        var err = [CChar](repeating: 0, count: 512)
        let rc = pixels.withUnsafeBufferPointer { px in
            ic_encode_jpeg(px.baseAddress, Int32(width), Int32(height), Int32(channels), Int32(quality), &out, &size, &err, err.count)
        }
        guard rc == 0, let buf = out else {
            throw SegFormerError.invalid(String(cString: err))
        }
        defer { ic_free(buf) }
        return Data(bytes: buf, count: size)
    }

    /// Writes a PNG atomically: to a temporary file in the same folder, then renamed over `path`.
    public func writePNG(to path: String, palette: [(UInt8, UInt8, UInt8)]? = nil) throws {
        let data = try pngData(palette: palette)
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent()
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        do {
            try data.write(to: tmp)
        } catch {
            throw SegFormerError.io("cannot write image \(path): \(SegFormerError.fileSystemReason(error))")
        }
        if rename(tmp.path, url.path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(tmp.path)
            throw SegFormerError.io("cannot write image \(path): \(reason)")
        }
    }

    /// The value at (x, y, c).
    @inline(__always)
    public subscript(x: Int, y: Int, c: Int) -> UInt8 {
        get { pixels[(y * width + x) * channels + c] }
        set { pixels[(y * width + x) * channels + c] = newValue }
    }
}
