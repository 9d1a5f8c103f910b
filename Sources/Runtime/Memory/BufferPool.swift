import Foundation
import GraphIR

/// Recycles tensor buffers. When a tensor's last reference goes away (the executor drops a value
/// after its last use), its buffer returns here and the next allocation of a similar size takes it
/// again, so a steady-state run allocates almost nothing. Sizes are rounded up to a few classes per
/// power of two so that near-equal sizes share buffers.
///
/// The runtime installs the one shared pool as every tensor's allocator when it creates its first
/// `ExecutionContext` (`BufferPool.installShared()`): kernels allocate their outputs through
/// `Tensor`'s initialisers, which know no session, so the pool is per process. Tensors made before
/// (an imported model's initializers) keep the system allocator they came from.
public final class BufferPool: TensorAllocator, @unchecked Sendable {
    public static let shared = BufferPool()

    /// Makes the shared pool the allocator of every tensor created from now on (idempotent).
    public static func installShared() { _ = installation }
    private static let installation: Void = { TensorStorage.allocator = shared }()

    private var free: [Int: [UnsafeMutableRawPointer]] = [:]
    private var lock = pthread_mutex_t()
    private var cachedBytes = 0
    /// Buffers above this many cached bytes are returned to the system instead of kept.
    public var cacheLimitBytes = 4 << 30

    public init() { pthread_mutex_init(&lock, nil) }

    /// The capacity actually reserved for a request of `bytes`.
    static func sizeClass(_ bytes: Int) -> Int {
        if bytes <= 256 { return 256 }
        let top = Int.bitWidth - 1 - (bytes - 1).leadingZeroBitCount   // floor(log2(bytes-1))
        let step = 1 << max(top - 2, 0)                                // 4 classes per octave
        return (bytes + step - 1) / step * step
    }

    public func allocate(bytes: Int) -> (pointer: UnsafeMutableRawPointer, capacity: Int) {
        let size = BufferPool.sizeClass(max(bytes, 1))
        pthread_mutex_lock(&lock)
        if var list = free[size], let p = list.popLast() {
            free[size] = list
            cachedBytes -= size
            pthread_mutex_unlock(&lock)
            return (p, size)
        }
        pthread_mutex_unlock(&lock)
        return (UnsafeMutableRawPointer.allocate(byteCount: size, alignment: TensorStorage.alignment), size)
    }

    public func release(_ pointer: UnsafeMutableRawPointer, capacity: Int) {
        pthread_mutex_lock(&lock)
        if cachedBytes + capacity <= cacheLimitBytes {
            free[capacity, default: []].append(pointer)
            cachedBytes += capacity
            pthread_mutex_unlock(&lock)
        } else {
            pthread_mutex_unlock(&lock)
            pointer.deallocate()
        }
    }

    /// Returns every cached buffer to the system.
    public func trim() {
        pthread_mutex_lock(&lock)
        let all = free
        free = [:]
        cachedBytes = 0
        pthread_mutex_unlock(&lock)
        for (_, list) in all { for p in list { p.deallocate() } }
    }
}
