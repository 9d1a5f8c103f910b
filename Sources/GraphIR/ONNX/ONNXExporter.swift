import CONNX
import Foundation

/// Writes GraphIR models and tensors as ONNX protobuf (packed by protobuf-c).
///
/// Tensors are written as little-endian `raw_data` (strings as `string_data`). Files are written
/// atomically: to a temporary file in the same folder, then renamed over the destination.
/// Whether a destination may be replaced is the caller's decision.
public enum ONNXExporter {
    /// The model serialized with every tensor inline.
    public static func serialize(_ model: Model) throws -> [UInt8] {
        try serialize(model, externalDataFile: nil).model
    }

    /// The model serialized; with `externalDataFile`, every initializer of at least
    /// `externalDataThreshold` bytes goes to the returned `externalData` bytes instead, referenced by
    /// that (relative) location (except integer tensors under 1 KiB, see `tensor`). Offsets are
    /// aligned to 64 bytes.
    public static func serialize(_ model: Model, externalDataFile: String?,
                                 externalDataThreshold: Int = 1024) throws -> (model: [UInt8], externalData: [UInt8]) {
        let arena = Arena()
        var external: ExternalWriter?
        if let externalDataFile {
            guard !externalDataFile.isEmpty, !externalDataFile.hasPrefix("/"),
                  !externalDataFile.split(separator: "/").contains("..") else {
                throw SegFormerError.invalid("external data location '\(externalDataFile)' must be a relative path inside the model's folder")
            }
            external = ExternalWriter(location: externalDataFile, threshold: max(0, externalDataThreshold))
        }
        let proto = arena.message(Onnx__ModelProto.self, onnx__model_proto__init)
        proto.pointee.has_ir_version = 1
        proto.pointee.ir_version = Int64(model.irVersion)
        proto.pointee.producer_name = arena.optionalString(model.producerName)
        proto.pointee.producer_version = arena.optionalString(model.producerVersion)
        let opsets = model.opsetImports.sorted { $0.key < $1.key }
        (proto.pointee.n_opset_import, proto.pointee.opset_import) = arena.array(opsets) { entry in
            let o = arena.message(Onnx__OperatorSetIdProto.self, onnx__operator_set_id_proto__init)
            o.pointee.domain = arena.string(entry.key)
            o.pointee.has_version = 1
            o.pointee.version = Int64(entry.value)
            return o
        }
        (proto.pointee.n_metadata_props, proto.pointee.metadata_props) =
            arena.array(model.metadata.sorted { $0.key < $1.key }) { arena.entry($0.key, $0.value) }
        proto.pointee.graph = try graph(model.graph, arena: arena, external: &external)

        let bytes = try packed(size: onnx__model_proto__get_packed_size(proto),
                               tooLarge: "model is above protobuf's 2 GB limit; write it with external data") {
            onnx__model_proto__pack(proto, $0)
        }
        withExtendedLifetime(model) {}
        return (bytes, external?.data ?? [])
    }

    /// Writes `model` to `path` atomically. With `externalDataThreshold`, initializers of at least
    /// that many bytes go to `<path>.data` (referenced by its file name, relative to the model).
    public static func write(_ model: Model, to path: String, externalDataThreshold: Int? = nil) throws {
        if let threshold = externalDataThreshold {
            let dataName = (path as NSString).lastPathComponent + ".data"
            let (bytes, data) = try serialize(model, externalDataFile: dataName, externalDataThreshold: threshold)
            if !data.isEmpty {
                let dir = (path as NSString).deletingLastPathComponent
                try writeAtomically(data, to: dir.isEmpty ? dataName : dir + "/" + dataName)
            }
            try writeAtomically(bytes, to: path)
        } else {
            try writeAtomically(try serialize(model), to: path)
        }
    }

    /// A tensor as a serialized TensorProto (the `.pb` files of the ONNX backend tests).
    public static func serialize(tensor: Tensor, name: String) throws -> [UInt8] {
        let arena = Arena()
        var none: ExternalWriter?
        let proto = try self.tensor(tensor, name: name, arena: arena, external: &none)
        let bytes = try packed(size: onnx__tensor_proto__get_packed_size(proto),
                               tooLarge: "tensor '\(name)' is above protobuf's 2 GB limit") {
            onnx__tensor_proto__pack(proto, $0)
        }
        withExtendedLifetime(tensor) {}
        return bytes
    }

