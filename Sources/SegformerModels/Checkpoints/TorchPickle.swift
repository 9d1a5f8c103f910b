import Foundation
import GraphIR
import ZIPFoundation

/// PyTorch's `pytorch_model.bin` (`torch.save` since 1.6): a zip holding `PREFIX/data.pkl`, a pickle that
/// rebuilds the tensors, and `PREFIX/data/KEY`, the raw little-endian bytes of each storage.
///
/// The pickle is read by `AllowListUnpickler`, which rebuilds tensors and (ordered) dicts and nothing
/// else — the rule of `torch.load(weights_only=True)`. A pickle naming any other class or function
/// (`os.system`, …) is refused with one error; nothing in it is ever run.
public enum TorchCheckpoint {
    /// The tensors of a state dict saved with `torch.save`, by name.
    ///
    /// - Throws: `SegFormerError.io` when the file cannot be read; `.invalid` naming the file (and the
    ///   tensor or pickle opcode) when the zip, the pickle or a storage is malformed or the pickle asks for
    ///   anything but tensors; `.unsupported` for the legacy non-zip format.
    public static func read(contentsOf path: String) throws -> [String: Tensor] {
        do { return try readArchive(path) } catch let e as SegFormerError { throw e.prefixed(path) }
    }

    static func readArchive(_ path: String) throws -> [String: Tensor] {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw SegFormerError.io("cannot read the file") }
        let magic = [UInt8](handle.readData(ofLength: 4))
        try? handle.close()
        if magic.first == 0x80 {
            throw SegFormerError.unsupported("the legacy torch.save format (PyTorch < 1.6, not a zip); re-save it with a current PyTorch or as model.safetensors")
        }
        guard magic == [0x50, 0x4B, 0x03, 0x04] else { throw SegFormerError.invalid("not a PyTorch checkpoint (neither a zip nor a pickle)") }
        let archive: Archive
        do { archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read) } catch {
            throw SegFormerError.invalid("not a readable zip archive (\(error))")
        }
        let pickles = archive.filter { $0.path == "data.pkl" || $0.path.hasSuffix("/data.pkl") }
        guard pickles.count == 1, let pickle = pickles.first else {
            throw SegFormerError.invalid("expected one data.pkl in the zip, found \(pickles.count)")
        }
        let prefix = String(pickle.path.dropLast("data.pkl".count))
        if let order = archive[prefix + "byteorder"], try String(decoding: extract(order, from: archive, limit: 16), as: UTF8.self) != "little" {
            throw SegFormerError.unsupported("a big-endian checkpoint (\(prefix)byteorder)")
        }
        let bytes = try extract(pickle, from: archive, limit: 1 << 30)
        let storages = StorageReader(archive: archive, folder: prefix + "data/")
        var unpickler = AllowListUnpickler(bytes: bytes, storages: storages)
        let root = try unpickler.load()
        guard case .dict(let d) = root else { throw SegFormerError.invalid("data.pkl holds \(root.kind), expected a state dict") }
        var out: [String: Tensor] = [:]
        for (key, value) in d.items {
            guard case .string(let name) = key else { throw SegFormerError.invalid("state dict key \(key.kind) is not a string") }
            guard case .tensor(let t) = value else {
                throw SegFormerError.invalid("state dict entry '\(name)' is \(value.kind), not a tensor")
            }
            out[name] = t
        }
        return out
    }

    /// An entry's bytes, refusing entries larger than `limit` before inflating them.
    static func extract(_ entry: Entry, from archive: Archive, limit: Int) throws -> [UInt8] {
        guard entry.uncompressedSize <= UInt64(limit) else {
            throw SegFormerError.invalid("zip entry \(entry.path) is \(entry.uncompressedSize) bytes, more than \(limit)")
        }
        var out: [UInt8] = []
        out.reserveCapacity(Int(entry.uncompressedSize))
        do {
            _ = try archive.extract(entry, skipCRC32: false) { chunk in
                guard out.count + chunk.count <= limit else { throw SegFormerError.invalid("zip entry \(entry.path) inflates past \(limit) bytes") }
                out.append(contentsOf: chunk)
            }
        } catch let e as SegFormerError { throw e } catch {
            throw SegFormerError.invalid("zip entry \(entry.path) cannot be read (\(error))")
        }
        return out
    }

    /// Loads `PREFIX/data/KEY` once per key, checked against the element count the pickle claims.
    final class StorageReader {
        let archive: Archive
        let folder: String
        var loaded: [String: Tensor] = [:]

        init(archive: Archive, folder: String) {
            self.archive = archive
            self.folder = folder
        }

        func storage(key: String, type: DataType, count: Int) throws -> Tensor {
            if let t = loaded[key] {
                guard t.dataType == type, t.count == count else {
                    throw SegFormerError.invalid("storage '\(key)' is used as \(type)×\(count) and \(t.dataType)×\(t.count)")
                }
                return t
            }
            guard !key.contains("/"), !key.contains(".."), let entry = archive[folder + key] else {
                throw SegFormerError.invalid("storage '\(key)' is missing from the zip (\(folder)\(key))")
            }
            let size = type.byteSize!
            let (bytesNeeded, overflow) = count.multipliedReportingOverflow(by: size)
            guard count >= 0, !overflow, entry.uncompressedSize == UInt64(bytesNeeded) else {
                throw SegFormerError.invalid("storage '\(key)' holds \(entry.uncompressedSize) bytes, the pickle says \(count) × \(type)")
            }
            let bytes = try TorchCheckpoint.extract(entry, from: archive, limit: bytesNeeded)
            let t = Tensor(uninitialized: type, shape: [count])
            bytes.withUnsafeBytes { if count > 0 { t.storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: bytesNeeded) } }
            loaded[key] = t
            return t
        }
    }
}

