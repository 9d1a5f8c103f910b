import Foundation
import GraphIR
import SegmentationData

/// The safetensors format (HuggingFace's `model.safetensors`): an 8-byte little-endian header length, a
/// JSON header `{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`
/// and the raw little-endian tensor bytes, offsets relative to the end of the header.
///
/// Reading trusts nothing: the header's size and JSON, every dtype and shape, and every byte range
/// (inside the data, no overlap, aligned to its element size, as long as the shape says) are checked
/// before any tensor is made, and an error names the file and the tensor.
public enum Safetensors {
    /// Headers larger than this are refused (the Rust reference implementation's limit).
    static let maximumHeaderSize = 100_000_000

    /// safetensors dtype code ↔ element type (the codes this runtime holds tensors of).
    static let dataTypes: [String: DataType] = [
        "F64": .double, "F32": .float, "F16": .float16, "BF16": .bfloat16, "I64": .int64, "I32": .int32,
        "I16": .int16, "I8": .int8, "U8": .uint8, "U16": .uint16, "U32": .uint32, "U64": .uint64, "BOOL": .bool,
    ]

    /// The tensors of the file at `path`, by name, and its `__metadata__`.
    ///
    /// - Throws: `SegFormerError.io` when the file cannot be read, `.invalid` naming the file (and the
    ///   tensor) when the header or a byte range is malformed, `.unsupported` for a dtype this runtime lacks.
    public static func read(contentsOf path: String) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe) } catch {
            throw SegFormerError.io("cannot read \(path): \(error.localizedDescription)")
        }
        do { return try decode(data) } catch let e as SegFormerError { throw e.prefixed(path) }
    }

    /// Decodes safetensors bytes (see `read(contentsOf:)`; errors name the tensor, not the file).
    public static func decode(_ data: Data) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        guard data.count >= 8 else { throw SegFormerError.invalid("not a safetensors file: \(data.count) bytes, shorter than the 8-byte header length") }
        let headerSize = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerSize <= UInt64(maximumHeaderSize), Int(headerSize) <= data.count - 8 else {
            throw SegFormerError.invalid("safetensors header length \(headerSize) exceeds the file (\(data.count) bytes) or the \(maximumHeaderSize)-byte limit")
        }
        let headerEnd = 8 + Int(headerSize)
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: data.subdata(in: data.startIndex + 8..<data.startIndex + headerEnd)) } catch {
            throw SegFormerError.invalid("safetensors header is not valid JSON (\(error.localizedDescription))")
        }
        guard let header = json as? [String: Any] else { throw SegFormerError.invalid("safetensors header is not a JSON object") }
        let bufferSize = data.count - headerEnd

        var metadata: [String: String] = [:]
        var entries: [(name: String, type: DataType, shape: [Int], begin: Int, end: Int)] = []
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: Any], let strings = m as? [String: String] else {
                    throw SegFormerError.invalid("safetensors __metadata__ must map strings to strings")
                }
                metadata = strings
                continue
            }
            guard let info = value as? [String: Any], let code = info["dtype"] as? String,
                  let rawShape = info["shape"] as? [Any], let rawOffsets = info["data_offsets"] as? [Any] else {
                throw SegFormerError.invalid("tensor '\(name)': header entry needs dtype, shape and data_offsets")
            }
            guard let type = dataTypes[code] else {
                throw SegFormerError.unsupported("tensor '\(name)': safetensors dtype \(code)")
            }
            let shape = try rawShape.map { try nonNegativeInteger($0, "shape", name) }
            let offsets = try rawOffsets.map { try nonNegativeInteger($0, "data_offsets", name) }
            guard offsets.count == 2, offsets[0] <= offsets[1] else {
                throw SegFormerError.invalid("tensor '\(name)': data_offsets \(offsets) must be [begin, end] with begin ≤ end")
            }
            var count = 1
            for d in shape {
                let (p, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow, p <= bufferSize else {
                    throw SegFormerError.invalid("tensor '\(name)': shape \(shape) is larger than the file's data")
                }
                count = p
            }
            let size = type.byteSize!
            guard offsets[1] <= bufferSize else {
                throw SegFormerError.invalid("tensor '\(name)': data_offsets \(offsets) are out of range (the data is \(bufferSize) bytes)")
            }
            guard offsets[1] - offsets[0] == count * size else {
                throw SegFormerError.invalid("tensor '\(name)': data_offsets \(offsets) hold \(offsets[1] - offsets[0]) bytes, shape \(shape) of \(code) needs \(count * size)")
            }
            guard offsets[0] % size == 0 else {
                throw SegFormerError.invalid("tensor '\(name)': data offset \(offsets[0]) is misaligned for \(code) (\(size)-byte elements)")
            }
            entries.append((name, type, shape, offsets[0], offsets[1]))
        }
        // Byte ranges may not overlap (a reader must never see one tensor's bytes as another's).
        let byStart = entries.filter { $0.end > $0.begin }.sorted { ($0.begin, $0.name) < ($1.begin, $1.name) }
        for (a, b) in zip(byStart, byStart.dropFirst()) where b.begin < a.end {
            throw SegFormerError.invalid("tensor '\(b.name)': data_offsets [\(b.begin), \(b.end)] overlap those of '\(a.name)' [\(a.begin), \(a.end)]")
        }

        var tensors: [String: Tensor] = [:]
        for e in entries {
            let t = Tensor(uninitialized: e.type, shape: e.shape)
            if e.end > e.begin {
                data.withUnsafeBytes { raw in
                    t.storage.pointer.copyMemory(from: raw.baseAddress! + headerEnd + e.begin, byteCount: e.end - e.begin)
                }
            }
            tensors[e.name] = t
        }
        return (tensors, metadata)
    }

    static func nonNegativeInteger(_ v: Any, _ field: String, _ tensor: String) throws -> Int {
        guard let n = v as? NSNumber, !n.isJSONBool, n.doubleValue >= 0,
              n.doubleValue == n.doubleValue.rounded(), n.doubleValue < 9.0e18 else {
            throw SegFormerError.invalid("tensor '\(tensor)': \(field) must hold non-negative integers, got \(v)")
        }
        return n.intValue
    }

    /// The file's bytes for `tensors` with `metadata` as `__metadata__` (transformers wants
    /// `{"format": "pt"}`). As the reference writer does, tensors follow each other without gaps (its
    /// reader insists), largest element size first and then by name, so every range stays aligned.
    public static func encode(_ tensors: [String: Tensor], metadata: [String: String] = ["format": "pt"]) throws -> [UInt8] {
        var header: [String: Any] = metadata.isEmpty ? [:] : ["__metadata__": metadata]
        var offset = 0
        let names = tensors.keys.sorted {
            let a = tensors[$0]!.dataType.byteSize ?? 0, b = tensors[$1]!.dataType.byteSize ?? 0
            return a != b ? a > b : $0 < $1
        }
        var ranges: [(Int, Int)] = []
        for name in names {
            let t = tensors[name]!
            guard let code = dataTypes.first(where: { $0.value == t.dataType })?.key else {
                throw SegFormerError.unsupported("tensor '\(name)': element type \(t.dataType) has no safetensors dtype")
            }
            ranges.append((offset, offset + t.byteCount))
            header[name] = ["dtype": code, "shape": t.shape, "data_offsets": [offset, offset + t.byteCount]] as [String: Any]
            offset += t.byteCount
        }
        var json = [UInt8](try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        while json.count % 8 != 0 { json.append(0x20) }   // data starts 8-aligned, as the Python writer pads it
        var out = [UInt8](repeating: 0, count: 8 + json.count + offset)
        for i in 0..<8 { out[i] = UInt8(truncatingIfNeeded: UInt64(json.count) >> (8 * UInt64(i))) }
        out.replaceSubrange(8..<8 + json.count, with: json)
        let base = 8 + json.count
        for (name, range) in zip(names, ranges) where range.1 > range.0 {
            let t = tensors[name]!
            out.withUnsafeMutableBytes { dst in
                (dst.baseAddress! + base + range.0).copyMemory(from: t.storage.pointer, byteCount: t.byteCount)
            }
        }
        return out
    }
}
