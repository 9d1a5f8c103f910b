import GraphIR

/// One node ready to execute: its kernel and the value slots it reads and writes.
struct Step {
    let nodeIndex: Int
    let kernel: Kernel
    let inputs: [Int]        // -1 for an absent optional input
    let outputs: [Int]       // -1 for an unused optional output
    /// Slots whose last reader is this step: dropped right after it runs, which returns their
    /// buffers to the pool for the next allocation (liveness-driven buffer reuse).
    var release: [Int] = []
}

/// What a plan is keyed by: the bound shape of every runtime input, plus the values of small
/// integer/bool inputs (they may decide shapes, e.g. a Reshape target fed as an input).
struct PlanKey: Hashable {
    var shapes: [[Int]]
    var integerValues: [[Int]]
}

/// An execution plan for one binding of input shapes: the nodes still to run once every value
/// that depends only on constants and input *shapes* has been folded (shape arithmetic such as
/// Shape → Gather → Unsqueeze → Concat → Reshape collapses to constants), in order, with liveness.
final class ExecutionPlan {
    /// Values computed once when the plan was built (folded constants), by slot.
    var foldedValues: [Int: Tensor] = [:]
    var steps: [Step] = []
    var foldedNodeCount = 0
}
