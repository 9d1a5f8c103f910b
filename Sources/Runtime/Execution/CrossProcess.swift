import GraphIR

// The two seams between a run and the other processes of a data-parallel job. The runtime never links
// MPI: the Training module's `ProcessGroup` (on Open MPI in the Distributed module) is what plugs in.

/// Sums over the processes of a data-parallel job, for kernels whose result depends on the whole global
/// batch: BatchNorm's statistics in training mode under `--sync-batchnorm` (`ExecutionContext.crossProcessSum`).
/// Every process must make the same calls in the same order (a collective); a call that cannot complete throws.
public protocol CrossProcessSum: AnyObject, Sendable {
    /// Element-wise sum over all processes, in place; every process ends with the same bits.
    func allReduceSum(_ values: inout [Double]) throws
}

/// Follows a run step by step (`Session.run(_:observer:)`), e.g. to send each gradient to the other
/// processes as soon as the backward pass has finished it instead of after the whole run.
public protocol RunObserver: AnyObject {
    /// Called once before the first step with the graph outputs known then (folded when planning, or fed),
    /// and after every step with the outputs that step finished (often none): from then on their values
    /// do not change. Throwing ends the run with that error.
    func afterStep(finished outputs: [(name: String, value: Tensor)]) throws
}
