import Foundation

/// A dense, row-major tensor. Value semantics for shape; the bytes live in a shared `TensorStorage`
/// (reshape-like ops share it without copying). Strings are held in `strings` instead of bytes.
public struct Tensor: @unchecked Sendable, CustomStringConvertible {
    public let dataType: DataType
    public private(set) var shape: [Int]
    public let storage: TensorStorage
    public var strings: [String] = []

    /// Elements in the tensor (1 for a scalar).
    public var count: Int { Tensor.elementCount(shape) }
    public var rank: Int { shape.count }
    public var byteCount: Int { count * (dataType.byteSize ?? 0) }

    /// Elements in a tensor of `shape`. Saturates at Int.max instead of trapping: a shape rule fed
    /// absurd input sizes then meets the size and memory checks, which name it, rather than an overflow.
    public static func elementCount(_ shape: [Int]) -> Int {
        if shape.contains(0) { return 0 }
        var n = 1
        for d in shape {
            let (product, overflow) = n.multipliedReportingOverflow(by: d)
            if overflow { return .max }
            n = product
        }
        return n
    }

    /// An uninitialised tensor (contents are whatever the pool hands back).
    /// Precondition: the element type has a storage size and no dimension is negative.
    public init(uninitialized dataType: DataType, shape: [Int]) {
        self.dataType = dataType
        self.shape = shape
        let size = dataType == .string ? 0 : (dataType.byteSize ?? 0)
        storage = TensorStorage(byteCount: Tensor.elementCount(shape) * size)
        if dataType == .string { strings = Array(repeating: "", count: Tensor.elementCount(shape)) }
    }

    /// A zero-filled tensor.
    public init(zeros dataType: DataType, shape: [Int]) {
        self.init(uninitialized: dataType, shape: shape)
        if storage.byteCount > 0 { memset(storage.pointer, 0, storage.byteCount) }
    }

    /// A tensor over existing storage (used by views such as Reshape).
    public init(dataType: DataType, shape: [Int], storage: TensorStorage) {
        self.dataType = dataType
        self.shape = shape
        self.storage = storage
    }

    /// A tensor holding a copy of `values`.
    public init<T: TensorElement>(_ values: [T], shape: [Int]) {
        precondition(values.count == Tensor.elementCount(shape), "Tensor: \(values.count) values for shape \(shape)")
        self.init(uninitialized: T.dataType, shape: shape)
        if T.dataType == .string {
            strings = values as! [String]
        } else {
            values.withUnsafeBufferPointer { src in
                if let base = src.baseAddress { storage.pointer.copyMemory(from: base, byteCount: src.count * MemoryLayout<T>.stride) }
            }
        }
    }

    public init(strings values: [String], shape: [Int]) {
        self.init(uninitialized: .string, shape: shape)
        strings = values
    }

    /// A 0-d tensor.
    public init<T: TensorElement>(scalar: T) { self.init([scalar], shape: []) }

    /// The same bytes seen with another shape (element count must match).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(Tensor.elementCount(newShape) == count, "reshaped: \(shape) -> \(newShape)")
        var t = self
        t.shape = newShape
        return t
    }

    /// Typed pointer to the elements. Valid while this tensor (or its storage) is alive.
    @inline(__always)
    public func pointer<T>(_: T.Type) -> UnsafeMutablePointer<T> {
        storage.pointer.assumingMemoryBound(to: T.self)
    }

    @inline(__always)
    public func buffer<T>(_: T.Type) -> UnsafeMutableBufferPointer<T> {
        UnsafeMutableBufferPointer(start: pointer(T.self), count: count)
    }

    /// A copy of the elements as a Swift array. `T` must match the element type.
    public func toArray<T: TensorElement>(_: T.Type) -> [T] {
        precondition(T.dataType == dataType, "toArray: tensor is \(dataType), asked for \(T.dataType)")
        if dataType == .string { return strings as! [T] }
        return Array(buffer(T.self))
    }

    /// A deep copy with its own storage.
    public func copy() -> Tensor {
        var t = Tensor(uninitialized: dataType, shape: shape)
        if dataType == .string { t.strings = strings } else if byteCount > 0 {
            t.storage.pointer.copyMemory(from: storage.pointer, byteCount: byteCount)
        }
        return t
    }

    /// The elements of an integer tensor as `Int` (for shape-like inputs: shapes, axes, starts, …).
    public func integers() throws -> [Int] {
        switch dataType {
        case .int64: return buffer(Int64.self).map { Int($0) }
        case .int32: return buffer(Int32.self).map { Int($0) }
        case .int16: return buffer(Int16.self).map { Int($0) }
        case .int8: return buffer(Int8.self).map { Int($0) }
        case .uint8: return buffer(UInt8.self).map { Int($0) }
        case .uint16: return buffer(UInt16.self).map { Int($0) }
        case .uint32: return buffer(UInt32.self).map { Int($0) }
        case .uint64: return buffer(UInt64.self).map { Int(truncatingIfNeeded: $0) }
        case .bool: return buffer(Bool.self).map { $0 ? 1 : 0 }
        default: throw SegFormerError.invalid("expected an integer tensor, got \(dataType) of shape \(shape)")
        }
    }

    /// The elements of a floating-point (or integer) tensor widened to `Double`.
    public func doubles() throws -> [Double] {
        switch dataType {
        case .float: return buffer(Float.self).map { Double($0) }
        case .double: return Array(buffer(Double.self))
        case .float16: return buffer(Float16.self).map { Double($0) }
        case .bfloat16: return buffer(BFloat16.self).map { Double($0.float) }
        default: return try integers().map { Double($0) }
        }
    }

    /// Whether two tensors hold the same type, shape and bytes.
    public func bitwiseEqual(_ other: Tensor) -> Bool {
        guard dataType == other.dataType, shape == other.shape else { return false }
        if dataType == .string { return strings == other.strings }
        return memcmp(storage.pointer, other.storage.pointer, byteCount) == 0
    }

    public var description: String { "Tensor<\(dataType)>\(shape)" }
}
