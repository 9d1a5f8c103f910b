import CMPI
import Foundation
import GraphIR
import Training

/// A data-parallel job's processes on Open MPI (`mpirun -np N segformer train …`): rank and size from
/// `MPI_COMM_WORLD`, gradient all-reduce in buckets (`MPI_Iallreduce`) started as the backward pass
/// finishes them (`BucketedAllReduce`), and no hang:
/// errors are returned (`MPI_ERRORS_RETURN`) and every wait gives up after `timeout` seconds with an
/// error, which the caller turns into `abort` — that ends every process of the job.
///
/// A peer that dies (even by SIGKILL) is noticed by Open MPI's launcher, which ends the whole job
/// with a non-zero exit; the timeout is the backstop for a peer that is alive but stuck.
public final class MPIProcessGroup: ProcessGroup, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// Processes of this job on this machine (to split its cores between them).
    public let localSize: Int
    /// Seconds a collective may wait for the other processes before it throws.
    public var timeout: Double
    /// Gradient buffers smaller than this are packed together into buckets of about this size.
    public var bucketBytes = 4 << 20

    /// Whether an MPI launcher (mpirun, srun, …) started this process: then `segformer train` trains
    /// data-parallel without being asked.
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"].contains { env[$0] != nil }
    }

    /// Initialises MPI (once per process; `finalize` or `abort` ends it).
    public init(timeout: Double = 600) throws {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            // Only the thread that trains calls MPI (the data loader's prefetch thread never does).
            var provided: Int32 = 0
            try MPIProcessGroup.check(MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided), "MPI_Init_thread")
        }
        try MPIProcessGroup.check(MPI_Comm_set_errhandler(cmpi_comm_world(), cmpi_errors_return()), "MPI_Comm_set_errhandler")
        var r: Int32 = 0, s: Int32 = 0
        try MPIProcessGroup.check(MPI_Comm_rank(cmpi_comm_world(), &r), "MPI_Comm_rank")
        try MPIProcessGroup.check(MPI_Comm_size(cmpi_comm_world(), &s), "MPI_Comm_size")
        rank = Int(r)
        size = Int(s)
        localSize = Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? 1
        self.timeout = timeout
    }

    /// Ends MPI after a successful run (every process must call it, or the launcher reports a failure).
    public func finalize() { MPI_Finalize() }

    /// Ends every process of the job with exit code `code` (after this process printed why).
    public func abort(code: Int32) -> Never {
        MPI_Abort(cmpi_comm_world(), code)
        exit(code)   // not reached: MPI_Abort does not return
    }

    // MARK: collectives

    public func startAllReduceSum(_ buffers: [UnsafeMutableBufferPointer<Float>]) throws -> any PendingAllReduce {
        BucketedAllReduce(group: self, buffers: buffers)
    }

    public func allReduceSum(_ values: inout [Double]) throws {
        guard !values.isEmpty else { return }
        try values.withUnsafeMutableBufferPointer {
            try wait([start($0.baseAddress!, $0.count, cmpi_double(), cmpi_sum())], what: "all-reduce")
        }
    }

    public func allReduce(_ values: inout [Int64], _ op: ReduceOperation) throws {
        guard !values.isEmpty else { return }
        let mpiOp: MPI_Op
        switch op {
        case .sum: mpiOp = cmpi_sum()
        case .min: mpiOp = cmpi_min()
        case .max: mpiOp = cmpi_max()
        }
        try values.withUnsafeMutableBufferPointer {
            try wait([start($0.baseAddress!, $0.count, cmpi_int64(), mpiOp)], what: "all-reduce")
        }
    }

    /// Starts an in-place all-reduce of `count` elements at `buffer` (which must stay alive until `wait`).
    fileprivate func start(_ buffer: UnsafeMutableRawPointer, _ count: Int, _ type: MPI_Datatype, _ op: MPI_Op) throws -> MPI_Request? {
        var request: MPI_Request? = cmpi_request_null()
        try MPIProcessGroup.check(MPI_Iallreduce(cmpi_in_place(), buffer, Int32(count), type, op, cmpi_comm_world(), &request),
                                  "MPI_Iallreduce")
        return request
    }

    /// Waits for `requests`, polling (spinning briefly, then sleeping up to 2 ms so a waiting process leaves
    /// the cores to the ones still computing), and throws after `timeout` seconds.
    fileprivate func wait(_ requests: [MPI_Request?], what: String) throws {
        var pending = requests
        let deadline = Date().addingTimeInterval(timeout)
        var polls = 0
        while true {
            var done: Int32 = 0
            try MPIProcessGroup.check(MPI_Testall(Int32(pending.count), &pending, &done, cmpi_statuses_ignore()), "MPI_Testall (\(what))")
            if done != 0 { return }
            if Date() > deadline {
                throw SegFormerError.invalid("rank \(rank): \(what) did not complete within \(Int(timeout)) s: another process is stuck or gone")
            }
            polls += 1
            if polls > 200 { usleep(useconds_t(min(2000, 10 * (polls - 200)))) }
        }
    }

    fileprivate static func check(_ code: Int32, _ call: String) throws {
        guard code != MPI_SUCCESS else { return }
        var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
        var length: Int32 = 0
        MPI_Error_string(code, &text, &length)
        throw SegFormerError.invalid("\(call) failed: \(String(cString: text))")
    }
}

