import CKernels
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
        forEachChunk(node: node, count: count, context: context) { first, words, n in
            for i in 0..<n { out[first + i] = Philox.unitFloat(words[i]) }
        }
    }

    /// Element i of the stream is kept by dropout at `ratio` when its uniform (`uniforms`) is ≥ ratio:
    /// mask[i] for i < count, with the same chunks.
    func keepMask(node: String, count: Int, ratio: Double, context: ExecutionContext, _ mask: UnsafeMutablePointer<Bool>,
                  then body: (_ first: Int, _ count: Int) -> Void = { _, _ in }) {
        // u = k·2⁻²⁴ exactly, so u ≥ ratio ⇔ k ≥ ⌈ratio·2²⁴⌉ (both sides exact in Double).
        let threshold = UInt32((ratio * 16_777_216).rounded(.up))
        forEachChunk(node: node, count: count, context: context) { first, words, n in
            ck_dropout_keep(words, threshold, mask + first, n)
            body(first, n)
        }
    }

    /// Elements per chunk of random words: 64 KB of words, whole Philox blocks.
    static let chunkElements = 16_384

    /// Calls `body(first, words, n)` for consecutive chunks of the stream's elements, in parallel:
    /// words[j] is the random word of element first + j.
    private func forEachChunk(node: String, count: Int, context: ExecutionContext,
                              _ body: (Int, UnsafePointer<UInt32>, Int) -> Void) {
        let key = key(node: node)
        let r0 = UInt32(truncatingIfNeeded: run), r1 = UInt32(truncatingIfNeeded: run >> 32)
        let per = Self.chunkElements
        context.parallelFor((count + per - 1) / per) { start, end in
            let words = UnsafeMutablePointer<UInt32>.allocate(capacity: per)
            defer { words.deallocate() }
            for chunk in start..<end {
                let first = chunk * per, n = min(per, count - first)
                ck_philox_words(UInt64(first / 4), (n + 3) / 4, key.0, key.1, r0, r1, words)
                body(first, words, n)
            }
        }
    }
}

/// Philox4x32 with 10 rounds (the Random123 constants; computed in CKernels).
enum Philox {
    /// One block: the counter's words 0–1 are the block index, 2–3 the run (see ck_philox_words).
    static func block(counter c: (UInt32, UInt32, UInt32, UInt32), key k: (UInt32, UInt32)) -> SIMD4<UInt32> {
        var words = SIMD4<UInt32>()
        withUnsafeMutableBytes(of: &words) {
            ck_philox_words(UInt64(c.1) << 32 | UInt64(c.0), 1, k.0, k.1, c.2, c.3, $0.baseAddress!.assumingMemoryBound(to: UInt32.self))
        }
        return words
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
