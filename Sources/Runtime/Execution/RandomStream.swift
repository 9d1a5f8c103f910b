import GraphIR

/// The random numbers of training-mode graphs (dropout masks, drop-path's RandomUniformLike):
/// a counter-based generator, Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
/// 1, 2, 3", SC 2011). Element `i` of node `n` in run `r` is a pure function of (seed, n, r, i), so
/// the same seed gives the same masks on any number of threads, and the whole generator state is two
/// words (seed, run) that a checkpoint stores to resume exactly.
public struct RandomStream: Sendable, Equatable {
    public var seed: UInt64
    /// How many runs drew from this stream so far; each run of a session draws fresh numbers.
    public var run: UInt64

    public init(seed: UInt64, run: UInt64 = 0) {
        self.seed = seed
        self.run = run
    }

    /// The state as checkpoint words, and back.
    public var words: [UInt64] { [seed, run] }
    public init(words: [UInt64]) throws {
        guard words.count == 2 else { throw SegFormerError.invalid("random stream state needs 2 words, has \(words.count)") }
        self.init(seed: words[0], run: words[1])
    }

    /// The key of one node's numbers in this stream: the seed mixed with a hash of the node's first
    /// output name (stable across imports, unlike a node index).
    public func key(node: String) -> (UInt32, UInt32) {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325           // FNV-1a over the name's bytes
        for byte in node.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01B3 }
        let k = Philox.mix(seed ^ Philox.mix(h))
        return (UInt32(truncatingIfNeeded: k), UInt32(truncatingIfNeeded: k >> 32))
    }

    /// Fills `count` floats in [0, 1) for `node` in the current run: out[i] depends only on
    /// (seed, node, run, i), whatever the chunking.
    public func uniforms(node: String, count: Int, context: ExecutionContext, _ out: UnsafeMutablePointer<Float>) {
        let key = key(node: node)
        let r0 = UInt32(truncatingIfNeeded: run), r1 = UInt32(truncatingIfNeeded: run >> 32)
        let blocks = (count + 3) / 4
        context.parallelFor(blocks, minimumPerChunk: 4096) { start, end in
            for b in start..<end {
                let words = Philox.block(counter: (UInt32(truncatingIfNeeded: b), UInt32(truncatingIfNeeded: b >> 32), r0, r1),
                                         key: key)
                let base = b * 4
                for lane in 0..<min(4, count - base) { out[base + lane] = Philox.unitFloat(words[lane]) }
            }
        }
    }
}

/// Philox4x32 with 10 rounds (the Random123 constants).
enum Philox {
    static func block(counter c: (UInt32, UInt32, UInt32, UInt32), key k: (UInt32, UInt32)) -> SIMD4<UInt32> {
        var (c0, c1, c2, c3) = c
        var (k0, k1) = k
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0), p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
            let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
            k0 &+= 0x9E37_79B9
            k1 &+= 0xBB67_AE85
        }
        return SIMD4(c0, c1, c2, c3)
    }

    /// The top 24 bits as a float in [0, 1) (every value exactly representable).
    @inline(__always)
    static func unitFloat(_ w: UInt32) -> Float { Float(w >> 8) * (1 / 16_777_216) }

    /// SplitMix64's finaliser: spreads a 64-bit value over all bits.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