/// The gradient all-reduce of one step: buffers below `bucketBytes` are packed, in the order given, into
/// buckets of about that size; a larger one is a bucket alone, summed in place. A bucket's
/// `MPI_Iallreduce` starts when its last buffer is ready — every process starts the same buckets in the
/// same order, as collectives must be — and `progress` (`MPI_Testall`) moves the started ones along.
final class BucketedAllReduce: PendingAllReduce {
    private let group: MPIProcessGroup
    private let buffers: [UnsafeMutableBufferPointer<Float>]
    private var buckets: [[Int]] = []
    private var bucketOf: [Int]
    private var missing: [Int] = []
    private var isReady: [Bool]
    /// A packed bucket's contiguous copy (empty for a bucket of one buffer, summed in place).
    private var packed: [UnsafeMutableBufferPointer<Float>] = []
    private var requests: [MPI_Request?] = []

    init(group: MPIProcessGroup, buffers: [UnsafeMutableBufferPointer<Float>]) {
        self.group = group
        self.buffers = buffers
        bucketOf = [Int](repeating: -1, count: buffers.count)
        isReady = buffers.map { $0.count == 0 }
        var current: [Int] = [], currentBytes = 0
        for (i, b) in buffers.enumerated() where b.count > 0 {
            if b.count * 4 >= group.bucketBytes { buckets.append([i]); continue }
            current.append(i)
            currentBytes += b.count * 4
            if currentBytes >= group.bucketBytes { buckets.append(current); current = []; currentBytes = 0 }
        }
        if !current.isEmpty { buckets.append(current) }
        for (k, bucket) in buckets.enumerated() { for i in bucket { bucketOf[i] = k } }
        missing = buckets.map(\.count)
        packed = buckets.map { _ in UnsafeMutableBufferPointer(start: nil, count: 0) }
        requests = buckets.map { _ in cmpi_request_null() }
    }

    deinit { for p in packed where p.baseAddress != nil { p.deallocate() } }

    func bufferReady(_ index: Int) throws {
        guard !isReady[index] else { return }
        isReady[index] = true
        let k = bucketOf[index]
        missing[k] -= 1
        guard missing[k] == 0 else { return }
        if buckets[k].count == 1 {
            requests[k] = try group.start(buffers[index].baseAddress!, buffers[index].count, cmpi_float(), cmpi_sum())
            return
        }
        let bucket = UnsafeMutableBufferPointer<Float>.allocate(capacity: buckets[k].reduce(0) { $0 + buffers[$1].count })
        var offset = 0
        for i in buckets[k] {
            _ = UnsafeMutableBufferPointer(rebasing: bucket[offset..<(offset + buffers[i].count)]).initialize(fromContentsOf: buffers[i])
            offset += buffers[i].count
        }
        packed[k] = bucket
        requests[k] = try group.start(bucket.baseAddress!, bucket.count, cmpi_float(), cmpi_sum())
    }

    func progress() throws {
        var done: Int32 = 0
        try MPIProcessGroup.check(MPI_Testall(Int32(requests.count), &requests, &done, cmpi_statuses_ignore()), "MPI_Testall (gradient all-reduce)")
    }

    func finish() throws {
        guard let notReady = isReady.firstIndex(of: false) else {
            try group.wait(requests, what: "gradient all-reduce")
            for (k, bucket) in buckets.enumerated() where bucket.count > 1 {
                var offset = 0
                for i in bucket {
                    _ = buffers[i].update(fromContentsOf: packed[k][offset..<(offset + buffers[i].count)])
                    offset += buffers[i].count
                }
            }
            return
        }
        throw SegFormerError.invalid("gradient all-reduce finished before buffer \(notReady) was ready (an internal error)")
    }
}