/// A pickle reader that knows only what a PyTorch state dict needs: dicts, lists, tuples, strings,
/// numbers, `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter`, the
/// typed storage classes (`torch.FloatStorage`, …) and persistent ids naming storages. Every other global
/// is refused when it is named, so no constructor or function is ever looked up, let alone called.
struct AllowListUnpickler {
    /// A value on the pickle machine's stack. Lists and dicts are boxes: the memo shares them.
    indirect enum Value {
        case none, bool(Bool), int(Int), float(Double), string(String), bytes([UInt8])
        /// Containers carry their nesting depth, so a hostile pickle cannot build a structure deep enough
        /// to overflow the stack when it is freed (or cost exponential time to measure through the memo).
        case tuple([Value], depth: Int), list(ListBox), dict(DictBox)
        case global(AllowedGlobal), storage(Tensor), tensor(Tensor)

        var depth: Int {
            switch self {
            case .tuple(_, let d): return d
            case .list(let l): return l.depth
            case .dict(let d): return d.depth
            default: return 0
            }
        }

        var kind: String {
            switch self {
            case .none: return "None"
            case .bool: return "a bool"
            case .int: return "an int"
            case .float: return "a float"
            case .string(let s): return "the string '\(s.prefix(40))'"
            case .bytes: return "bytes"
            case .tuple: return "a tuple"
            case .list: return "a list"
            case .dict: return "a dict"
            case .global(let g): return "the global \(g)"
            case .storage: return "a storage"
            case .tensor: return "a tensor"
            }
        }
    }

    final class ListBox { var items: [Value] = []; var depth = 1 }
    final class DictBox { var items: [(Value, Value)] = []; var depth = 1 }

    /// Deeper than any state dict (a dict of tensors rebuilt from tuples is 4 levels deep).
    static let maximumDepth = 64

    /// The globals a state dict may name.
    enum AllowedGlobal: CustomStringConvertible {
        case orderedDict, rebuildTensorV2, rebuildParameter, storageType(DataType)

        init?(module: String, name: String) {
            switch (module, name) {
            case ("collections", "OrderedDict"): self = .orderedDict
            case ("torch._utils", "_rebuild_tensor_v2"): self = .rebuildTensorV2
            case ("torch._utils", "_rebuild_parameter"): self = .rebuildParameter
            case ("torch", _):
                let types: [String: DataType] = [
                    "FloatStorage": .float, "DoubleStorage": .double, "HalfStorage": .float16, "BFloat16Storage": .bfloat16,
                    "LongStorage": .int64, "IntStorage": .int32, "ShortStorage": .int16, "CharStorage": .int8,
                    "ByteStorage": .uint8, "BoolStorage": .bool,
                ]
                guard let t = types[name] else { return nil }
                self = .storageType(t)
            default: return nil
            }
        }

