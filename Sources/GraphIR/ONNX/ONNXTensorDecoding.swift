import CONNX
import Foundation

#if _endian(big)
#error("ONNX raw_data is little-endian; this importer copies it as is and supports little-endian hosts only")
#endif

/// A view of a protobuf-c repeated field (`n_xxx`, `xxx`) that is safe when the field is empty
/// (protobuf-c leaves the pointer NULL then).
@inline(__always)
func cArray<T>(_ pointer: UnsafeMutablePointer<T>?, _ count: Int) -> UnsafeBufferPointer<T> {
    guard count > 0, let pointer else { return UnsafeBufferPointer(start: nil, count: 0) }
    return UnsafeBufferPointer(start: pointer, count: count)
}

/// A protobuf-c `char *` as a Swift string ("" when absent). Invalid UTF-8 is repaired, not trusted.
@inline(__always)
func cString(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
    pointer.map { String(cString: $0) } ?? ""
}

/// Bytes of a protobuf `bytes` field as a (repaired) UTF-8 string.
func utf8String(_ data: ProtobufCBinaryData) -> String {
    guard data.len > 0, let base = data.data else { return "" }
    return String(decoding: UnsafeBufferPointer(start: base, count: data.len), as: UTF8.self)
}

/// A read-only memory mapping of an external data file; unmapped when released.
final class MappedFile {
    let path: String
    let base: UnsafeRawPointer?
    let size: Int

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw SegFormerError.io("cannot open external data file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw SegFormerError.io("cannot stat external data file \(path): \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw SegFormerError.invalid("external data file \(path) is not a regular file")
        }
        size = Int(st.st_size)
        if size == 0 { base = nil; return }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw SegFormerError.io("cannot map external data file \(path): \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }
}

/// Resolves `external_data` references of one model: checks that each location stays inside the
/// model's folder, maps each data file once, and bounds-checks every (offset, length) against it.
final class ExternalDataResolver {
    /// The folder locations are relative to (nil when the model came from bytes with no folder).
    let baseDirectory: String?
    private var files: [String: MappedFile] = [:]
    private var resolvedBase: String?

    init(baseDirectory: String?) {
        self.baseDirectory = baseDirectory
    }

