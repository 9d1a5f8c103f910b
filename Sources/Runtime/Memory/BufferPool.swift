import Foundation
import GraphIR

/// Recycles tensor buffers. When a tensor's last reference goes away (the executor drops a value
/// after its last use), its buffer returns here and the next allocation of a similar size takes it
/// again, so a steady-state run allocates almost nothing. Sizes are rounded up to a few classes per
/// power of two so that near-equal sizes share buffers.
///
/// With `slackBytes` set, what the pool holds — buffers in use plus cached ones — stays within the most
/// the process has had in use at once (`Statistics.peakLiveBytes`) plus `slackBytes`: a request that finds no cached buffer
/// of its size class first returns the least recently released cached buffers to the system. Without
/// that cap every size class would keep as many buffers as it ever had in use at once, and a training
/// step's resident memory would sit far above its activation peak (the plan's figure). Large buffers
/// are mapped (mmap), so returning one gives its pages back to the system at once.
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

    /// Byte counts of the pool's buffers, for memory reports.
    public struct Statistics: Sendable {
        /// Handed out and not yet returned.
        public var liveBytes = 0
        /// Returned and kept for reuse.
        public var cachedBytes = 0
        /// The most ever handed out at once.
        public var peakLiveBytes = 0
        /// The most ever held at once (in use + cached): what the pool adds to resident memory.
        public var peakHeldBytes = 0
        /// Taken from the system / given back to it, in total.
        public var systemAllocatedBytes = 0
        public var systemReleasedBytes = 0
    }

    /// Buffers from this size on are mapped directly (page-aligned, unmapped when evicted).
    static let mappedThreshold = 1 << 20
    /// How far above the peak in use the held bytes may go before cached buffers are evicted; nil (the
    /// default): no cap. The cap costs time: each step then returns some buffers to the system and
    /// faults them in again — measured on b0 (quiet machine, 2 threads) with a 32 MB slack, inference
    /// at 512² took 195–223 ms against 142–160 ms without, and the memory it saved is not needed
    /// for the targets (a training step's peak RSS stays under half of PyTorch's without it).
    public var slackBytes: Int? = nil

    private var free: [Int: [(pointer: UnsafeMutableRawPointer, released: Int)]] = [:]
    private var releases = 0   // release counter: orders cached buffers from least to most recently released
    private var stats = Statistics()
    private var lock = pthread_mutex_t()

    public init() { pthread_mutex_init(&lock, nil) }

    /// The capacity actually reserved for a request of `bytes`.
    static func sizeClass(_ bytes: Int) -> Int {
        if bytes <= 256 { return 256 }
        let top = Int.bitWidth - 1 - (bytes - 1).leadingZeroBitCount   // floor(log2(bytes-1))
        let step = 1 << max(top - 2, 0)                                // 4 classes per octave
        return (bytes + step - 1) / step * step
    }

    public var statistics: Statistics {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        return stats
    }

    public func allocate(bytes: Int) -> (pointer: UnsafeMutableRawPointer, capacity: Int) {
        let size = BufferPool.sizeClass(max(bytes, 1))
        pthread_mutex_lock(&lock)
        stats.liveBytes += size
        stats.peakLiveBytes = max(stats.peakLiveBytes, stats.liveBytes)
        if var list = free[size], let cached = list.popLast() {
            free[size] = list
            stats.cachedBytes -= size
            pthread_mutex_unlock(&lock)
            return (cached.pointer, size)
        }
        // A miss: make room under the cap first, from the least recently released buffers.
        var evicted: [(UnsafeMutableRawPointer, Int)] = []
        let cap = slackBytes.map { stats.peakLiveBytes + $0 } ?? .max
        while stats.liveBytes + stats.cachedBytes > cap, let oldest = leastRecentlyReleasedClass() {
            let p = free[oldest]!.removeFirst().pointer
            stats.cachedBytes -= oldest
            stats.systemReleasedBytes += oldest
            evicted.append((p, oldest))
        }
        stats.systemAllocatedBytes += size
        stats.peakHeldBytes = max(stats.peakHeldBytes, stats.liveBytes + stats.cachedBytes)
        pthread_mutex_unlock(&lock)
        for (p, capacity) in evicted { BufferPool.systemRelease(p, capacity: capacity) }
        return (BufferPool.systemAllocate(size), size)
    }

    public func release(_ pointer: UnsafeMutableRawPointer, capacity: Int) {
        pthread_mutex_lock(&lock)
        stats.liveBytes -= capacity
        stats.cachedBytes += capacity
        releases += 1
        free[capacity, default: []].append((pointer, releases))
        pthread_mutex_unlock(&lock)
    }

    /// Returns every cached buffer to the system.
    public func trim() {
        pthread_mutex_lock(&lock)
        let all = free
        free = [:]
        stats.systemReleasedBytes += stats.cachedBytes
        stats.cachedBytes = 0
        pthread_mutex_unlock(&lock)
        for (capacity, list) in all { for c in list { BufferPool.systemRelease(c.pointer, capacity: capacity) } }
    }

    /// The size class whose oldest cached buffer was released first (lists are in release order).
    private func leastRecentlyReleasedClass() -> Int? {
        var best: (size: Int, released: Int)? = nil
        for (size, list) in free {
            guard let first = list.first else { continue }
            if best == nil || first.released < best!.released { best = (size, first.released) }
        }
        return best?.size
    }

    private static func systemAllocate(_ size: Int) -> UnsafeMutableRawPointer {
        guard size >= mappedThreshold else { return UnsafeMutableRawPointer.allocate(byteCount: size, alignment: TensorStorage.alignment) }
        // Out of memory ends the process, as a failed malloc in `allocate(byteCount:)` does.
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            fatalError("out of memory: cannot map \(size) bytes for a tensor")
        }
        return p
    }

    private static func systemRelease(_ pointer: UnsafeMutableRawPointer, capacity: Int) {
        if capacity >= mappedThreshold { munmap(pointer, capacity) } else { pointer.deallocate() }
    }
}
