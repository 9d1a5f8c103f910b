import Foundation

/// Where tensor bytes come from. The IR only needs memory; the runtime decides the policy (its
/// `BufferPool` recycles buffers between runs) and installs it as `TensorStorage.allocator`.
public protocol TensorAllocator: AnyObject, Sendable {
    /// At least `bytes` bytes aligned to `TensorStorage.alignment`, and the capacity reserved.
    func allocate(bytes: Int) -> (pointer: UnsafeMutableRawPointer, capacity: Int)
    /// Gives back a buffer this allocator handed out.
    func release(_ pointer: UnsafeMutableRawPointer, capacity: Int)
}

/// Plain aligned allocation: the default until the runtime installs its pool.
public final class SystemAllocator: TensorAllocator {
    public static let shared = SystemAllocator()
    public func allocate(bytes: Int) -> (pointer: UnsafeMutableRawPointer, capacity: Int) {
        let size = max(bytes, 1)
        return (UnsafeMutableRawPointer.allocate(byteCount: size, alignment: TensorStorage.alignment), size)
    }
    public func release(_ pointer: UnsafeMutableRawPointer, capacity: Int) { pointer.deallocate() }
}

/// The bytes behind one or more tensors (reshapes share it). Returned to the allocator that made
/// them on last release.
public final class TensorStorage: @unchecked Sendable {
    /// Alignment of every buffer: a cache line, and what AVX-512 loads like.
    public static let alignment = 64
    /// The allocator new storage comes from (see `TensorAllocator`).
    nonisolated(unsafe) public static var allocator: any TensorAllocator = SystemAllocator.shared

    public let pointer: UnsafeMutableRawPointer
    public let byteCount: Int
    private let capacity: Int
    private let allocator: any TensorAllocator

    /// An uninitialised buffer of at least `byteCount` bytes.
    public init(byteCount: Int) {
        allocator = TensorStorage.allocator
        (pointer, capacity) = allocator.allocate(bytes: byteCount)
        self.byteCount = byteCount
    }

    deinit { allocator.release(pointer, capacity: capacity) }
}
