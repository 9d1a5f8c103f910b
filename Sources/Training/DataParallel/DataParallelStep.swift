import GraphIR
import Runtime
import SegmentationData

extension TrainingSession {
    /// The training step of one process in a data-parallel job: the same update as `step` would make on
    /// the whole global batch (all processes' slices together) in one process.
    ///
    /// HF's loss is the mean over the labelled pixels of the batch, so each process's mean-loss gradient
    /// is weighted by its share of the *global* labelled-pixel count (local / global) before the gradients
    /// are summed over the processes: Σ_r (n_r / n) · ∇mean_r = ∇(Σ pixels / n), the single-process
    /// gradient. (PyTorch DDP averages the per-process means instead, Σ_r ∇mean_r / N, which differs
    /// whenever the processes' slices hold different numbers of ignored pixels.) The logged loss is the
    /// global one, Σ_r (n_r / n) · loss_r. A process whose slice holds no labelled pixel contributes zero.
    ///
    /// The sum overlaps the backward pass: the global counts are summed first (small), so each process
    /// knows its weight before the run; each gradient is weighted as soon as the backward pass has
    /// finished it, and its bucket's all-reduce starts when the bucket is complete — buckets follow the
    /// order in which the plan finishes the gradients (the last layers first). Between kernels the run
    /// lets the started all-reduces progress. The arithmetic is the same as weighting and summing after
    /// the run, so the update is too.
    ///
    /// With SyncBatchNorm (`TrainingOptions.batchNormProcesses`) the weight seeds the backward pass
    /// instead (`lossWeightName`), so what each process adds into BatchNorm's global sums carries its share,
    /// and every process runs every micro-batch, even one without labelled pixels (its BatchNorm inputs
    /// count in the statistics).
    ///
    /// `next` gives this process's slice of each global batch (nil, an epoch boundary, is skipped; it comes
    /// at the same step on every process). With `microBatches` > 1 each micro-batch is normalised by its
    /// own global count and the micro-batches are averaged, as `step` does; the last one's backward pass
    /// overlaps the sum.
    public func dataParallelStep(_ number: Int, group: ProcessGroup, optimizer: Optimizer, learningRate: Double,
                                 microBatches: Int = 1, ignoreIndex: Int,
                                 next: () throws -> SegmentationBatch?) throws -> TrainingStepResult {
        precondition(microBatches >= 1, "a step needs at least one micro-batch")
        var sums: [String: Tensor] = [:]
        var weightedLosses: [Double] = []
        var images = 0
        var reduction: GradientReduction?
        while weightedLosses.count < microBatches {
            guard let batch = try next() else { continue }
            // The global labelled-pixel and image counts come first (small), so every process knows its weight.
            let labelled = Int64(TrainingSession.labelledPixels(batch.labels, ignoreIndex: ignoreIndex))
            var counts: [Int64] = [labelled, Int64(batch.pixelValues.shape[0])]
            try group.allReduce(&counts, .sum)
            images += Int(counts[1])
            guard counts[0] > 0 else {
                // Single-process HF takes the mean over no pixel: NaN, which `step` reports as this.
                try TrainingSession.requireFinite(loss: .nan, step: number, detail: " (every pixel of the global batch is ignored)")
                continue
            }
            let share = Double(labelled) / Double(counts[0])
            let scale = Float(share / Double(microBatches))
            // The weight goes into the graph (SyncBatchNorm) or onto the finished gradients.
            let (lossWeight, gradientScale): (Float, Float) = lossWeightName == nil ? (1, scale) : (scale, 1)
            let last = weightedLosses.count == microBatches - 1
            let runs = labelled > 0 || lossWeightName != nil
            if last { reduction = try GradientReduction(self, group: group, sums: &sums, scale: gradientScale, batch: batch, runs: runs) }
            var weighted = 0.0
            if runs {
                let (loss, grads, runningStatistics) = try forwardBackward(pixelValues: batch.pixelValues, labels: batch.labels,
                                                                           lossWeight: lossWeight, observer: reduction)
                try TrainingSession.requireFinite(loss: loss, step: number,
                                                  detail: batch.indices.isEmpty ? "" : " (samples \(batch.indices))")
                try requireFinite(gradients: grads, step: number)
                // Each process's BatchNorms move on its own slice (DDP's default), or all alike on the
                // global batch with SyncBatchNorm.
                commit(buffers: runningStatistics)
                weighted = Double(loss) * share
                if !last { TrainingSession.accumulate(&sums, grads, scale: gradientScale) }
            }
            weightedLosses.append(weighted)
        }
        // (The last micro-batch made `reduction`.)
        try reduction!.finishAll()
        try group.allReduceSum(&weightedLosses)
        try update(with: optimizer, gradients: sums, learningRate: learningRate)
        return TrainingStepResult(losses: weightedLosses.map { Float($0) }, images: images, gradients: sums)
    }
}

/// One step's gradient sums on their way to the other processes: a buffer per parameter (the sums of
/// the earlier micro-batches, or new), in the order the backward pass finishes the gradients. As the run
/// reports each gradient final it is weighted into its buffer (`scaledAdd`, as `accumulate` would) and
/// handed to the group's bucketed all-reduce; after every kernel the started buckets progress.
final class GradientReduction: RunObserver {
    private let pending: any PendingAllReduce
    /// Per parameter: its buffer's index and tensor, and whether the sum is new (not yet written).
    private var target: [String: (index: Int, sum: Tensor, isNew: Bool)] = [:]
    /// Gradient output → parameter.
    private let parameterOf: [String: String]
    private let scale: Float

    /// `batch`: the batch of the last micro-batch; its plan orders the buffers on every process alike,
    /// also where it does not run (`runs` false: nothing will be added, the sums are final as they are).
    init(_ training: TrainingSession, group: ProcessGroup, sums: inout [String: Tensor], scale: Float,
         batch: SegmentationBatch, runs: Bool) throws {
        self.scale = scale
        let plan = try training.executionPlan(pixelValues: batch.pixelValues, labels: batch.labels)
        let finishedAt = Dictionary(uniqueKeysWithValues: training.gradientGraph.gradients.map {
            ($0.parameter, plan.stepFinishing(output: $0.gradient) ?? 0)
        })
        let order = training.parameterNames.enumerated()
            .sorted { (finishedAt[$0.element] ?? 0, $0.offset) < (finishedAt[$1.element] ?? 0, $1.offset) }.map(\.element)
        var buffers: [UnsafeMutableBufferPointer<Float>] = []
        for name in order {
            guard let shape = training.parameter(name)?.shape else { continue }
            let sum = sums[name] ?? Tensor(zeros: .float, shape: shape)
            target[name] = (buffers.count, sum, sums[name] == nil && runs)
            sums[name] = sum
            buffers.append(UnsafeMutableBufferPointer(start: sum.pointer(Float.self), count: sum.count))
        }
        parameterOf = Dictionary(uniqueKeysWithValues: training.gradientGraph.gradients.map { ($0.gradient, $0.parameter) })
        pending = try group.startAllReduceSum(buffers)
    }

    func afterStep(finished outputs: [(name: String, value: Tensor)]) throws {
        for (name, value) in outputs {
            guard let parameter = parameterOf[name], let t = target[parameter] else { continue }
            TrainingSession.scaledAdd(value, scale: scale, into: t.sum, overwrite: t.isNew)
            try pending.bufferReady(t.index)
        }
        try pending.progress()
    }

    /// Marks what is left ready (nothing, after a run), in buffer order as every process does, and waits
    /// for the sums.
    func finishAll() throws {
        for i in 0..<target.count { try pending.bufferReady(i) }
        try pending.finish()
    }
}