        var description: String {
            switch self {
            case .orderedDict: return "collections.OrderedDict"
            case .rebuildTensorV2: return "torch._utils._rebuild_tensor_v2"
            case .rebuildParameter: return "torch._utils._rebuild_parameter"
            case .storageType(let t): return "torch storage of \(t)"
            }
        }
    }

    let bytes: [UInt8]
    /// Where persistent ids find storages (nil: a pickle that names one is an error).
    let storages: TorchCheckpoint.StorageReader?
    private var position = 0
    private var stack: [Value] = []
    private var marks: [Int] = []
    private var memo: [Int: Value] = [:]

    init(bytes: [UInt8], storages: TorchCheckpoint.StorageReader?) {
        self.bytes = bytes
        self.storages = storages
    }

    func fail(_ message: String) -> SegFormerError { .invalid("data.pkl at byte \(position): \(message)") }

    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.count - position else { throw fail("truncated pickle") }
        defer { position += n }
        return bytes[position..<position + n]
    }

    mutating func byte() throws -> UInt8 { try take(1).first! }

    mutating func littleEndian(_ n: Int) throws -> UInt64 {
        try take(n).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    mutating func line() throws -> String {
        guard let end = bytes[position...].firstIndex(of: 0x0A) else { throw fail("truncated pickle (no end of line)") }
        defer { position = end + 1 }
        return String(decoding: bytes[position..<end], as: UTF8.self)
    }

    mutating func utf8(_ n: Int) throws -> String {
        guard let s = String(validating: try take(n), as: UTF8.self) else { throw fail("string is not UTF-8") }
        return s
    }

    mutating func pop() throws -> Value {
        guard let v = stack.popLast() else { throw fail("stack underflow") }
        return v
    }

    /// The items above the last mark, removing them and the mark.
    mutating func popToMark() throws -> [Value] {
        guard let m = marks.popLast(), m <= stack.count else { throw fail("no mark") }
        defer { stack.removeSubrange(m...) }
        return Array(stack[m...])
    }

    mutating func memoize(_ key: Int) throws {
        guard let top = stack.last else { throw fail("memo store with an empty stack") }
        memo[key] = top
    }

    mutating func recall(_ key: Int) throws {
        guard let v = memo[key] else { throw fail("memo \(key) read before it was written") }
        stack.append(v)
    }

    mutating func global(module: String, name: String) throws {
        guard let g = AllowedGlobal(module: module, name: name) else {
            throw fail("refused global '\(module).\(name)': only tensors and ordered dicts may be loaded (like torch.load(weights_only=True)); nothing was run")
        }
        stack.append(.global(g))
    }

    mutating func load() throws -> Value {
        while true {
            let op = try byte()
            switch op {
            case 0x80: _ = try byte()                                            // PROTO
            case 0x95: _ = try take(8)                                           // FRAME
            case 0x2E: return try pop()                                          // STOP
            case 0x28: marks.append(stack.count)                                 // MARK
            case 0x7D: stack.append(.dict(DictBox()))                            // EMPTY_DICT
            case 0x5D: stack.append(.list(ListBox()))                            // EMPTY_LIST
            case 0x29: stack.append(.tuple([], depth: 1))                        // EMPTY_TUPLE
            case 0x74: stack.append(try tuple(try popToMark()))                  // TUPLE
            case 0x85, 0x86, 0x87:                                               // TUPLE1…3
                let n = Int(op - 0x84)
                guard stack.count >= n else { throw fail("stack underflow") }
                let items = Array(stack.suffix(n))
                stack.removeLast(n)
                stack.append(try tuple(items))
            case 0x6C:                                                           // LIST
                let l = ListBox(); try append(try popToMark(), to: l); stack.append(.list(l))
            case 0x64:                                                           // DICT
                let d = DictBox(); try insert(try pairs(try popToMark()), into: d); stack.append(.dict(d))
            case 0x71: try memoize(Int(try byte()))                              // BINPUT
            case 0x72: try memoize(Int(try littleEndian(4)))                     // LONG_BINPUT
            case 0x94: try memoize(memo.count)                                   // MEMOIZE
            case 0x68: try recall(Int(try byte()))                               // BINGET
            case 0x6A: try recall(Int(try littleEndian(4)))                      // LONG_BINGET
            case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try littleEndian(4)))))   // BININT
            case 0x4B: stack.append(.int(Int(try byte())))                       // BININT1
            case 0x4D: stack.append(.int(Int(try littleEndian(2))))              // BININT2
            case 0x8A:                                                           // LONG1
                let n = Int(try byte())
                guard n <= 8 else { throw fail("integer of \(n) bytes") }
                let raw = try take(n)
                var v: UInt64 = raw.reversed().reduce(0) { $0 << 8 | UInt64($1) }
                if n > 0, n < 8, raw.last! & 0x80 != 0 { v |= ~0 << UInt64(8 * n) }   // sign-extend
                stack.append(.int(Int(Int64(bitPattern: v))))
            case 0x47: stack.append(.float(Double(bitPattern: try littleEndian(8).byteSwapped)))   // BINFLOAT (big-endian)
            case 0x4E: stack.append(.none)                                       // NONE
            case 0x88: stack.append(.bool(true))                                 // NEWTRUE
            case 0x89: stack.append(.bool(false))                                // NEWFALSE
            case 0x58: stack.append(.string(try utf8(Int(try littleEndian(4)))))  // BINUNICODE
            case 0x8C: stack.append(.string(try utf8(Int(try byte()))))          // SHORT_BINUNICODE
            case 0x43: stack.append(.bytes(Array(try take(Int(try byte())))))    // SHORT_BINBYTES
            case 0x42: stack.append(.bytes(Array(try take(Int(try littleEndian(4))))))   // BINBYTES
            case 0x63: try global(module: try line(), name: try line())          // GLOBAL
            case 0x93:                                                           // STACK_GLOBAL
                guard case .string(let name) = try pop(), case .string(let module) = try pop() else {
                    throw fail("STACK_GLOBAL needs two strings")
                }
                try global(module: module, name: name)
            case 0x51: stack.append(try persistent(try pop()))                   // BINPERSID
            case 0x52:                                                           // REDUCE
                let args = try pop(), callee = try pop()
                stack.append(try call(callee, args))
            case 0x62:                                                           // BUILD
                // Only an OrderedDict's `_metadata` (module versions) is set this way in a state dict.
                _ = try pop()
                guard case .dict = stack.last else { throw fail("BUILD on \(stack.last?.kind ?? "nothing"), expected a dict") }
            case 0x73:                                                           // SETITEM
                let v = try pop(), k = try pop()
                guard case .dict(let d) = stack.last else { throw fail("SETITEM on \(stack.last?.kind ?? "nothing")") }
                try insert([(k, v)], into: d)
            case 0x75:                                                           // SETITEMS
                let items = try pairs(try popToMark())
                guard case .dict(let d) = stack.last else { throw fail("SETITEMS on \(stack.last?.kind ?? "nothing")") }
                try insert(items, into: d)
            case 0x61:                                                           // APPEND
                let v = try pop()
                guard case .list(let l) = stack.last else { throw fail("APPEND on \(stack.last?.kind ?? "nothing")") }
                try append([v], to: l)
            case 0x65:                                                           // APPENDS
                let items = try popToMark()
                guard case .list(let l) = stack.last else { throw fail("APPENDS on \(stack.last?.kind ?? "nothing")") }
                try append(items, to: l)
            default:
                position -= 1
                throw fail(String(format: "refused pickle opcode 0x%02X: not part of a tensor state dict", op))
            }
        }
    }

    func nestedDepth(_ children: [Value]) throws -> Int {
        let d = 1 + (children.map(\.depth).max() ?? 0)
        guard d <= Self.maximumDepth else { throw fail("containers nested more than \(Self.maximumDepth) deep") }
        return d
    }

    func tuple(_ items: [Value]) throws -> Value { .tuple(items, depth: try nestedDepth(items)) }

    func append(_ items: [Value], to l: ListBox) throws {
        l.depth = max(l.depth, try nestedDepth(items))
        l.items.append(contentsOf: items)
    }

    func insert(_ items: [(Value, Value)], into d: DictBox) throws {
        d.depth = max(d.depth, try nestedDepth(items.flatMap { [$0.0, $0.1] }))
        d.items.append(contentsOf: items)
    }

    func pairs(_ items: [Value]) throws -> [(Value, Value)] {
        guard items.count % 2 == 0 else { throw fail("odd number of dict items") }
        return stride(from: 0, to: items.count, by: 2).map { (items[$0], items[$0 + 1]) }
    }

    /// ('storage', storage type, key, location, element count) → the storage's bytes as a 1-D tensor.
    func persistent(_ pid: Value) throws -> Value {
        guard case .tuple(let t, _) = pid, t.count == 5, case .string("storage") = t[0],
              case .global(.storageType(let type)) = t[1], case .string(let key) = t[2], case .int(let count) = t[4] else {
            throw fail("persistent id \(pid.kind) is not a ('storage', type, key, location, size) tuple")
        }
        guard let storages else { throw fail("storage '\(key)' named outside a checkpoint archive") }
        return .storage(try storages.storage(key: key, type: type, count: count))
    }

    func call(_ callee: Value, _ args: Value) throws -> Value {
        guard case .global(let g) = callee, case .tuple(let a, _) = args else {
            throw fail("call of \(callee.kind) with \(args.kind): only allowed globals may be called")
        }
        switch g {
        case .orderedDict:
            guard a.isEmpty else { throw fail("OrderedDict called with arguments") }
            return .dict(DictBox())
        case .rebuildParameter:
            guard a.count >= 1, case .tensor = a[0] else { throw fail("_rebuild_parameter needs a tensor") }
            return a[0]
        case .rebuildTensorV2:
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            guard a.count >= 4, case .storage(let storage) = a[0], case .int(let offset) = a[1],
                  case .tuple(let sizeValues, _) = a[2], case .tuple(let strideValues, _) = a[3] else {
                throw fail("_rebuild_tensor_v2 arguments are not (storage, offset, size, stride, …)")
            }
            let shape = try sizeValues.map { v -> Int in guard case .int(let i) = v, i >= 0 else { throw fail("bad tensor size") }; return i }
            let strides = try strideValues.map { v -> Int in guard case .int(let i) = v, i >= 0 else { throw fail("bad tensor stride") }; return i }
            return .tensor(try gather(storage, offset: offset, shape: shape, strides: strides))
        case .storageType:
            throw fail("a storage class called directly")
        }
    }

    /// The tensor `shape` / `strides` / `offset` describe in `storage`, as a dense copy (every index checked).
    func gather(_ storage: Tensor, offset: Int, shape: [Int], strides: [Int]) throws -> Tensor {
        guard shape.count == strides.count, shape.count <= 8 else { throw fail("tensor size \(shape) and stride \(strides) differ in rank") }
        let count = shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
        let out = Tensor(uninitialized: storage.dataType, shape: shape)
        guard count > 0 else { return out }
        let last = shape.indices.reduce(offset) { $0 + (shape[$1] - 1) * strides[$1] }
        guard offset >= 0, count < Int.max, last < storage.count else {
            throw fail("tensor of size \(shape), stride \(strides), offset \(offset) reaches past its storage of \(storage.count) elements")
        }
        let size = storage.dataType.byteSize!
        let src = storage.storage.pointer, dst = out.storage.pointer
        let contiguous = shape.indices.reversed().reduce((ok: true, next: 1)) { acc, d in
            (acc.ok && (shape[d] == 1 || strides[d] == acc.next), acc.next * shape[d])
        }.ok
        if contiguous {   // the usual case: one copy
            dst.copyMemory(from: src + offset * size, byteCount: count * size)
            return out
        }
        var index = [Int](repeating: 0, count: shape.count)
        for i in 0..<count {
            let element = zip(index, strides).reduce(offset) { $0 + $1.0 * $1.1 }
            (dst + i * size).copyMemory(from: src + element * size, byteCount: size)
            var d = shape.count - 1
            while d >= 0 { index[d] += 1; if index[d] < shape[d] { break }; index[d] = 0; d -= 1 }
        }
        return out
    }
}
