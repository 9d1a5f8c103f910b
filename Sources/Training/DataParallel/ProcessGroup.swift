import GraphIR
import Runtime

/// The processes of a data-parallel job, as training needs them: who am I, how many are we, and sums
/// over all of us. `Distributed.MPIProcessGroup` implements it on Open MPI; the Training module itself
/// never links MPI. As a `CrossProcessSum` it is also what training-mode BatchNorm kernels sum their
/// statistics with under `--sync-batchnorm` (`TrainingOptions.batchNormProcesses`).
///
/// Every process must make the same calls in the same order (they are collectives). A call that cannot
/// complete — a peer died, or is stuck past the group's timeout — throws instead of hanging.
public protocol ProcessGroup: CrossProcessSum {
    /// This process's index, 0..<size. Rank 0 is the one that writes files.
    var rank: Int { get }
    /// The number of processes.
    var size: Int { get }
    /// Starts an element-wise sum over all processes of `buffers`, in place, in buckets: a bucket's sum
    /// starts once every buffer in it is `bufferReady`, so buffers given in the order they are finished
    /// overlap the sums with the work still to do. The buffers must stay alive until `finish` returns.
    func startAllReduceSum(_ buffers: [UnsafeMutableBufferPointer<Float>]) throws -> any PendingAllReduce
    /// Element-wise sum, minimum or maximum over all processes, in place (exact: integers).
    func allReduce(_ values: inout [Int64], _ op: ReduceOperation) throws
}

/// A bucketed sum over the processes under way (`ProcessGroup.startAllReduceSum`).
public protocol PendingAllReduce: AnyObject {
    /// Buffer `index` holds its final local value: its bucket starts when it is the bucket's last.
    func bufferReady(_ index: Int) throws
    /// Lets the started sums progress (Open MPI 4 has no progress thread: they advance only inside MPI
    /// calls), so call it between pieces of other work.
    func progress() throws
    /// Waits for every bucket (every buffer must be ready); then each buffer holds the sum, the same bits
    /// on every process.
    func finish() throws
}

/// How `ProcessGroup.allReduce` combines the processes' values.
public enum ReduceOperation: Sendable { case sum, min, max }

extension ProcessGroup {
    /// Throws `message(min, max)` unless every process holds the same `value` (all processes throw).
    public func requireSame(_ value: Int64, _ message: (Int64, Int64) -> String) throws {
        var low = [value], high = [value]
        try allReduce(&low, .min)
        try allReduce(&high, .max)
        guard low[0] == high[0] else { throw SegFormerError.invalid(message(low[0], high[0])) }
    }
}

// The checks that keep the processes' replicas of the model one model.
extension ProcessGroup {
    /// Throws on every process unless all resumed alike, at the same step, with the same parameters
    /// (a folder not shared by all machines, or different model files, would otherwise train apart).
    func requireSameStart(resumed: Bool, step: Int, parameters training: TrainingSession) throws {
        try requireSame(resumed ? 1 : 0) { _, _ in
            "some processes found a checkpoint to resume and others did not: the output folder must be the same (shared) folder for all processes"
        }
        try requireSame(Int64(step)) { low, high in "the processes resumed at different steps (\(low) to \(high))" }
        try requireSameParameters(training, step: step)
    }

    /// Throws on every process unless all hold bit-identical parameters (compared by a fingerprint).
    func requireSameParameters(_ training: TrainingSession, step: Int) throws {
        try requireSame(training.parameterFingerprint) { _, _ in
            "the processes' parameters differ at step \(step) (different model files, or a replica went astray)"
        }
    }
}

extension TrainingSession {
    /// A hash of every parameter's bits in parameter order (FNV-1a over 32-bit words).
    var parameterFingerprint: Int64 {
        var h: UInt64 = 0xcbf29ce484222325
        for name in parameterNames {
            guard let t = parameter(name) else { continue }
            let p = t.pointer(UInt32.self)
            for i in 0..<t.count { h = (h ^ UInt64(p[i])) &* 0x100000001b3 }
        }
        return Int64(bitPattern: h)
    }
}
