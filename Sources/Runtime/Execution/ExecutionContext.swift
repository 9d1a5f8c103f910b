import Dispatch
import CBLAS
import GraphIR

/// Per-session settings the kernels see: how many threads they may use, and the random stream that
/// training-mode ops (Dropout, RandomUniformLike) draw from.
public final class ExecutionContext: @unchecked Sendable {
    /// Intra-op threads for our own loops and for OpenBLAS.
    public let threads: Int
    /// Seed and run counter of the random numbers; `Session.run` advances `run` after each run.
    public var random = RandomStream(seed: 0)
    /// The processes whose batches together make the batch that training-mode BatchNorm normalises with
    /// (`--sync-batchnorm` in a data-parallel job); nil, the default, uses this process's batch alone.
    public var crossProcessSum: (any CrossProcessSum)?

    public init(threads: Int? = nil) {
        let n = max(1, threads ?? ExecutionContext.coreCount)
        self.threads = n
        openblas_set_num_threads(Int32(n))
        BufferPool.installShared()
    }

    public static var coreCount: Int { max(1, Int(openblas_get_num_procs())) }

    /// Runs `body(chunkStart, chunkEnd)` over `0..<count` split into at most `threads` chunks.
    /// Small jobs (below `minimumPerChunk` items per chunk) stay on the calling thread.
    @inline(__always)
    public func parallelFor(_ count: Int, minimumPerChunk: Int = 1, _ body: (Int, Int) -> Void) {
        if count <= 0 { return }
        let chunks = min(threads, max(1, count / max(1, minimumPerChunk)))
        if chunks == 1 { body(0, count); return }
        let per = (count + chunks - 1) / chunks
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let start = c * per
                let end = min(count, start + per)
                if start < end { body(start, end) }
            }
        }
    }
}
