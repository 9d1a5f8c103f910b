import Foundation

/// Recycles tensor buffers. When a tensor's last reference goes away (the executor drops a value
/// after its last use), its buffer returns here and the next allocation of a similar size takes it
/// again, so a steady-state run allocates almost nothing. Sizes are rounded up to a few classes per
/// power of two so that near-equal sizes share buffers.
public final class BufferPool: @unchecked Sendable {
    public static let shared = BufferPool()

    private var free: [Int: [UnsafeMutableRawPointer]] = [:]
    private var lock = pthread_mutex_t()
    private var cachedBytes = 0
    /// Buffers above this many cached bytes are returned to the system instead of kept.
    public var cacheLimitBytes = 4 << 30

    /// Alignment of every buffer: a cache line, and what AVX-512 loads like.
    public static let alignment = 64

    public init() { pthread_mutex_init(&lock, nil) }

    /// The capacity actually reserved for a request of `bytes`.
    static func sizeClass(_ bytes: Int) -> Int {
        if bytes <= 256 { return 256 }
        let top = Int.bitWidth - 1 - (bytes - 1).leadingZeroBitCount   // floor(log2(bytes-1))
        let step = 1 << max(top - 2, 0)                                // 4 classes per octave
        return (bytes + step - 1) / step * step
    }

    public func allocate(bytes: Int) -> (UnsafeMutableRawPointer, Int) {
        let size = BufferPool.sizeClass(max(bytes, 1))
        pthread_mutex_lock(&lock)
        if var list = free[size], let p = list.popLast() {
            free[size] = list
            cachedBytes -= size
            pthread_mutex_unlock(&lock)
            return (p, size)
        }
        pthread_mutex_unlock(&lock)
        return (UnsafeMutableRawPointer.allocate(byteCount: size, alignment: BufferPool.alignment), size)
    }

    public func recycle(_ pointer: UnsafeMutableRawPointer, capacity: Int) {
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

/// The bytes behind one or more tensors (reshapes share it). Freed back to the pool on last release.
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let byteCount: Int
    private let capacity: Int
    private let pooled: Bool

    /// A pooled, uninitialised buffer of at least `byteCount` bytes.
    public init(byteCount: Int) {
        let (p, cap) = BufferPool.shared.allocate(bytes: byteCount)
        pointer = p
        capacity = cap
        self.byteCount = byteCount
        pooled = true
    }

    deinit {
        if pooled { BufferPool.shared.recycle(pointer, capacity: capacity) } else { pointer.deallocate() }
    }
}