    private static func realPath(_ path: String) -> String? {
        guard let r = realpath(path, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    /// The mapped file for `location`, after checking it is a relative path inside the model folder.
    func file(location: String, tensor: String) throws -> MappedFile {
        let what = "tensor '\(tensor)': external data location '\(location)'"
        guard let baseDirectory else {
            throw SegFormerError.invalid("\(what) cannot be resolved: the model was not loaded from a file")
        }
        guard !location.isEmpty else { throw SegFormerError.invalid("tensor '\(tensor)': external data has an empty location") }
        guard !location.hasPrefix("/"), !location.hasPrefix("\\"), !location.contains("\0") else {
            throw SegFormerError.invalid("\(what) is an absolute path; only paths relative to the model's folder are allowed")
        }
        let parts = location.split(whereSeparator: { $0 == "/" || $0 == "\\" })
        guard !parts.contains("..") else {
            throw SegFormerError.invalid("\(what) leaves the model's folder ('..' is not allowed)")
        }
        if resolvedBase == nil {
            guard let b = ExternalDataResolver.realPath(baseDirectory.isEmpty ? "." : baseDirectory) else {
                throw SegFormerError.io("\(what): model folder \(baseDirectory) does not exist")
            }
            resolvedBase = b
        }
        let base = resolvedBase!
        let joined = (baseDirectory.isEmpty ? "." : baseDirectory) + "/" + location
        guard let resolved = ExternalDataResolver.realPath(joined) else {
            throw SegFormerError.io("\(what): file \(joined) not found")
        }
        let prefix = base.hasSuffix("/") ? base : base + "/"
        guard resolved.hasPrefix(prefix) else {
            throw SegFormerError.invalid("\(what) resolves to \(resolved), outside the model's folder \(base)")
        }
        if let f = files[resolved] { return f }
        let f = try MappedFile(path: resolved)
        files[resolved] = f
        return f
    }
}

extension ONNXImporter {
    /// Converts one TensorProto. Sizes are checked against the bytes actually present before any
    /// allocation, so a lying header cannot make the importer allocate more than the file holds.
    static func tensor(from proto: UnsafePointer<Onnx__TensorProto>, externalData: ExternalDataResolver?,
                       fallbackName: String = "") throws -> (name: String, tensor: Tensor) {
        let t = proto.pointee
        var name = cString(t.name)
        if name.isEmpty { name = fallbackName }
        let label = "tensor '\(name)'"

        let rawType = t.has_data_type != 0 ? t.data_type : 0
        guard let dataType = DataType(rawValue: rawType), dataType != .undefined else {
            throw SegFormerError.invalid("\(label): unknown or missing data_type \(rawType)")
        }
        guard let elementSize = dataType.byteSize else {
            throw SegFormerError.unsupported("\(label): element type \(dataType) (data_type \(rawType)) cannot be held by this runtime")
        }

        var shape: [Int] = []
        var count = 1
        for d in cArray(t.dims, t.n_dims) {
            guard d >= 0 else { throw SegFormerError.invalid("\(label): negative dimension \(d) in dims \(cArray(t.dims, t.n_dims).map { $0 })") }
            guard d <= Int64(Int.max) else { throw SegFormerError.invalid("\(label): dimension \(d) too large") }
            let (c, overflow) = count.multipliedReportingOverflow(by: Int(d))
            guard !overflow else { throw SegFormerError.invalid("\(label): element count of dims \(cArray(t.dims, t.n_dims).map { $0 }) overflows") }
            shape.append(Int(d))
            count = c
        }
        let typeLabel = "\(label) (\(dataType) \(shape))"

        if dataType == .string {
            guard t.has_raw_data == 0, !(t.has_data_location != 0 && t.data_location == 1) else {
                throw SegFormerError.invalid("\(typeLabel): string tensors must use string_data")
            }
            guard t.n_string_data == count else {
                throw SegFormerError.invalid("\(typeLabel) has \(t.n_string_data) values in string_data, expected \(count)")
            }
            let values = cArray(t.string_data, t.n_string_data).map(utf8String)
            return (name, Tensor(strings: values, shape: shape))
        }

        let (byteCount, overflow) = count.multipliedReportingOverflow(by: elementSize)
        guard !overflow else { throw SegFormerError.invalid("\(typeLabel): byte size overflows") }

        // Raw bytes: external file, or raw_data.
        var raw: UnsafeRawBufferPointer?
        if t.has_data_location != 0 && t.data_location != 0 {
            guard t.data_location == 1 else {
                throw SegFormerError.invalid("\(typeLabel): unknown data_location \(t.data_location)")
            }
            raw = try externalBytes(t, label: typeLabel, tensorName: name, expected: byteCount, resolver: externalData)
        } else if t.has_raw_data != 0 {
            guard t.raw_data.len == byteCount else {
                throw SegFormerError.invalid("\(typeLabel) needs \(byteCount) bytes, raw_data holds \(t.raw_data.len)")
            }
            raw = UnsafeRawBufferPointer(start: t.raw_data.data, count: byteCount)
        }

        if let raw {
            let out = Tensor(uninitialized: dataType, shape: shape)
            if byteCount > 0, let src = raw.baseAddress { out.storage.pointer.copyMemory(from: src, byteCount: byteCount) }
            if dataType == .bool {
                // Any byte other than 0/1 would be an invalid Swift Bool; normalise.
                let p = out.storage.pointer.assumingMemoryBound(to: UInt8.self)
                for i in 0..<count where p[i] > 1 { p[i] = 1 }
            }
            return (name, out)
        }

        // Typed fields. The count must match before the tensor is allocated.
        func check(_ n: Int, _ field: String) throws {
            guard n == count else {
                throw SegFormerError.invalid("\(typeLabel) has \(n) values in \(field), expected \(count)")
            }
        }
        func fill<S, D>(_ src: UnsafeBufferPointer<S>, _: D.Type, _ convert: (S) -> D) -> Tensor {
            let out = Tensor(uninitialized: dataType, shape: shape)
            let dst = out.storage.pointer.bindMemory(to: D.self, capacity: count)
            for i in 0..<count { dst[i] = convert(src[i]) }
            return out
        }
        let int32s = cArray(t.int32_data, t.n_int32_data)
        let tensor: Tensor
        // One case per typed field of TensorProto: the cases look alike because the fields do.
        switch dataType {
        case .float:
            try check(t.n_float_data, "float_data")
            tensor = fill(cArray(t.float_data, t.n_float_data), Float.self) { $0 }
        case .double:
            try check(t.n_double_data, "double_data")
            tensor = fill(cArray(t.double_data, t.n_double_data), Double.self) { $0 }
        case .int64:
            try check(t.n_int64_data, "int64_data")
            tensor = fill(cArray(t.int64_data, t.n_int64_data), Int64.self) { $0 }
        case .uint64:
            try check(t.n_uint64_data, "uint64_data")
            tensor = fill(cArray(t.uint64_data, t.n_uint64_data), UInt64.self) { $0 }
        case .uint32:
            try check(t.n_uint64_data, "uint64_data")
            tensor = fill(cArray(t.uint64_data, t.n_uint64_data), UInt32.self) { UInt32(truncatingIfNeeded: $0) }
        case .int32:
            try check(int32s.count, "int32_data")
            tensor = fill(int32s, Int32.self) { $0 }
        case .int16:
            try check(int32s.count, "int32_data")
            tensor = fill(int32s, Int16.self) { Int16(truncatingIfNeeded: $0) }
        case .int8:
            try check(int32s.count, "int32_data")
            tensor = fill(int32s, Int8.self) { Int8(truncatingIfNeeded: $0) }
        case .uint16, .float16, .bfloat16:
            // (b)float16 values are stored bit-wise in the low 16 bits.
            try check(int32s.count, "int32_data")
            tensor = fill(int32s, UInt16.self) { UInt16(truncatingIfNeeded: $0) }
        case .uint8:
            try check(int32s.count, "int32_data")
            tensor = fill(int32s, UInt8.self) { UInt8(truncatingIfNeeded: $0) }
        case .bool:
            try check(int32s.count, "int32_data")
            tensor = fill(int32s, UInt8.self) { $0 != 0 ? 1 : 0 }
        default:
            throw SegFormerError.unsupported("\(typeLabel): element type \(dataType)")
        }
        return (name, tensor)
    }

    /// The bytes of an external tensor, inside the (mapped) data file.
    private static func externalBytes(_ t: Onnx__TensorProto, label: String, tensorName: String, expected: Int,
                                      resolver: ExternalDataResolver?) throws -> UnsafeRawBufferPointer {
        var location: String?
        var offset = 0
        var length: Int?
        for e in cArray(t.external_data, t.n_external_data) {
            guard let e else { continue }
            let key = cString(e.pointee.key), value = cString(e.pointee.value)
            switch key {
            case "location": location = value
            case "offset":
                guard let v = Int(value), v >= 0 else { throw SegFormerError.invalid("\(label): external data offset '\(value)' is not a non-negative integer") }
                offset = v
            case "length":
                guard let v = Int(value), v >= 0 else { throw SegFormerError.invalid("\(label): external data length '\(value)' is not a non-negative integer") }
                length = v
            default: break   // checksum, basepath, …: not needed
            }
        }
        guard let location else { throw SegFormerError.invalid("\(label): external data without a 'location'") }
        guard let resolver else {
            throw SegFormerError.invalid("\(label): external data '\(location)' cannot be resolved without the model's folder")
        }
        let file = try resolver.file(location: location, tensor: tensorName)
        if let length, length != expected {
            throw SegFormerError.invalid("\(label) needs \(expected) bytes, external data length is \(length) (file \(file.path))")
        }
        let (end, overflow) = offset.addingReportingOverflow(expected)
        guard !overflow, end <= file.size else {
            throw SegFormerError.invalid("\(label): bytes \(offset)..<\(offset &+ expected) lie beyond the end of external data file \(file.path) (\(file.size) bytes)")
        }
        guard expected > 0, let base = file.base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + offset, count: expected)
    }
}