    /// The bytes of a protobuf-c message of `size` packed bytes, written by `pack`.
    private static func packed(size: Int, tooLarge: String, _ pack: (UnsafeMutablePointer<UInt8>?) -> Int) throws -> [UInt8] {
        guard size < Int(Int32.max) else { throw SegFormerError.invalid("\(tooLarge) (\(size) bytes)") }
        var bytes = [UInt8](repeating: 0, count: size)
        let written = bytes.withUnsafeMutableBufferPointer { pack($0.baseAddress) }
        precondition(written == size, "protobuf-c packed \(written) bytes, expected \(size)")
        return bytes
    }

    public static func writeTensorFile(_ tensor: Tensor, name: String, to path: String) throws {
        try writeAtomically(try serialize(tensor: tensor, name: name), to: path)
    }

    /// Writes `bytes` to a temporary file next to `path`, flushes it and renames it over `path`.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        let tmp = (dir.isEmpty ? "" : dir + "/") + ".\(base).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw SegFormerError.io("cannot create \(tmp): \(String(cString: strerror(errno)))") }
        var ok = false
        defer { if !ok { unlink(tmp) } }
        var done = 0
        let failure: String? = bytes.withUnsafeBytes { buf in
            while done < buf.count {
                let n = Foundation.write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    return String(cString: strerror(errno))
                }
                done += n
            }
            return fsync(fd) == 0 ? nil : String(cString: strerror(errno))
        }
        let closed = close(fd) == 0
        if let failure { throw SegFormerError.io("cannot write \(path): \(failure)") }
        guard closed else { throw SegFormerError.io("cannot write \(path): \(String(cString: strerror(errno)))") }
        guard rename(tmp, path) == 0 else {
            throw SegFormerError.io("cannot move \(tmp) to \(path): \(String(cString: strerror(errno)))")
        }
        ok = true
    }

    // MARK: building protobuf-c messages

    /// Collects the bytes of external tensors.
    struct ExternalWriter {
        let location: String
        let threshold: Int
        var data: [UInt8] = []
    }

    static func graph(_ g: Graph, arena: Arena, external: inout ExternalWriter?) throws -> UnsafeMutablePointer<Onnx__GraphProto> {
        let p = arena.message(Onnx__GraphProto.self, onnx__graph_proto__init)
        p.pointee.name = arena.optionalString(g.name)
        (p.pointee.n_node, p.pointee.node) = try arena.array(g.nodes) { try node($0, arena: arena, external: &external) }
        var order = g.initializerOrder.filter { g.initializers[$0] != nil }
        let listed = Set(order)
        order += g.initializers.keys.filter { !listed.contains($0) }.sorted()
        (p.pointee.n_initializer, p.pointee.initializer) = try arena.array(order) { name in
            try tensor(g.initializers[name]!, name: name, arena: arena, external: &external)
        }
        (p.pointee.n_input, p.pointee.input) = arena.array(g.inputs) { valueInfo($0.name, $0.type, arena: arena) }
        (p.pointee.n_output, p.pointee.output) = arena.array(g.outputs) { valueInfo($0.name, $0.type, arena: arena) }
        (p.pointee.n_value_info, p.pointee.value_info) =
            arena.array(g.valueInfo.sorted { $0.key < $1.key }) { valueInfo($0.key, $0.value, arena: arena) }
        return p
    }

    static func valueInfo(_ name: String, _ type: TensorType, arena: Arena) -> UnsafeMutablePointer<Onnx__ValueInfoProto> {
        let v = arena.message(Onnx__ValueInfoProto.self, onnx__value_info_proto__init)
        v.pointee.name = arena.string(name)
        guard type.dataType != .undefined || type.shape != nil else { return v }   // imported without a type
        let tp = arena.message(Onnx__TypeProto.self, onnx__type_proto__init)
        let tt = arena.message(Onnx__TypeProto__Tensor.self, onnx__type_proto__tensor__init)
        tt.pointee.has_elem_type = 1
        tt.pointee.elem_type = type.dataType.rawValue
        if let shape = type.shape {
            let sp = arena.message(Onnx__TensorShapeProto.self, onnx__tensor_shape_proto__init)
            (sp.pointee.n_dim, sp.pointee.dim) = arena.array(shape) { d in
                let dp = arena.message(Onnx__TensorShapeProto__Dimension.self, onnx__tensor_shape_proto__dimension__init)
                switch d {
                case .known(let n):
                    dp.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                    dp.pointee.dim_value = Int64(n)
                case .symbol(let s) where s.hasPrefix("?"):
                    break   // a generated name for an unnamed unknown dimension: leave it unnamed
                case .symbol(let s):
                    dp.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
                    dp.pointee.dim_param = arena.string(s)
                }
                return dp
            }
            tt.pointee.shape = sp
        }
        tp.pointee.tensor_type = tt
        v.pointee.type = tp
        return v
    }

    static func node(_ n: Node, arena: Arena, external: inout ExternalWriter?) throws -> UnsafeMutablePointer<Onnx__NodeProto> {
        let p = arena.message(Onnx__NodeProto.self, onnx__node_proto__init)
        p.pointee.name = arena.optionalString(n.name)
        p.pointee.op_type = arena.string(n.opType)
        p.pointee.domain = arena.optionalString(n.domain)
        (p.pointee.n_input, p.pointee.input) = arena.array(n.inputs) { arena.string($0) }
        (p.pointee.n_output, p.pointee.output) = arena.array(n.outputs) { arena.string($0) }
        (p.pointee.n_attribute, p.pointee.attribute) = try arena.array(n.attributes.sorted { $0.key < $1.key }) { key, value in
            let a = arena.message(Onnx__AttributeProto.self, onnx__attribute_proto__init)
            a.pointee.name = arena.string(key)
            a.pointee.has_type = 1
            switch value {
            case .float(let f):
                a.pointee.type = ONNXImporter.AttributeCode.float.rawValue
                a.pointee.has_f = 1
                a.pointee.f = f
            case .int(let i):
                a.pointee.type = ONNXImporter.AttributeCode.int.rawValue
                a.pointee.has_i = 1
                a.pointee.i = Int64(i)
            case .string(let s):
                a.pointee.type = ONNXImporter.AttributeCode.string.rawValue
                a.pointee.has_s = 1
                a.pointee.s = arena.bytes(s)
            case .tensor(let t):
                a.pointee.type = ONNXImporter.AttributeCode.tensor.rawValue
                var none: ExternalWriter?   // attribute tensors stay inline
                a.pointee.t = try tensor(t, name: "", arena: arena, external: &none)
            case .graph(let g):
                a.pointee.type = ONNXImporter.AttributeCode.graph.rawValue
                a.pointee.g = try graph(g, arena: arena, external: &external)
            case .floats(let fs):
                a.pointee.type = ONNXImporter.AttributeCode.floats.rawValue
                (a.pointee.n_floats, a.pointee.floats) = arena.values(fs)
            case .ints(let xs):
                a.pointee.type = ONNXImporter.AttributeCode.ints.rawValue
                (a.pointee.n_ints, a.pointee.ints) = arena.values(xs.map { Int64($0) })
            case .strings(let ss):
                a.pointee.type = ONNXImporter.AttributeCode.strings.rawValue
                (a.pointee.n_strings, a.pointee.strings) = arena.values(ss.map { arena.bytes($0) })
            }
            return a
        }
        return p
    }

    static func tensor(_ t: Tensor, name: String, arena: Arena, external: inout ExternalWriter?) throws -> UnsafeMutablePointer<Onnx__TensorProto> {
        let p = arena.message(Onnx__TensorProto.self, onnx__tensor_proto__init)
        p.pointee.name = arena.optionalString(name)
        guard t.dataType != .undefined, t.dataType.byteSize != nil else {
            throw SegFormerError.unsupported("tensor '\(name)': cannot write element type \(t.dataType)")
        }
        p.pointee.has_data_type = 1
        p.pointee.data_type = t.dataType.rawValue
        (p.pointee.n_dims, p.pointee.dims) = arena.values(t.shape.map { Int64($0) })
        if t.dataType == .string {
            guard t.strings.count == t.count else {
                throw SegFormerError.invalid("tensor '\(name)': \(t.strings.count) strings for shape \(t.shape)")
            }
            (p.pointee.n_string_data, p.pointee.string_data) = arena.values(t.strings.map { arena.bytes($0) })
            return p
        }
        let byteCount = t.byteCount
        guard t.storage.byteCount >= byteCount else {
            throw SegFormerError.invalid("tensor '\(name)': storage holds \(t.storage.byteCount) bytes, shape \(t.shape) needs \(byteCount)")
        }
        // Small integer tensors stay inline whatever the threshold: they are usually shapes, axes or
        // indices that onnxruntime's shape inference must read at load time, and it cannot read them
        // from external data.
        let shapeLike = t.dataType.isInteger && byteCount < 1024
        if var ext = external, byteCount >= ext.threshold, byteCount > 0, !shapeLike {
            let padding = (64 - ext.data.count % 64) % 64
            ext.data.append(contentsOf: repeatElement(0, count: padding))
            let offset = ext.data.count
            ext.data.append(contentsOf: UnsafeRawBufferPointer(start: t.storage.pointer, count: byteCount))
            p.pointee.has_data_location = 1
            p.pointee.data_location = 1
            (p.pointee.n_external_data, p.pointee.external_data) = arena.array([
                ("location", ext.location), ("offset", String(offset)), ("length", String(byteCount)),
            ]) { arena.entry($0.0, $0.1) }
            external = ext
            return p
        }
        p.pointee.has_raw_data = 1
        arena.keep(t.storage)
        p.pointee.raw_data = ProtobufCBinaryData(len: byteCount,
                                                 data: t.storage.pointer.assumingMemoryBound(to: UInt8.self))
        return p
    }

    /// Owns the C memory of the messages being built; frees it all at once.
    final class Arena {
        private var blocks: [UnsafeMutableRawPointer] = []
        private var kept: [AnyObject] = []

        deinit { for b in blocks { free(b) } }

        func keep(_ object: AnyObject) { kept.append(object) }

        func raw(_ bytes: Int) -> UnsafeMutableRawPointer {
            let p = calloc(1, max(bytes, 1))!
            blocks.append(p)
            return p
        }

        func message<T>(_: T.Type, _ initialize: (UnsafeMutablePointer<T>) -> Void) -> UnsafeMutablePointer<T> {
            let p = raw(MemoryLayout<T>.size).bindMemory(to: T.self, capacity: 1)
            initialize(p)
            return p
        }

        func string(_ s: String) -> UnsafeMutablePointer<CChar> {
            let utf8 = Array(s.utf8)
            let p = raw(utf8.count + 1).bindMemory(to: CChar.self, capacity: utf8.count + 1)
            utf8.withUnsafeBytes { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress!, byteCount: utf8.count) }
            p[utf8.count] = 0
            return p
        }

        /// nil (field absent) for "".
        func optionalString(_ s: String) -> UnsafeMutablePointer<CChar>? { s.isEmpty ? nil : string(s) }

        func bytes(_ s: String) -> ProtobufCBinaryData {
            let utf8 = Array(s.utf8)
            guard !utf8.isEmpty else { return ProtobufCBinaryData(len: 0, data: nil) }
            let p = raw(utf8.count).bindMemory(to: UInt8.self, capacity: utf8.count)
            p.initialize(from: utf8, count: utf8.count)
            return ProtobufCBinaryData(len: utf8.count, data: p)
        }

        func entry(_ key: String, _ value: String) -> UnsafeMutablePointer<Onnx__StringStringEntryProto> {
            let e = message(Onnx__StringStringEntryProto.self, onnx__string_string_entry_proto__init)
            e.pointee.key = string(key)
            e.pointee.value = string(value)
            return e
        }

        /// A C array of plain values (count, pointer); pointer nil when empty.
        func values<T>(_ xs: [T]) -> (Int, UnsafeMutablePointer<T>?) {
            guard !xs.isEmpty else { return (0, nil) }
            let p = raw(MemoryLayout<T>.stride * xs.count).bindMemory(to: T.self, capacity: xs.count)
            p.initialize(from: xs, count: xs.count)
            return (xs.count, p)
        }

        /// A C array of pointers made from `xs` (count, pointer); pointer nil when empty.
        func array<S, T>(_ xs: [S], _ make: (S) throws -> UnsafeMutablePointer<T>) rethrows
            -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<T>?>?) {
            guard !xs.isEmpty else { return (0, nil) }
            let p = raw(MemoryLayout<UnsafeMutablePointer<T>?>.stride * xs.count)
                .bindMemory(to: UnsafeMutablePointer<T>?.self, capacity: xs.count)
            for (i, x) in xs.enumerated() { p[i] = try make(x) }
            return (xs.count, p)
        }
    }
}
